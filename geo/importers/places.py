"""Where an imported event is: decided by its point, with the provider's names as a cross-check.

    places = district_locator(store)   # from a built store: tehsils, sliver zone, KP's outline
    places(71.5785, 34.0151)           # 'peshawar'
    reported_districts("Khyber agency")  # ('khyber',)

Membership in KP and the district come from the point (geo.build.locate: the tehsils and the border
sliver rule, the same rule the build uses). The names a provider writes (province, district) are
only compared with it: a district name that resolves to other polygons than the point's, or a
province name that is not KP's for a point inside KP, is flagged on the record and listed in the
import report; a row whose names say KP but whose point lies outside it is refused with its
distance to KP, never dropped silently.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer

from geo.build.locate import Locator
from geo.crs import KP_TMERC, transform_geometry
from geo.districts import normalise_name, resolve_district
from geo.importers.common import RowError, RowRefused

InKp = Callable[[float, float], str | None]

# KP and the names its parts had before 2010 (NWFP) and 2018 (FATA), normalised.
KP_NAMES = frozenset(
    normalise_name(name)
    for name in (
        "Khyber Pakhtunkhwa",
        "Khyber Pakhtoonkhwa",
        "Khyber Pukhtunkhwa",
        "Khyber Pakhtunkhawa",
        "KPK",
        "KP",
        "NWFP",
        "North-West Frontier",
        "North West Frontier Province",
        "FATA",
        "Federally Administered Tribal Areas",
        "Federally Administered Tribal Area",
    )
)
UNKNOWN_ADMIN1 = frozenset({"", "unknown", "not applicable", "na", "n a"})
# What providers write after a district's name: UCDP "Bajaur agency", "Peshawar district";
# older sources "Khyber Tribal Agency". The name without it is looked up again.
DISTRICT_WORDS = re.compile(r"\s+(tribal\s+)?(district|agency|tribal area)$")
# Segment length (vertices) of KP's outline in the tree that measures distances to it.
OUTLINE_SEGMENT = 32


class KpPlaces:
    """What importers ask of the boundaries. Called as `places(lon, lat)` it is the `in_kp`
    function: the id of the KP district holding the point (sliver rule included), else None.

    `distances_km(lon, lat)` gives each point's distance to KP's outline (None when the
    outline is not known, as for a plain in_kp function); `tehsil_district(name)` the district
    of the tehsil a name denotes (None when it names no tehsil).
    """

    def __init__(
        self,
        in_kp: InKp,
        outline: shapely.Geometry | None = None,
        tehsils: dict[str, str] | None = None,
        locate_many: Callable[[Sequence[float], Sequence[float]], list[str | None]] | None = None,
    ):
        self._in_kp = in_kp
        self._locate_many = locate_many
        self._tehsils = tehsils or {}
        self._tree: shapely.STRtree | None = None
        if outline is not None:
            to_m = Transformer.from_crs("EPSG:4326", KP_TMERC, always_xy=True)
            self._to_m = to_m
            # pieces of the outline in metres (transverse Mercator around KP), so that one
            # nearest-neighbour query gives every distance in a batch
            rings = shapely.get_parts(shapely.boundary(transform_geometry(outline, to_m)))
            pieces = []
            for ring in rings:
                coords = shapely.get_coordinates(ring)
                for start in range(0, len(coords) - 1, OUTLINE_SEGMENT):
                    pieces.append(shapely.linestrings(coords[start : start + OUTLINE_SEGMENT + 1]))
            self._tree = shapely.STRtree(pieces)

    def __call__(self, lon: float, lat: float) -> str | None:
        return self._in_kp(lon, lat)

    def districts(self, lon: Sequence[float], lat: Sequence[float]) -> list[str | None]:
        """The district of each point (in_kp for many points: at once when the boundaries
        allow it, ~1 s for a million points, instead of a tree query per point)."""
        if self._locate_many is not None:
            return self._locate_many(lon, lat)
        return [self._in_kp(x, y) for x, y in zip(lon, lat, strict=True)]

    def distances_km(self, lon: Sequence[float], lat: Sequence[float]) -> list[float | None]:
        """Distance of each point to KP's outline in km (one decimal), None without an outline."""
        if self._tree is None or not len(lon):
            return [None] * len(lon)
        x, y = self._to_m.transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
        index, metres = self._tree.query_nearest(shapely.points(x, y), return_distance=True)
        best = np.full(len(lon), np.inf)
        np.minimum.at(best, index[0], metres)
        return [round(float(m) / 1000, 1) for m in best]

    def tehsil_district(self, name: str) -> str | None:
        """The district id of the tehsil `name` denotes ("Birmal", "Birmal tehsil"), else None."""
        key = normalise_name(name)
        key = re.sub(r"\s+(tehsil|subdivision|sub division)$", "", key)
        return self._tehsils.get(key)


def as_places(in_kp: InKp) -> KpPlaces:
    """A KpPlaces for any in_kp function (a plain function measures no distances)."""
    return in_kp if isinstance(in_kp, KpPlaces) else KpPlaces(in_kp)


def district_locator(store: Any) -> KpPlaces:
    """The KpPlaces of a built store: its tehsils and the border sliver rule (geo.build.locate, the
    rule the build places every attack by), KP's outline and its tehsils' names."""
    locator = Locator.from_store(store)

    def in_kp(lon: float, lat: float) -> str | None:
        return locator.locate(lon, lat).district

    def locate_many(lon: Sequence[float], lat: Sequence[float]) -> list[str | None]:
        return locator.locate_many(lon, lat)[0]

    districts = store.layer("districts")
    outline = shapely.union_all(districts.geometries())
    tehsils = store.layer("tehsils")
    name_codes, names = tehsils.column("name")
    district_codes, district_ids = tehsils.column("district")
    by_name: dict[str, str] = {}
    for name, district in zip(
        names[name_codes].tolist(), district_ids[district_codes].tolist(), strict=True
    ):
        # a tehsil named like its district ("Bannu") is left to the district, as the gazetteer
        # does: the name alone does not say which of the two is meant
        if reported_districts(name) is None:
            by_name[normalise_name(name)] = district
    return KpPlaces(in_kp, outline, by_name, locate_many)


@lru_cache(maxsize=1024)
def admin1_status(name: str) -> bool | None:
    """True if the province name is KP or one of its old names, False if it names another
    province, None if blank or unknown (then only the point can tell).

    >>> admin1_status("North-West Frontier Province"), admin1_status("Punjab"), admin1_status("")
    (True, False, None)

    UCDP writes "Khyber Pakhtunkhwa province"; a parenthesis is read as another name for it, as in
    "Federally Administered Tribal Areas (FATA)".
    """
    parts = [normalise_name(p) for p in re.split(r"[()]", name)]
    parts = [re.sub(r"\s*\bprovince$", "", p) for p in parts if p]
    if not parts or all(p in UNKNOWN_ADMIN1 for p in parts):
        return None
    return any(p in KP_NAMES for p in parts)


@lru_cache(maxsize=4096)
def reported_districts(name: str) -> tuple[str, ...] | None:
    """The district polygon ids a provider's district name means, or None if it names none.

    >>> reported_districts("Khyber agency"), reported_districts("Lower South Waziristan")
    (('khyber',), ('south-waziristan',))
    >>> reported_districts("Kohistan district")  # a former district: every polygon it became
    ('lower-kohistan', 'upper-kohistan', 'kolai-palas')

    Names are tried as written, then without a trailing "district", "agency" or "tribal
    agency", and "F.R. Kohat" as "FR Kohat".
    """
    key = normalise_name(name)
    if not key:
        return None
    for candidate in (key, DISTRICT_WORDS.sub("", key), re.sub(r"^f r\b", "fr", key)):
        found = resolve_district(candidate)
        if found is not None:
            return found.ids
    return None


# --- placing a record ------------------------------------------------------------------------

NAMES_SAY_KP = "names say Khyber Pakhtunkhwa, but the point lies outside it"
OUTSIDE_KP = "outside Khyber Pakhtunkhwa"
DISTRICT_DISAGREES = "district named differs from the point's"
OTHER_PROVINCE = "province named is not KP, the point is in KP"


@dataclass(frozen=True)
class Names:
    """The names a row gives for its place: the province (`admin1`) and district as written,
    with the columns they come from ("adm_1", "adm_2"; GTD's city stands in for a district)."""

    admin1_column: str
    admin1: str
    district_column: str = ""
    district: str = ""

    def says(self) -> str:
        parts = [f"{self.admin1_column}={self.admin1.strip() or '?'}"]
        if self.district.strip():
            parts.append(f"{self.district_column}={self.district.strip()}")
        return ", ".join(parts)


@dataclass
class Unplaced:
    """A record converted from its row, waiting for its district: read_file locates every
    record of a file at once, then calls place(). `check` runs once the district is known
    (UCDP's where_prec 5 areas) and may refuse the record."""

    record: dict[str, Any]
    names: Names
    check: Callable[[dict[str, Any], KpPlaces], None] | None = None


class OutsideKp(RowRefused):
    """A row whose names say KP (or a KP district) but whose point lies outside it. Its detail
    gets the distance to KP once read_file has measured every such row at once."""

    def __init__(self, names: Names, lon: float, lat: float):
        super().__init__(NAMES_SAY_KP, f"{names.says()}, point {lon:g},{lat:g}")
        self.lon, self.lat = lon, lat


def place(
    rec: dict[str, Any], names: Names, district: str | None, swapped_in_kp: bool = False
) -> list[tuple[str, str]]:
    """Set rec["district"] to `district` (the one its point lies in, None outside KP) and return
    the notices (kind, text) its names raise, each also added to rec["flags"].

    Raises RowError when the point is outside KP but would be inside with latitude and
    longitude exchanged (`swapped_in_kp`: reported, not silently corrected, since the row's
    other columns may be just as wrong), OutsideKp when the names say KP but the point is
    outside it, RowRefused for any other point outside KP. A point in KP whose province name is
    another province's is taken and flagged; so is one whose district name resolves
    (geo.build.districts, "Khyber agency" -> khyber) to other polygons than the point's.
    """
    lon, lat = rec["lon"], rec["lat"]
    status = admin1_status(names.admin1)
    reported = reported_districts(names.district) if names.district.strip() else None
    if district is None:
        if swapped_in_kp:
            raise RowError(
                "latitude/longitude look swapped", f"latitude {lat:g}, longitude {lon:g}"
            )
        if status is True or (status is None and reported):
            raise OutsideKp(names, lon, lat)
        raise RowRefused(OUTSIDE_KP, f"{names.says()}, point {lon:g},{lat:g}")
    rec["district"] = district
    notices = []
    if status is False:
        notices.append(
            (
                OTHER_PROVINCE,
                f"{names.admin1_column} {names.admin1.strip()!r} names another province, but "
                f"the point lies in KP ({district})",
            )
        )
    if reported is not None and district not in reported:
        notices.append(
            (
                DISTRICT_DISAGREES,
                f"{names.district_column} {names.district.strip()!r} is "
                f"{' / '.join(reported)}, but the point lies in {district}",
            )
        )
    rec["flags"].extend(text for _, text in notices)
    return notices
