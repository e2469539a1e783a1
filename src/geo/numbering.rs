//! Which E.164 numbers are valid, and in which region, by libphonenumber's own patterns
//! (generated into `generated::NUMBERING`) applied as its `is_valid_number` and
//! `region_code_for_number` apply them: the country calling code gives the candidate
//! regions; the first whose leading digits match (when it has them) or whose number types
//! match is the number's region; the number is valid when one of that region's types
//! matches. One source for validity and for region facts.

use std::sync::OnceLock;

use regex::Regex;

use super::generated::NUMBERING;

struct Region {
    code: &'static str,
    leading: Option<Regex>,
    general: Regex,
    types: Regex,
}

/// Compiled on first use, one country calling code at a time (most queues see one or two).
fn compiled(index: usize) -> &'static [Region] {
    static CELLS: OnceLock<Vec<OnceLock<Vec<Region>>>> = OnceLock::new();
    let cells = CELLS.get_or_init(|| NUMBERING.iter().map(|_| OnceLock::new()).collect());
    cells[index].get_or_init(|| {
        let whole = |pattern: &str| Regex::new(&format!("^(?:{pattern})$"));
        NUMBERING[index]
            .1
            .iter()
            .filter_map(|&(code, leading, general, types)| {
                // The generator only emits patterns this regex dialect accepts (a test
                // compiles them all); a pattern that did not compile would drop its region.
                Some(Region {
                    code,
                    leading: if leading.is_empty() {
                        None
                    } else {
                        Some(Regex::new(&format!("^(?:{leading})")).ok()?)
                    },
                    general: whole(general).ok()?,
                    types: whole(types).ok()?,
                })
            })
            .collect()
    })
}

/// Why a number is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// No country has this calling code.
    UnknownCountryCode,
    /// The country exists; the number fits none of its number plans.
    NotAssigned,
}

/// The region (`US`, `DE`, or `001` for non-geographic services) of the valid number whose
/// E.164 digits (country code first, no `+`) are `digits`.
pub fn region_of_digits(digits: &str) -> Result<&'static str, Invalid> {
    // Country calling codes are prefix-free: at most one of the first 1-3 digits matches.
    let (index, national) = (1..=3.min(digits.len()))
        .find_map(|len| {
            let code: u16 = digits[..len].parse().ok()?;
            let index = NUMBERING.binary_search_by_key(&code, |&(cc, _)| cc).ok()?;
            Some((index, &digits[len..]))
        })
        .ok_or(Invalid::UnknownCountryCode)?;
    let regions = compiled(index);
    let matches =
        |region: &Region| region.general.is_match(national) && region.types.is_match(national);
    let region = match regions {
        [only] => only,
        _ => regions
            .iter()
            .find(|region| match &region.leading {
                Some(leading) => leading.is_match(national),
                None => matches(region),
            })
            .ok_or(Invalid::NotAssigned)?,
    };
    if matches(region) {
        Ok(region.code)
    } else {
        Err(Invalid::NotAssigned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_pattern_compiles() {
        for (index, (code, regions)) in NUMBERING.iter().enumerate() {
            assert_eq!(
                compiled(index).len(),
                regions.len(),
                "a pattern of +{code} does not compile"
            );
        }
        assert!(NUMBERING.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn agrees_with_libphonenumber_on_every_sample() {
        let samples = include_str!("../../tests/data/validity.txt");
        let mut disagreements = Vec::new();
        for line in samples.lines() {
            let mut fields = line.split(' ');
            let (Some(number), Some(valid), Some(region)) =
                (fields.next(), fields.next(), fields.next())
            else {
                panic!("bad sample line {line:?}");
            };
            let expected = (valid == "1").then_some(region);
            let got = region_of_digits(number.trim_start_matches('+')).ok();
            if got != expected {
                disagreements.push(format!("{number}: libphonenumber {expected:?}, we {got:?}"));
            }
        }
        assert!(
            disagreements.is_empty(),
            "{} of {} samples disagree:\n{}",
            disagreements.len(),
            samples.lines().count(),
            disagreements.join("\n")
        );
    }

    #[test]
    fn area_codes_the_older_crate_did_not_know() {
        for number in ["12745550123", "14726167298"] {
            assert_eq!(region_of_digits(number), Ok("US"), "+{number}");
        }
        assert_eq!(
            region_of_digits("99912345678"),
            Err(Invalid::UnknownCountryCode)
        );
        assert_eq!(region_of_digits("10115550100"), Err(Invalid::NotAssigned));
    }
}
