"""The attacks layer: authored events geocoded, imported records placed and measured (records of
different datasets reporting one event are linked by geo.build.links).

Every attack record (authored, imported or synthetic) is a canonical property dict with "lon" and
"lat" (see the attack schema in docs/store.md); this module turns records into GeoJSON features
and sums them per district.
"""

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from geo.border import BorderIndex
from geo.build.gazetteer import PRECISION_DISTRICT, Gazetteer, GeocodeError
from geo.build.locate import Locator
from geo.vocab import MILITANT_ATTACK, event_fields

COUNTS = ("killed_low", "killed_best", "killed_high", "injured_low", "injured_high")
# Record keys that are inputs to the build, not properties of the published feature.
NOT_PROPERTIES = ("lon", "lat")


def geocode_events(
    events: Iterable[dict[str, Any]], gazetteer: Gazetteer
) -> tuple[list[dict[str, Any]], list[str]]:
    """Authored events -> records with lon/lat, plus every problem found (never the first only).

    A record is never more precise than its source or its geocode: geo_precision is the larger
    of the CSV's and the gazetteer's. An event known only to its district (precision 3) goes to
    the district's representative point whatever its location says ("Lakki Marwat" is also a
    town). An event whose place lies in another district than the one it states is an error
    naming both districts.
    """
    records, problems = [], []
    for event in events:
        stated = event.get("district")
        try:
            if event["geo_precision"] == 3:
                if not stated:
                    raise GeocodeError("geo_precision 3 needs a district")
                place = gazetteer.district_point(stated)
            else:
                place = gazetteer.geocode(event["location"], district=stated)
        except GeocodeError as exc:
            problems.append(f"event {event['id']} ({event['location']!r}): {exc}")
            continue
        district = place.district
        if stated and district != stated:
            problems.append(
                f"event {event['id']}: states district {stated} but {event['location']!r} "
                f"({place.lon:.4f}, {place.lat:.4f}, {place.source}) lies in "
                f"{district or 'no KP district'}"
            )
            continue
        if district is None:
            problems.append(f"event {event['id']}: {event['location']!r} lies outside KP")
            continue
        records.append(
            {
                **event,
                "district": district,
                "geo_precision": max(event["geo_precision"], place.precision),
                "lon": place.lon,
                "lat": place.lat,
            }
        )
    return records, problems


# Said of a record kept from an older store, which had no categories: what it is was never read
# from its source, so the record says so rather than pass for classified.
UNCLASSIFIED_FLAG = (
    "imported by an older kpmap without categories: re-import its file to classify it"
)


def upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """A kept record with every property the current schema has (an older store's records lack
    the event fields; they get the category they were drawn as, and a flag saying so; those
    kept before datasets and releases were recorded get None for both)."""
    if "category" not in record:
        return {**event_fields(MILITANT_ATTACK, flags=[UNCLASSIFIED_FLAG]), **record}
    if "release" not in record:
        # kept from a store that classified events but did not yet record the dataset's release
        return {"dataset": None, "release": None, **record}
    return record


def place(
    records: list[dict[str, Any]], locator: Locator
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Records with their district and tehsil decided by their point (geo.build.locate), and the
    ids of those whose point lies in no KP district, each with its reason.

    Sets `district`, `tehsil` (None for a record known only to its district: its point is the
    district's representative point, not a place in a tehsil) and `border_sliver_km` (None unless
    the point was given to the nearest district by the border sliver rule).
    """
    lon = [r["lon"] for r in records]
    lat = [r["lat"] for r in records]
    districts, tehsils, sliver_km = locator.locate_many(lon, lat)
    placed, not_placed = [], []
    for record, district, tehsil, km in zip(records, districts, tehsils, sliver_km, strict=True):
        if district is None:
            not_placed.append(
                {
                    "id": record["id"],
                    "reason": f"its point ({record['lon']:g}, {record['lat']:g}) lies in no KP "
                    "district of the current boundaries (a point is taken inside a district, or "
                    "on the Pakistani side of the Durand Line within 5 km of one)",
                }
            )
            continue
        record["district"] = district
        record["tehsil"] = tehsil if record["geo_precision"] < PRECISION_DISTRICT else None
        record["border_sliver_km"] = km
        placed.append(record)
    return placed, not_placed


def attack_features(
    records: list[dict[str, Any]],
    border: BorderIndex,
    former_fata: Mapping[str, bool],
) -> list[dict[str, Any]]:
    """GeoJSON Point features for the records, with distance_to_border_km and former_fata.

    Written directly rather than through shapely: a point needs no orientation, and this runs
    for every attack of a million-record store.
    """
    lon = np.fromiter((r["lon"] for r in records), dtype=float, count=len(records))
    lat = np.fromiter((r["lat"] for r in records), dtype=float, count=len(records))
    distances = np.round(border.distance_km(lon, lat), 1).tolist()
    features = []
    for record, x, y, km in zip(records, lon.tolist(), lat.tolist(), distances, strict=True):
        properties = record.copy()  # then drop the few keys that are not properties
        for key in NOT_PROPERTIES:
            del properties[key]
        properties["distance_to_border_km"] = km
        properties["former_fata"] = former_fata[record["district"]]
        linked = properties.setdefault("linked", [])  # a record linked to none (geo.build.links)
        # every dataset the feature holds rows of: what the licences are decided by
        properties["origins"] = (
            ",".join(dict.fromkeys(m["origin"] for m in linked)) if linked else record["origin"]
        )
        features.append(
            {
                "type": "Feature",
                "id": record["id"],
                "geometry": {"type": "Point", "coordinates": [round(x, 6), round(y, 6)]},
                "properties": properties,
            }
        )
    return features


def feature_record(feature: Mapping[str, Any]) -> dict[str, Any]:
    """A stored attack feature back as a record (properties + lon/lat), to rebuild from."""
    lon, lat = feature["geometry"]["coordinates"][:2]
    properties = dict(feature["properties"])
    derived_keys = (
        "distance_to_border_km",
        "former_fata",
        "tehsil",
        "border_sliver_km",
        "linked",
        "origins",
    )
    for derived in derived_keys:
        properties.pop(derived, None)
    return {**properties, "lon": lon, "lat": lat}


def area_totals(
    features: Iterable[Mapping[str, Any]], key: str = "district"
) -> dict[str, dict[str, int]]:
    """Per district (or tehsil, key="tehsil") id: the number of attacks and the sums of killed
    and injured figures. Attacks without a value for `key` are not counted.

    A sum counts only the attacks that report that figure (a missing figure adds nothing).
    """
    totals: dict[str, dict[str, int]] = {}
    for feat in features:
        props = feat["properties"]
        area = props.get(key)
        if area is None:
            continue
        row = totals.setdefault(area, {"attacks": 0, **{c: 0 for c in COUNTS}})
        row["attacks"] += 1
        for column in COUNTS:
            row[column] += props.get(column) or 0
    return totals
