#!/usr/bin/env python3
"""Generate src/geo/generated.rs from libphonenumber's data (the `phonenumbers` package).

Why a script: no Rust crate maps NANP area codes to a state/province and IANA time zones.
libphonenumber carries both (geocoding and time-zone prefix tables), so we extract them here,
commit the output, and re-run this script when the data should be refreshed:

    pip install phonenumbers==<version>
    python3 tools/gen_geo_table.py            # rewrites src/geo/generated.rs
    python3 tools/gen_geo_table.py --check    # exit 1 if the committed table is stale

What is kept, and why:
* Time zones by prefix, at the longest prefix the data has (some area codes are split by
  exchange, e.g. +1 812 is Eastern but some exchanges are Central).
* The single whole-NANP entry "1" is dropped: libphonenumber answers it for any +1 prefix
  without an entry of its own, and "every zone from Guam to Newfoundland" is not a time zone.
  Other countries keep their country-wide entry, which is a real (if coarse) answer.
* For each NANP area code: the ISO region (US, CA, PR, BS, JM, ...) and, for the US and
  Canada, the two-letter state/province code taken from the geocoding descriptions.
* Which numbers are valid, and of which region: per country calling code, its regions in
  libphonenumber's order with their leading-digits, general and number-type patterns, applied
  by src/phone.rs exactly as libphonenumber's is_valid_number / region_code_for_number do. One
  source for validity and for regions; `tests/data/validity.txt` holds sample numbers with
  libphonenumber's own verdict, which a Rust test holds the generated patterns to.
"""
import collections
import pathlib
import random
import sys

import phonenumbers
from phonenumbers.geodata import GEOCODE_DATA
from phonenumbers.tzdata import TIMEZONE_DATA
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "geo" / "generated.rs"
SAMPLES = ROOT / "tests" / "data" / "validity.txt"

# The number types is_valid_number accepts, in libphonenumber's order.
TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
         "voicemail", "fixed_line", "mobile")


def metadata_of(cc, region):
    if region == "001":
        return PhoneMetadata.metadata_for_nongeo_region(cc)
    return PhoneMetadata.metadata_for_region(region)


def numbering_rows():
    """(country code, [(region, leading digits, general pattern, types pattern)])."""
    rows = []
    for cc in sorted(COUNTRY_CODE_TO_REGION_CODE):
        regions = []
        for region in COUNTRY_CODE_TO_REGION_CODE[cc]:
            meta = metadata_of(cc, region)
            if meta is None or meta.general_desc is None:
                continue
            types = [getattr(meta, t).national_number_pattern for t in TYPES
                     if getattr(meta, t) is not None
                     and getattr(meta, t).national_number_pattern]
            if not types:
                continue
            regions.append((region, meta.leading_digits or "",
                            meta.general_desc.national_number_pattern,
                            "|".join(f"(?:{t})" for t in types)))
        if regions:
            rows.append((cc, regions))
    return rows


def samples():
    """Numbers with libphonenumber's verdict: every NANP area code, random numbers of every
    country's possible lengths, and each region's example numbers."""
    rng = random.Random(20261129)
    out = []
    def add(e164):
        number = phonenumbers.parse(e164)
        valid = phonenumbers.is_valid_number(number)
        region = phonenumbers.region_code_for_number(number) if valid else None
        out.append(f"{e164} {int(valid)} {region or '-'}")
    for npa in range(200, 1000):
        for _ in range(2):
            add(f"+1{npa}{rng.randrange(200, 1000)}{rng.randrange(0, 10000):04d}")
    for cc in sorted(COUNTRY_CODE_TO_REGION_CODE):
        if cc == 1:
            continue
        for region in COUNTRY_CODE_TO_REGION_CODE[cc]:
            meta = metadata_of(cc, region)
            if meta is None or meta.general_desc is None:
                continue
            lengths = [n for n in (meta.general_desc.possible_length or ()) if n > 0] or [8]
            for _ in range(6):
                n = rng.choice(lengths)
                digits = str(rng.randrange(1, 10)) + "".join(str(rng.randrange(10)) for _ in range(n - 1))
                if 8 <= len(str(cc)) + n <= 15:
                    add(f"+{cc}{digits}")
            for t in TYPES:
                desc = getattr(meta, t)
                if desc is not None and desc.example_number:
                    add(f"+{cc}{desc.example_number}")
    return "\n".join(sorted(set(out))) + "\n"

STATES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS",
    "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH",
    "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY", "North Carolina": "NC",
    "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA",
    "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD", "Tennessee": "TN",
    "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA", "Washington State": "WA",
    "Washington": "WA", "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY",
    "Washington D.C.": "DC", "District of Columbia": "DC",
    "Alberta": "AB", "British Columbia": "BC", "British Colombia": "BC", "Manitoba": "MB", "New Brunswick": "NB",
    "Newfoundland and Labrador": "NL", "Newfoundland": "NL", "Nova Scotia": "NS",
    "Northwest Territories": "NT", "Nunavut": "NU", "Ontario": "ON",
    "Prince Edward Island": "PE", "Quebec": "QC", "Saskatchewan": "SK", "Yukon": "YT",
}
STATE_CODES = set(STATES.values())


def state_of(description):
    """'California' -> CA, 'Dallas, TX' -> TX, 'Nova Scotia/Prince Edward Island' -> NS|PE,
    anything else (a country or island name) -> None."""
    if description in STATES:
        return STATES[description]
    if "/" in description:
        parts = [STATES.get(part) for part in description.split("/")]
        return "|".join(parts) if all(parts) else None
    if ", " in description:
        code = description.rsplit(", ", 1)[1]
        if code in STATE_CODES:
            return code
    return None


def region_of_area_code(npa):
    """ISO region of an area code, found by asking libphonenumber about sample numbers."""
    for exchange in range(200, 1000, 7):
        for line in ("0100", "1234", "5678"):
            number = phonenumbers.parse(f"+1{npa}{exchange}{line}")
            if phonenumbers.is_valid_number(number):
                return phonenumbers.region_code_for_number(number)
    return None


def build():
    zones = sorted({z for tzs in TIMEZONE_DATA.values() for z in tzs})
    zone_index = {z: i for i, z in enumerate(zones)}
    tz_data = {p: tzs for p, tzs in TIMEZONE_DATA.items() if p != "1"}
    # An area code split by exchange (e.g. +1 208, Idaho: Mountain and Pacific) has entries
    # only for its exchanges; any other exchange of it would fall back to "1". Give the area
    # code itself the union of its exchanges' zones instead: the conservative answer.
    nanp_prefixes = [p for p in tz_data if p.startswith("1") and len(p) > 4]
    for npa_prefix in sorted({p[:4] for p in nanp_prefixes} - set(tz_data)):
        tz_data[npa_prefix] = tuple(sorted({z for p in nanp_prefixes if p.startswith(npa_prefix)
                                            for z in tz_data[p]}))
    tz_rows = sorted(tz_data.items())

    npas = sorted({p[1:4] for p in list(TIMEZONE_DATA) + list(GEOCODE_DATA)
                   if p.startswith("1") and len(p) >= 4})
    area_rows = []
    state_rows = []
    for npa in npas:
        region = region_of_area_code(npa)
        if region is None:
            continue  # not a dialable area code in this data (e.g. reserved)
        state = ""
        if region in ("US", "CA"):
            own = GEOCODE_DATA.get("1" + npa, {}).get("en")
            state = state_of(own) if own else None
            if state is None:
                votes = collections.Counter(
                    s for p, d in GEOCODE_DATA.items() if p.startswith("1" + npa)
                    for s in [state_of(d.get("en", ""))] if s)
                state = votes.most_common(1)[0][0] if votes else ""
        area_rows.append((int(npa), region, state))
        # Exchanges whose state differs from their area code's (e.g. +1 902 covers Nova Scotia
        # and Prince Edward Island: the area code says both, each exchange says which).
        for prefix, description in GEOCODE_DATA.items():
            if prefix.startswith("1" + npa) and len(prefix) > 4:
                exchange_state = state_of(description.get("en", ""))
                if exchange_state and exchange_state != state:
                    state_rows.append((prefix, exchange_state))

    out = []
    out.append(f"// @generated by tools/gen_geo_table.py from phonenumbers {phonenumbers.__version__}.")
    out.append("// Do not edit by hand: re-run the script.")
    out.append("")
    out.append(f'pub(super) const SOURCE: &str = "libphonenumber via phonenumbers {phonenumbers.__version__}";')
    out.append("")
    out.append("/// Every IANA zone named below; the prefix table refers to these by index.")
    out.append("pub(super) static ZONES: &[&str] = &[")
    out.extend(f'    "{z}",' for z in zones)
    out.append("];")
    out.append("")
    out.append("/// (E.164 digit prefix, indices into ZONES), sorted by prefix. Longest prefix wins.")
    out.append("pub(super) static TZ_PREFIXES: &[(&str, &[u16])] = &[")
    out.extend(f'    ("{p}", &[{", ".join(str(zone_index[z]) for z in tzs)}]),' for p, tzs in tz_rows)
    out.append("];")
    out.append("")
    out.append("/// (NANP area code, ISO region, state/province code or \"\"), sorted by area code.")
    out.append("pub(super) static NANP_AREA_CODES: &[(u16, &str, &str)] = &[")
    out.extend(f'    ({npa}, "{region}", "{state}"),' for npa, region, state in area_rows)
    out.append("];")
    out.append("")
    out.append("/// (E.164 digit prefix longer than an area code, state/province code), sorted by prefix:")
    out.append("/// exchanges whose state differs from the one NANP_AREA_CODES gives their area code.")
    out.append("pub(super) static NANP_EXCHANGE_STATES: &[(&str, &str)] = &[")
    out.extend(f'    ("{p}", "{st}"),' for p, st in sorted(state_rows))
    out.append("];")
    out.append("")
    out.append("/// Per country calling code, its regions in libphonenumber's order (main region first):")
    out.append("/// (region, leading-digits pattern or \"\", general pattern, number types' patterns).")
    out.append("#[allow(clippy::type_complexity)]")
    out.append("pub(crate) static NUMBERING: &[(u16, &[(&str, &str, &str, &str)])] = &[")
    for cc, regions in numbering_rows():
        out.append(f"    ({cc}, &[")
        for region, leading, general, types in regions:
            out.append(f'        ("{region}", r#"{leading}"#, r#"{general}"#, r#"{types}"#),')
        out.append("    ]),")
    out.append("];")
    return "\n".join(out) + "\n"


def main():
    outputs = {OUT: build(), SAMPLES: samples()}
    if "--check" in sys.argv:
        stale = [path for path, text in outputs.items()
                 if not path.exists() or path.read_text() != text]
        for path in stale:
            print(f"{path} is stale: re-run tools/gen_geo_table.py", file=sys.stderr)
        if stale:
            sys.exit(1)
        print(f"{OUT} and {SAMPLES} match phonenumbers {phonenumbers.__version__}")
        return
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
