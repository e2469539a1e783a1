//! Region facts derived from a phone number: country, NANP area code, state/province and the
//! IANA time zones, from tables generated out of libphonenumber's data
//! (`tools/gen_geo_table.py` writes `generated.rs`).

#[rustfmt::skip]
mod generated;
pub mod numbering;

use chrono_tz::Tz;

/// Where the tables come from, for `--version` style reports.
pub const DATA_SOURCE: &str = generated::SOURCE;

/// What the number alone says about where it is. Several states or zones mean the data cannot
/// tell them apart (e.g. +1 907 is Alaska's two zones; +1 782 is Nova Scotia or PEI).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NumberRegion {
    /// ISO 3166-1 alpha-2 region, e.g. `US`, `CA`, `PR`, `DE`.
    pub country: Option<String>,
    pub area_code: Option<u16>,
    pub states: Vec<String>,
    pub zones: Vec<Tz>,
}

/// Looks up everything the generated tables know about the number whose E.164 digits
/// (country code first) are `digits`. (`E164::region` is the usual way in: this module is
/// data, below the phone number type, and does not know it.)
pub fn region_of(digits: u64) -> NumberRegion {
    let area_code = nanp_area_code(digits);
    let digits = digits.to_string();
    let (country, states) = match area_code {
        Some(npa) => nanp_country_and_states(npa, &digits),
        None => (country_of_non_nanp(&digits), Vec::new()),
    };
    NumberRegion {
        country,
        area_code,
        states,
        zones: zones_of_digits(&digits),
    }
}

fn nanp_country_and_states(npa: u16, digits: &str) -> (Option<String>, Vec<String>) {
    let Ok(row) = generated::NANP_AREA_CODES.binary_search_by_key(&npa, |&(code, _, _)| code)
    else {
        // Toll-free and other non-geographic area codes: still North American, region unknown.
        return (None, Vec::new());
    };
    let (_, country, area_state) = generated::NANP_AREA_CODES[row];
    let state = longest_prefix(generated::NANP_EXCHANGE_STATES, digits).unwrap_or(area_state);
    let states = state
        .split('|')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    (Some(country.to_string()), states)
}

fn country_of_non_nanp(digits: &str) -> Option<String> {
    numbering::region_of_digits(digits)
        .ok()
        .filter(|region| *region != "001")
        .map(str::to_string)
}

/// Time zones at the longest prefix the data has for these digits.
fn zones_of_digits(digits: &str) -> Vec<Tz> {
    longest_prefix(generated::TZ_PREFIXES, digits)
        .map(|indices| {
            indices
                .iter()
                .filter_map(|&i| generated::ZONES[i as usize].parse::<Tz>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The value of the longest entry of the sorted `table` that is a prefix of `digits`.
///
/// The last entry not after the target is its longest prefix in the table, if it is a prefix
/// at all; if not, no prefix longer than what the two share can be in the table (it would
/// sort between them), so the target shrinks to that and the search repeats: one to three
/// binary searches, where trying every length took eleven.
fn longest_prefix<T: Copy>(table: &[(&str, T)], digits: &str) -> Option<T> {
    let mut target = digits;
    loop {
        let after = table.partition_point(|(p, _)| *p <= target);
        let (last, value) = *table.get(after.checked_sub(1)?)?;
        if target.starts_with(last) {
            return Some(value);
        }
        let shared = last
            .bytes()
            .zip(target.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        if shared == 0 {
            return None;
        }
        target = &target[..shared];
    }
}

/// True for a US state or Canadian province code the number data assigns to some number.
pub fn is_known_state(code: &str) -> bool {
    generated::NANP_AREA_CODES
        .iter()
        .any(|(_, _, states)| states.split('|').any(|s| s == code))
        || generated::NANP_EXCHANGE_STATES
            .iter()
            .any(|(_, states)| states.split('|').any(|s| s == code))
}

/// True for an ISO region code that has numbers of its own.
pub fn is_known_country(code: &str) -> bool {
    generated::NUMBERING
        .iter()
        .any(|(_, regions)| regions.iter().any(|(region, ..)| *region == code))
}

/// The area code (NPA) of a +1 number's E.164 digits.
fn nanp_area_code(digits: u64) -> Option<u16> {
    (10_000_000_000..20_000_000_000)
        .contains(&digits)
        .then_some(((digits / 10_000_000) % 1000) as u16)
}

/// The country calling code of an ISO region (`US` → 1, `GB` → 44).
pub fn calling_code(region: &str) -> Option<u16> {
    generated::NUMBERING
        .iter()
        .find(|(_, regions)| regions.iter().any(|(r, ..)| *r == region))
        .map(|&(code, _)| code)
}

/// Whether the E.164 digits `digits` can be a valid number. A US or Canadian geographic
/// number is checked by its area code and exchange (fast: suppression lists hold tens of
/// millions of them; other NANP countries list their exchanges); anything else by
/// libphonenumber's patterns.
pub fn is_valid_digits(digits: u64) -> bool {
    if let Some(npa) = nanp_area_code(digits)
        && let Ok(row) = generated::NANP_AREA_CODES.binary_search_by_key(&npa, |&(code, _, _)| code)
        && matches!(generated::NANP_AREA_CODES[row].1, "US" | "CA")
    {
        let exchange_lead = (digits / 1_000_000) % 10;
        return exchange_lead >= 2;
    }
    numbering::region_of_digits(&digits.to_string()).is_ok()
}

/// Every NANP area code the generated table knows, with its region and state(s).
pub fn nanp_area_codes() -> impl Iterator<Item = (u16, &'static str, &'static str)> {
    generated::NANP_AREA_CODES.iter().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_by_digits_agrees_with_libphonenumber_on_every_sample() {
        let samples = include_str!("../../tests/data/validity.txt");
        let mut disagreements = Vec::new();
        for line in samples.lines() {
            let mut fields = line.split(' ');
            let (Some(number), Some(valid)) = (fields.next(), fields.next()) else {
                panic!("bad sample line {line:?}");
            };
            let Ok(digits) = number.trim_start_matches('+').parse::<u64>() else {
                continue;
            };
            if is_valid_digits(digits) != (valid == "1") {
                disagreements.push(number.to_string());
            }
        }
        assert!(disagreements.is_empty(), "{disagreements:?}");
    }

    fn region(number: &str) -> NumberRegion {
        crate::phone::E164::parse(number).unwrap().region()
    }

    fn zone_names(r: &NumberRegion) -> Vec<&'static str> {
        r.zones.iter().map(|z| z.name()).collect()
    }

    #[test]
    fn longest_prefix_finds_the_longest_entry_that_is_a_prefix() {
        let table: &[(&str, u8)] = &[
            ("1", 1),
            ("1212", 2),
            ("121255", 3),
            ("1212551", 4),
            ("1212556", 5),
            ("13", 6),
        ];
        assert_eq!(longest_prefix(table, "12125551234"), Some(3));
        assert_eq!(longest_prefix(table, "12125561234"), Some(5));
        assert_eq!(longest_prefix(table, "12129991234"), Some(2));
        assert_eq!(longest_prefix(table, "14155550100"), Some(1));
        assert_eq!(longest_prefix(table, "2025550100"), None);
        assert_eq!(longest_prefix(table, "0"), None);
        // The same answers as trying every length, over the real table.
        for digits in [
            "12085550123",
            "18125550100",
            "4930901820",
            "61212345678",
            "19075550100",
        ] {
            let slow = (1..=digits.len()).rev().find_map(|len| {
                generated::TZ_PREFIXES
                    .binary_search_by(|(p, _)| (*p).cmp(&digits[..len]))
                    .ok()
                    .map(|i| generated::TZ_PREFIXES[i].1)
            });
            assert_eq!(
                longest_prefix(generated::TZ_PREFIXES, digits),
                slow,
                "{digits}"
            );
        }
    }

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(generated::TZ_PREFIXES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            generated::NANP_AREA_CODES
                .windows(2)
                .all(|w| w[0].0 < w[1].0)
        );
        assert!(
            generated::NANP_EXCHANGE_STATES
                .windows(2)
                .all(|w| w[0].0 < w[1].0)
        );
    }

    #[test]
    fn every_zone_name_is_known_to_chrono_tz() {
        for name in generated::ZONES {
            assert!(name.parse::<Tz>().is_ok(), "{name} unknown to chrono-tz");
        }
    }

    /// Every area code in libphonenumber's data (as generated) has a region, and every
    /// geographic one (US/CA and the Caribbean/Pacific members) has a time zone of its own,
    /// never the dropped whole-NANP fallback.
    #[test]
    fn every_nanp_area_code_is_covered() {
        let mut count = 0;
        for (npa, country, state) in nanp_area_codes() {
            count += 1;
            let digits = format!("1{npa}");
            let zones = longest_prefix(generated::TZ_PREFIXES, &digits);
            assert!(
                zones.is_some(),
                "area code {npa} ({country}) has no time zone"
            );
            assert!(
                zones.unwrap().len() < 5,
                "area code {npa} got a country-wide zone list"
            );
            if country == "US" || country == "CA" {
                assert!(
                    !state.is_empty(),
                    "area code {npa} ({country}) has no state"
                );
            }
        }
        assert!(count > 400, "only {count} area codes generated");
        // And the reverse: every +1 prefix with a zone of its own belongs to a known area code.
        for (prefix, _) in generated::TZ_PREFIXES
            .iter()
            .filter(|(p, _)| p.starts_with('1'))
        {
            let npa: u16 = prefix[1..4].parse().unwrap();
            assert!(
                generated::NANP_AREA_CODES
                    .iter()
                    .any(|&(code, _, _)| code == npa),
                "zone prefix {prefix} has no area-code row"
            );
        }
    }

    #[test]
    fn hand_checked_area_codes() {
        let alaska = region("+19075550100");
        assert_eq!(alaska.states, ["AK"]);
        assert_eq!(zone_names(&alaska), ["America/Adak", "America/Anchorage"]);

        let newfoundland = region("+17095550100");
        assert_eq!(newfoundland.country.as_deref(), Some("CA"));
        assert_eq!(newfoundland.states, ["NL"]);
        assert!(zone_names(&newfoundland).contains(&"America/St_Johns"));

        let arizona = region("+15205550100");
        assert_eq!(arizona.states, ["AZ"]);
        assert_eq!(zone_names(&arizona), ["America/Phoenix"]);

        // Indiana: 317 is Eastern; 812 is Eastern except exchanges around Evansville (Central).
        assert_eq!(zone_names(&region("+13175550100")), ["America/New_York"]);
        assert_eq!(zone_names(&region("+18125550100")), ["America/New_York"]);
        assert_eq!(zone_names(&region("+18124645555")), ["America/Chicago"]);

        // Caribbean: Jamaica is its own country inside +1, one zone, no state.
        let jamaica = region("+18762345678");
        assert_eq!(jamaica.country.as_deref(), Some("JM"));
        assert!(jamaica.states.is_empty());
        assert_eq!(zone_names(&jamaica), ["America/Jamaica"]);

        let california = region("+14155550100");
        assert_eq!(california.country.as_deref(), Some("US"));
        assert_eq!(california.area_code, Some(415));
        assert_eq!(zone_names(&california), ["America/Los_Angeles"]);
    }

    #[test]
    fn shared_area_code_lists_both_provinces() {
        assert_eq!(region("+17825550100").states, ["NS", "PE"]);
    }

    #[test]
    fn toll_free_has_no_region() {
        let toll_free = region("+18005550100");
        assert_eq!(toll_free.country, None);
        assert!(toll_free.zones.is_empty());
    }

    #[test]
    fn non_nanp_numbers_get_country_and_zone() {
        let berlin = region("+4930901820");
        assert_eq!(berlin.country.as_deref(), Some("DE"));
        assert_eq!(zone_names(&berlin), ["Europe/Berlin"]);
    }
}
