"""The tehsils layer: KP's 153 tehsils (ADM3), rebuilt from the COD-AB's boundary lines and
tehsil points, because the COD's ADM3 polygon file is not among the mirrored files.

ITOS made the line layer by converting the ADM3 polygons to lines and the point layer from the same
polygons' centroids, so noding and polygonizing every line gives back the tehsil faces, and the
point inside a face names it. The rebuild is checked, not trusted: each face's planar area and
perimeter (in degrees, as ArcGIS stored them) must equal the ADM3 table's Shape_Area and
Shape_Leng, and the tehsils of each district must dissolve into its polygon.
"""

import re

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo.build.districts import KP_ADM1_PCODE, area_km2
from geo.crs import EQUAL_AREA_CRS
from geo.errors import BuildError

EXPECTED_KP_TEHSILS = 153
# Relative difference allowed between a rebuilt face and the stored area / perimeter. The rebuild
# is exact to ~1e-11 (floating point); a wrong face differs by whole percent.
STORED_SHAPE_TOLERANCE = 1e-6
# A district and the union of its tehsils may differ by floating-point dust only (km²).
DISSOLVE_TOLERANCE_KM2 = 0.01


def polygonize_faces(lines: gpd.GeoDataFrame) -> np.ndarray:
    """Every face the boundary lines enclose (all admin levels, noded first)."""
    noded = shapely.node(shapely.GeometryCollection(list(lines.geometry.values)))
    return shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))


def slug(text: str) -> str:
    """'Town-Iii' -> 'town-iii'; 'D. I. Khan' -> 'd-i-khan'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def build_tehsils(
    lines: gpd.GeoDataFrame,
    points: gpd.GeoDataFrame,
    adm3: pd.DataFrame,
    districts: gpd.GeoDataFrame,
    frontier_tehsils: dict[str, str],
    source: str,
) -> gpd.GeoDataFrame:
    """KP's tehsils: one polygon per KP tehsil point, checked (see the module docstring).

    `districts` is the districts layer (id, pcode, geometry); `frontier_tehsils` maps the ADM3
    P-code of each tehsil that was a Frontier Region to the FR's name. Raises BuildError listing
    every tehsil that cannot be rebuilt or does not match the source.
    """
    kp_points = points.loc[points["ADM1_PCODE"] == KP_ADM1_PCODE].reset_index(drop=True)
    stored = adm3.loc[adm3["ADM1_PCODE"] == KP_ADM1_PCODE].set_index("ADM3_PCODE")
    faces = polygonize_faces(lines)
    point_index, face_index = shapely.STRtree(faces).query(
        kp_points.geometry.values, predicate="within"
    )
    face_of = dict(zip(point_index.tolist(), face_index.tolist(), strict=True))
    district_of = dict(zip(districts["pcode"], districts["id"], strict=True))
    problems, rows = [], []
    for i, point in kp_points.iterrows():
        pcode, name = point["ADM3_PCODE"], point["ADM3_EN"]
        where = f"tehsil {pcode} ({name})"
        if i not in face_of:
            problems.append(f"{where}: its point lies in no face of the boundary lines")
            continue
        face: shapely.Geometry = faces[face_of[i]]
        if pcode not in stored.index:
            problems.append(f"{where}: not in the ADM3 attribute table")
            continue
        for measure, value, expected in (
            ("area", face.area, stored.at[pcode, "Shape_Area"]),
            ("perimeter", face.length, stored.at[pcode, "Shape_Leng"]),
        ):
            if abs(value - expected) > STORED_SHAPE_TOLERANCE * expected:
                problems.append(
                    f"{where}: rebuilt {measure} {value:.6g} differs from the stored {expected:.6g}"
                )
        district = district_of.get(point["ADM2_PCODE"])
        if district is None:
            problems.append(f"{where}: district P-code {point['ADM2_PCODE']} is not a district")
            continue
        rows.append(
            {
                "id": f"{district}-{slug(name)}",
                "pcode": pcode,
                "name": name,
                "district": district,
                "district_pcode": point["ADM2_PCODE"],
                "former_frontier_region": pcode in frontier_tehsils,
                "frontier_region": frontier_tehsils.get(pcode),
                "source": source,
                "geometry": face,
            }
        )
    if len(face_of) != len(set(face_of.values())):
        problems.append("two tehsil points lie in the same face")
    if len(kp_points) != EXPECTED_KP_TEHSILS:
        problems.append(f"{len(kp_points)} KP tehsil points, expected {EXPECTED_KP_TEHSILS}")
    if unknown := sorted(set(frontier_tehsils) - set(kp_points["ADM3_PCODE"])):
        problems.append(f"frontier_region tehsils of data/districts.toml not in KP: {unknown}")
    if problems:
        raise BuildError("the tehsils cannot be rebuilt:\n  " + "\n  ".join(problems))
    tehsils = gpd.GeoDataFrame(rows, crs="EPSG:4326").sort_values("id", ignore_index=True)
    if problems := dissolve_problems(tehsils, districts):
        raise BuildError("tehsils and districts differ:\n  " + "\n  ".join(problems))
    tehsils["area_km2"] = area_km2(tehsils)
    return tehsils


def dissolve_problems(tehsils: gpd.GeoDataFrame, districts: gpd.GeoDataFrame) -> list[str]:
    """Districts that differ from the union of their tehsils by more than dust (as messages).

    The difference is taken in longitude/latitude, where both come from the same vertices, and
    only then projected to measure it: projecting first would bend an edge that one side has
    split at a vertex and the other has not.
    """
    unions = tehsils.dissolve(by="district").geometry
    problems = []
    for district_id, polygon in districts.set_index("id").geometry.items():
        union = unions.get(district_id)
        differs = polygon if union is None else polygon.symmetric_difference(union)
        km2 = gpd.GeoSeries([differs], crs=districts.crs).to_crs(EQUAL_AREA_CRS).area.iloc[0] / 1e6
        if km2 > DISSOLVE_TOLERANCE_KM2:
            problems.append(f"{district_id}: tehsils differ from the district by {km2:.3f} km²")
    return problems
