"""Coordinate systems and measures kpmap uses, in one place: the WGS 84 ellipsoid for
distances and lengths, a transverse Mercator on KP for metric buffers, an equal-area projection
for areas, and Web Mercator (EPSG:3857) for the map's tiles and grids."""

import numpy as np
import shapely
from pyproj import Geod, Transformer
from shapely.geometry import LineString, MultiLineString

GEOD = Geod(ellps="WGS84")
# Metres, true to scale along KP's meridian: under 0.2 % scale error across the province.
KP_TMERC = "+proj=tmerc +lon_0=71.5 +datum=WGS84"
# Albers equal-area on Pakistan: district and tehsil areas in m².
EQUAL_AREA_CRS = "+proj=aea +lat_0=30 +lon_0=70 +lat_1=27 +lat_2=35 +datum=WGS84 +units=m"
EARTH_RADIUS = 6378137.0  # of the Web Mercator sphere
MAX_LAT = 85.0511287798  # Web Mercator's limit


def geodesic_length_km(line: LineString | MultiLineString) -> float:
    """Length on the WGS 84 ellipsoid, in km (not the planar length in degrees)."""
    return GEOD.geometry_length(line) / 1000.0


def transform_geometry(geometry: shapely.Geometry, transformer: Transformer) -> shapely.Geometry:
    return shapely.transform(geometry, lambda xy: np.column_stack(transformer.transform(*xy.T)))


def web_mercator(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """EPSG:3857 metres of longitudes/latitudes; latitude clamped to Web Mercator's +-85.05.

    >>> [round(float(v)) for v in web_mercator(180.0, 0.0)]
    [20037508, 0]
    """
    lon = np.asarray(lon, dtype=float)
    lat = np.clip(np.asarray(lat, dtype=float), -MAX_LAT, MAX_LAT)
    x = np.radians(lon) * EARTH_RADIUS
    y = np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) * EARTH_RADIUS
    return x, y
