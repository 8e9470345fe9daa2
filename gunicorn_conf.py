"""gunicorn's settings for `make run` (`gunicorn -c gunicorn_conf.py ...`): gevent workers
(app.worker: gevent's own WSGI server, with the limits on a request's head set below).

Why gevent: gunicorn's threaded workers put one thread on each connection, from its first byte
to its last, so a few clients that send their headers slowly (slowloris) or read a large
download slowly hold every thread, and nothing else is answered. With gevent every connection
is a greenlet that costs a few kilobytes while it waits, so thousands of slow connections cost
nothing, and a request is answered as soon as it has fully arrived. gunicorn's own docs name
async workers for a service reached directly from the internet; the other standard answer, a
buffering reverse proxy (nginx) in front of the threaded workers, needs a server pip cannot
install, so it is the documented deployment option (README, "Serving it"), not the default.

The price of one event loop per process: a request that computes for a long time (a PNG tile,
a filtered GeoPackage) holds its worker's other requests meanwhile. So: more workers than
cores (an idle worker takes new connections while another computes), a streamed response
lets the others run between its chunks, and the heartbeat timeout is long enough for the
slowest render. Read benchmarks/slow_clients.py for the figures.

This file is imported by gunicorn's master before it loads the app, which is the one place
where gevent's monkey-patching happens before anything (ssl, threading) is imported: needed
with preload_app, where the app is loaded in the master and only then forked.
"""

from gevent import monkey

monkey.patch_all()

import multiprocessing  # noqa: E402
import os  # noqa: E402

import gevent  # noqa: E402

# gevent's pywsgi server on gunicorn's gevent worker (app.worker says why, and what it adds).
worker_class = "app.worker.Worker"
# WEB_CONCURRENCY is the usual way to set it (gunicorn's own default reads it too).
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count()))
# Connections each worker holds at once (slow ones included); past it new ones wait in the
# listen backlog.
worker_connections = 1000
backlog = 2048
# Open the store once, before the workers fork: they share its memory (the app freezes it out
# of the garbage collector), so a 1M-attack store takes ~1.8 GB, not ~3.4 GB with 2 workers.
preload_app = True
# A worker whose event loop has not run for this long is restarted. Not a request time limit
# (a slow reader may take hours over a large download and never blocks the loop); it must
# outlast the longest computation that runs without yielding (a filtered GeoPackage of a
# million attacks takes ~40 s).
timeout = 120
graceful_timeout = 30
# Seconds an idle keep-alive connection is kept, and (app.worker) the time a client has to
# send a whole request's head: a slowloris connection is dropped after it (within a second).
keepalive = 5
# More or longer header fields are refused with 431 before the app sees them (gunicorn's
# defaults, which app.worker applies). A request line longer than 8,190 characters is refused
# with 414 by pywsgi itself (gunicorn's limit_request_line does not reach it).
limit_request_fields = 100
limit_request_field_size = 8190


def child_exit(server, worker) -> None:
    """The exited worker's slot in the table of connections per worker (app.worker.Loads)
    freed, in the master, for the worker made next."""
    from app.worker import LOADS

    LOADS.release(getattr(worker, "slot", None))


def post_worker_init(worker) -> None:
    """Let the worker's other greenlets run between the chunks of a streamed response.

    A fast reader of a large download (the CSV of a million attacks) never waits on its socket,
    so without this its greenlet would hold the worker until the whole file was written.
    """
    worker.wsgi = cooperative(worker.wsgi)


def cooperative(app):
    """A WSGI middleware that yields to the event loop after every chunk of a response.

    Files sent with wsgi.file_wrapper (sendfile) and lists are passed through untouched.
    """

    def wrapped(environ, start_response):
        body = app(environ, start_response)
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(body, list | tuple) or (file_wrapper and isinstance(body, file_wrapper)):
            return body
        return _Yielding(body)

    return wrapped


class _Yielding:
    def __init__(self, body) -> None:
        self.body = body

    def __iter__(self):
        for chunk in self.body:
            yield chunk
            gevent.sleep(0)

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()
