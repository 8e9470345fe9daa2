"""The PostGIS store (geo.store.postgis) against a real PostgreSQL + PostGIS server that the
tests start themselves (tests/pg.py: initdb and pg_ctl in a temporary folder). Where PostgreSQL
is not installed these tests are skipped; in CI (.ci/run installs it) they fail instead.
"""

import os
from collections.abc import Iterator

import pytest

from tests.pg import PgServer, missing_reason


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    reason = missing_reason()
    if reason:
        # CI installs PostgreSQL and PostGIS (.ci/run): there a missing server is a failure.
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    server = PgServer.start()
    yield server
    from geo.store.postgis import close_pools

    close_pools()
    server.stop()


def test_the_server_has_postgis(pg):
    import psycopg

    url = pg.create_database("fixture_check")
    with psycopg.connect(url) as conn:
        point = conn.execute("SELECT ST_AsText(ST_Point(71.5, 34.0, 4326))").fetchone()[0]
    assert point == "POINT(71.5 34)"
    # reached over the Unix socket in the server's own folder, never a TCP port
    assert psycopg.conninfo.conninfo_to_dict(url)["host"] == str(pg.folder)
