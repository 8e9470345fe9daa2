"""The gunicorn entry: `gunicorn --preload ... wsgi:app` (see the Makefile's run target).

The process-wide steps that do not belong in the factory happen here, once per server.
"""

import gc

from app import create_app

app = create_app()
# The map pages rendered once here, before gunicorn forks the workers: each worker starts with
# them in its page cache (app.maps), where each worker's first visitor waited ~90 ms for folium.
with app.test_client() as client:
    for path in ("/", "/embed"):
        client.get(path)
# The store lives as long as the process: move it out of the cyclic collector's sight, or every
# collection walks a million attacks (90-220 ms pauses on a 1M store). Frozen objects are never
# written to by the collector, so workers forked after this (gunicorn --preload) keep sharing
# the store's memory pages.
gc.freeze()
