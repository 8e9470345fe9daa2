"""The fast paths of the build (issue 15) give what the plain ones give."""

import numpy as np
import shapely
from shapely.geometry import LineString

from geo.border import BorderIndex


def test_border_distances_equal_the_nearest_segments_projection():
    # A SYNTHETIC zigzag border with a vertex every ~2.5 km, and random points around it.
    rng = np.random.default_rng(5)
    t = np.linspace(0, 5, 2001)
    line = LineString(
        np.column_stack([70 + 0.3 * np.sin(t * 7) + rng.normal(0, 0.01, t.size), 30 + t])
    )
    index = BorderIndex(line)
    lon, lat = rng.uniform(69, 72, 30_000), rng.uniform(29.5, 35.5, 30_000)
    np.testing.assert_allclose(
        index.distance_km(lon, lat), index._projected_km(lon, lat), atol=1e-9
    )
    assert index.distance_km(np.array([70.0]), np.array([30.0]))[0] < 2
    multi = shapely.MultiLineString([[(70, 30), (70, 31)], [(71, 31), (71, 32)]])
    index = BorderIndex(multi)
    np.testing.assert_allclose(
        index.distance_km(lon[:500], lat[:500]),
        index._projected_km(lon[:500], lat[:500]),
        atol=1e-9,
    )
