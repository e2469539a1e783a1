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
"""
import collections
import pathlib
import sys

import phonenumbers
from phonenumbers.geodata import GEOCODE_DATA
from phonenumbers.tzdata import TIMEZONE_DATA

OUT = pathlib.Path(__file__).resolve().parent.parent / "src" / "geo" / "generated.rs"

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
    return "\n".join(out) + "\n"


def main():
    text = build()
    if "--check" in sys.argv:
        if OUT.read_text() != text:
            print(f"{OUT} is stale: re-run tools/gen_geo_table.py", file=sys.stderr)
            sys.exit(1)
        print(f"{OUT} matches phonenumbers {phonenumbers.__version__}")
        return
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
