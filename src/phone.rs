//! E.164 phone numbers: parsing and validation (by libphonenumber's patterns, generated into
//! `geo`, the same data the region facts come from) into a compact, hashable key.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A valid phone number in E.164 form, stored as its digits (the country code never starts
/// with 0, so no digit is lost). Cheap to copy, hash and compare; displays as `+<digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct E164(u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("`{0}` is not in E.164 form (expected `+` then 8 to 15 digits, e.g. +14155550100)")]
    NotE164(String),
    #[error("`{0}` has no country: no country calling code starts it")]
    UnknownCountryCode(String),
    #[error("`{0}` is not a valid number for its country (unassigned prefix or wrong length)")]
    Invalid(String),
}

/// How much of a bad number an error repeats.
fn shown(text: &str) -> String {
    crate::bounded(text, 40)
}

impl E164 {
    /// Parses and validates a number that must already be written in E.164.
    pub fn parse(text: &str) -> Result<E164, PhoneError> {
        let digits = text
            .strip_prefix('+')
            .filter(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| PhoneError::NotE164(shown(text)))?;
        match crate::geo::numbering::region_of_digits(digits) {
            Ok(_) => {}
            Err(crate::geo::numbering::Invalid::UnknownCountryCode) => {
                return Err(PhoneError::UnknownCountryCode(shown(text)));
            }
            Err(crate::geo::numbering::Invalid::NotAssigned) => {
                return Err(PhoneError::Invalid(shown(text)));
            }
        }
        let value = digits
            .parse::<u64>()
            .map_err(|_| PhoneError::NotE164(text.to_string()))?;
        Ok(E164(value))
    }

    pub fn digits(self) -> u64 {
        self.0
    }

    /// True for the North American Numbering Plan (+1).
    pub fn is_nanp(self) -> bool {
        (10_000_000_000..20_000_000_000).contains(&self.0)
    }

    /// What the number data says about where this number is.
    pub fn region(self) -> crate::geo::NumberRegion {
        crate::geo::region_of(self.0)
    }

    /// The three-digit NANP area code (NPA), if this is a +1 number.
    pub fn nanp_area_code(self) -> Option<u16> {
        self.is_nanp()
            .then_some(((self.0 / 10_000_000) % 1000) as u16)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

impl FromStr for E164 {
    type Err = PhoneError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        E164::parse(s)
    }
}

impl Serialize for E164 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for E164 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        E164::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_e164_and_round_trips() {
        let number = E164::parse("+14155550100").unwrap();
        assert_eq!(number.to_string(), "+14155550100");
        assert_eq!(number.nanp_area_code(), Some(415));
        let berlin = E164::parse("+4930901820").unwrap();
        assert!(!berlin.is_nanp());
        assert_eq!(berlin.nanp_area_code(), None);
    }

    #[test]
    fn rejects_non_e164_forms_with_reason() {
        for text in [
            "4155550100",
            "+1 415 555 0100",
            "(415) 555-0100",
            "+1-415-555-0100",
            "+",
        ] {
            assert!(
                matches!(E164::parse(text), Err(PhoneError::NotE164(_))),
                "{text} should be rejected as not E.164"
            );
        }
    }

    #[test]
    fn rejects_invalid_numbers() {
        // +1 011... has no valid area code; +999 is no country.
        assert!(E164::parse("+10115550100").is_err());
        assert!(E164::parse("+99912345678").is_err());
    }
}
