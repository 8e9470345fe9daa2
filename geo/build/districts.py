"""The districts layer: KP's 35 districts from OCHA's COD-AB Pakistan 2022 (ADM2, P-codes
PK501–PK535), checked against the authored table in data/districts.toml (geo.districts).

    districts = build_districts(adm2, read_district_table(), source="COD-AB ...")
"""

from typing import Any

import geopandas as gpd
import shapely

from geo.citations import cite, read_citations
from geo.crs import EQUAL_AREA_CRS
from geo.districts import District
from geo.errors import BuildError

KP_ADM1_PCODE = "PK5"


def build_districts(
    adm2: gpd.GeoDataFrame,
    table: list[District],
    source: str,
    citations: dict[str, dict[str, str]] | None = None,
) -> gpd.GeoDataFrame:
    """The districts layer: one feature per table entry (KP's ADM2 polygons by P-code).

    Raises BuildError naming every unexpected or missing P-code, or a P-code on two polygons.
    """
    citations = read_citations() if citations is None else citations
    kp = adm2.loc[adm2["ADM1_PCODE"] == KP_ADM1_PCODE]
    found = list(kp["ADM2_PCODE"])
    expected = {d.pcode for d in table}
    problems = []
    if unexpected := sorted(set(found) - expected):
        names = kp.set_index("ADM2_PCODE").loc[unexpected, "ADM2_EN"]
        problems.append(
            "unexpected P-codes in KP: " + ", ".join(f"{p} ({n})" for p, n in names.items())
        )
    if missing := sorted(expected - set(found)):
        problems.append(f"P-codes of data/districts.toml not in the source's KP: {missing}")
    if len(found) != len(set(found)):
        problems.append("a P-code appears on more than one ADM2 polygon")
    if problems:
        raise BuildError("; ".join(problems) + " (see data/districts.toml)")

    by_pcode = kp.set_index("ADM2_PCODE")
    rows = []
    for d in sorted(table, key=lambda d: d.id):
        source_name = by_pcode.loc[d.pcode, "ADM2_EN"]
        rows.append(
            {
                "id": d.id,
                "pcode": d.pcode,
                "name": d.name,
                "aliases": sorted({source_name, *d.aliases} - {d.name}),
                "successors": [
                    {
                        "name": s.name,
                        "created": s.created,
                        "citation": cite(citations, s.citation, f"districts.toml ({d.id})"),
                    }
                    for s in d.successors
                ],
                "former_fata": d.former_fata,
                "frontier_region": d.frontier_region,
                "source": source,
                "geometry": shapely.make_valid(by_pcode.loc[d.pcode, "geometry"]),
            }
        )
    districts = gpd.GeoDataFrame(rows, crs="EPSG:4326")
    districts["area_km2"] = area_km2(districts)
    return districts


def area_km2(frame: gpd.GeoDataFrame) -> Any:
    """Each geometry's area in km² on the equal-area projection, to 0.1 km²."""
    return (frame.to_crs(EQUAL_AREA_CRS).area / 1e6).round(1)


def shared_border_problems(
    districts: gpd.GeoDataFrame, tolerance_km2: float = 0.01, key: str = "id"
) -> list[str]:
    """Gaps and overlaps between neighbouring polygons, as messages (empty when clean).

    A gap is a hole in the union of all polygons; an overlap is a pair whose intersection has
    area. Both are measured on the equal-area projection and reported above `tolerance_km2`, so
    floating-point dust on a shared edge does not count.
    """
    projected = districts.to_crs(EQUAL_AREA_CRS).set_index(key).geometry
    problems = []
    union = shapely.union_all(projected.values)
    for polygon in shapely.get_parts(union):
        for ring in polygon.interiors:
            area = shapely.Polygon(ring).area / 1e6
            if area > tolerance_km2:
                problems.append(f"gap of {area:.3f} km² between polygons near {ring.centroid}")
    tree = shapely.STRtree(projected.values)
    left, right = tree.query(projected.values, predicate="intersects")
    for i, j in zip(left, right, strict=True):
        if i < j:
            area = projected.iloc[i].intersection(projected.iloc[j]).area / 1e6
            if area > tolerance_km2:
                a, b = projected.index[i], projected.index[j]
                problems.append(f"{a} and {b} overlap by {area:.3f} km²")
    return problems
