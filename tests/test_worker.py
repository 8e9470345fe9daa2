"""`make run`'s server as it runs: gunicorn with gunicorn_conf.py (app.worker's worker) on the
session's store, over real sockets: the limits on a request's head that gunicorn's own HTTP
parser kept (app.worker), and answers that arrive whole, kept alive or streamed."""

import collections
import contextlib
import gzip
import http.client
import io
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks.bench_tiles_nginx import Gunicorn, wait_until_up
from benchmarks.net import free_port

HEAD_SECONDS = 1  # --keep-alive: the time a request's head may take


@pytest.fixture(scope="module")
def server(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """gunicorn as `make run` starts it (the benchmarks' Gunicorn), one worker, a short
    keep-alive (gunicorn reads GUNICORN_CMD_ARGS over its config file)."""
    port = free_port()
    options = f"--workers 1 --keep-alive {HEAD_SECONDS}"
    env = {**os.environ, "KPMAP_STORE": str(store_dir), "GUNICORN_CMD_ARGS": options}
    with Gunicorn(port, "wsgi:app", env, tmp_path_factory.mktemp("gunicorn")) as running:
        wait_until_up(running.url + "/ogc", timeout=60)
        yield port


def _raw(port: int, data: bytes, wait: float = 10) -> bytes:
    """What the server answers `data` with, until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
        return received


def test_requests_kept_alive_and_streamed(server: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    connection.request("GET", "/ogc")
    first = connection.getresponse()
    assert first.status == 200 and first.read()
    assert first.getheader("Connection") != "close"
    # the same connection again: a download, streamed in chunks
    connection.request("GET", "/download/attacks.csv", headers={"Accept-Encoding": "gzip"})
    streamed = connection.getresponse()
    body = streamed.read()
    assert streamed.status == 200, body[:200]
    assert streamed.getheader("Content-Encoding") == "gzip"
    assert gzip.decompress(body).startswith(b"id,")
    connection.close()


def test_a_head_that_does_not_arrive_in_time_is_dropped(server: int) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server), timeout=10) as s:
        s.sendall(b"GET /ogc HTTP/1.1\r\nHost: x\r\n")  # the rest never comes
        assert s.recv(65536) == b""  # closed by the server, unanswered
    assert HEAD_SECONDS <= time.monotonic() - started < HEAD_SECONDS + 3


def test_an_idle_kept_alive_connection_is_closed(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as s:
        s.sendall(b"GET /ogc HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        while s.recv(65536):  # the rest of the answer, then the close
            pass
        assert time.monotonic() - started < HEAD_SECONDS + 3


def test_a_slow_head_does_not_hold_others(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as slow:
        slow.sendall(b"GET /ogc HTTP/1.1\r\n")
        started = time.monotonic()
        answer = _raw(server, b"GET /ogc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")
        assert time.monotonic() - started < HEAD_SECONDS


def test_a_long_request_line_is_refused_414(server: int) -> None:
    answer = _raw(server, b"GET /ogc?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 414")


def test_too_long_or_many_header_fields_are_refused_431(server: int) -> None:
    long_field = b"GET /ogc HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n"
    assert _raw(server, long_field).startswith(b"HTTP/1.1 431")
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(120))
    assert _raw(server, b"GET /ogc HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n").startswith(
        b"HTTP/1.1 431"
    )
    fine = b"GET /ogc HTTP/1.1\r\nHost: x\r\nX-Fine: " + b"a" * 8000 + b"\r\nConnection: close"
    assert _raw(server, fine + b"\r\n\r\n").startswith(b"HTTP/1.1 200")


class _RecordedSocket:
    """A socket whose writes (send and sendall calls) are kept, each as the bytes it wrote."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.sent = sock, []

    def sendall(self, data: bytes, *flags: int) -> None:
        self.sent.append(bytes(data))
        self.sock.sendall(data, *flags)

    def send(self, data: bytes, *flags: int) -> int:
        count = self.sock.send(data, *flags)
        self.sent.append(bytes(data[:count]))
        return count

    def __getattr__(self, name: str):
        return getattr(self.sock, name)


def _wsgi_server(app):
    """A pywsgi server of `app` with app.worker's Handler (not started), no access log."""
    from gevent.pywsgi import WSGIServer

    from app.worker import Handler

    handler = type("Handler", (Handler,), {"open": set()})
    server = WSGIServer(("127.0.0.1", 0), app, handler_class=handler)
    server.log = SimpleNamespace(access_log_enabled=False)
    return server


_CLOSING_GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def _sends(app, request: bytes = _CLOSING_GET) -> tuple[list[bytes], bytes]:
    """The writes app.worker's Handler makes to answer one request with `app`, on one end of a
    socket pair, and what arrives at the other."""
    import gevent
    from gevent import socket as gevent_socket

    ours, theirs = gevent_socket.socketpair()
    recorded = _RecordedSocket(ours)
    server = _wsgi_server(app)
    theirs.sendall(request)
    with gevent.Timeout(10):  # a request the handler would wait on for ever fails the test
        server.handler_class(recorded, ("127.0.0.1", 1), server).handle()
    ours.close()
    received = b""
    while chunk := theirs.recv(65536):
        received += chunk
    theirs.close()
    return recorded.sent, received


def _answering(status: str, headers: list, body: list[bytes]):
    def app(environ, start_response):
        start_response(status, headers)
        return iter(body)

    return app


@pytest.mark.parametrize(
    ("status", "headers", "body", "sends"),
    [
        ("200 OK", [("Content-Length", "5")], [b"hello"], 1),  # a tile: head and body in one
        ("304 Not Modified", [("ETag", '"x"')], [], 1),  # a head alone
        ("200 OK", [], [b"abc", b"defg"], 3),  # chunked: the head with the first chunk
        ("200 OK", [("Content-Length", "70000")], [b"a" * 70000], 2),  # too big to copy
    ],
)
def test_a_small_first_chunk_is_sent_with_the_head(status, headers, body, sends) -> None:
    sent, received = _sends(_answering(status, headers, body))
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode())
    if headers and headers[0][0] == "Content-Length":
        assert rest == b"".join(body)
    elif body:  # chunked: each chunk framed, then the last
        assert rest == b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    assert b"".join(sent) == received
    assert len(sent) == sends
    # the head is sent on its own only when there is no body, or it is too big to copy
    assert sent[0].endswith(b"\r\n\r\n") == (not body or len(body[0]) > 65536)


def test_a_connection_that_pipelines_its_requests_lets_the_others_have_their_turn() -> None:
    """Two kept-alive connections of one worker receive requests at once, 400 pipelined on
    one, a single one on the other: the single one is answered after at most a few of the 400.
    (A greenlet only yields when its socket would block, so without its turn given up between
    requests the first served would answer all 400 first. libev runs the handlers of sockets
    that became readable together last-ready first, hence the single request is sent first.)"""
    import gevent
    from gevent import socket as gevent_socket

    order: list[str] = []

    def app(environ, start_response):
        order.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    def request(path: str) -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()

    def answers(sock, count: int) -> None:
        received = b""
        while received.count(b"\r\n\r\nok") < count:
            received += sock.recv(65536)

    server = _wsgi_server(app)
    server.start()
    address = ("127.0.0.1", server.server_port)
    with contextlib.ExitStack() as sockets, gevent.Timeout(20):
        sockets.callback(server.stop)
        eager, other = (
            sockets.enter_context(gevent_socket.create_connection(address)) for _ in range(2)
        )
        for sock in (eager, other):  # both connections served once, and kept alive
            sock.sendall(request("/first"))
            answers(sock, 1)
        other.sendall(request("/other"))
        eager.sendall(b"".join(request(f"/eager/{i}") for i in range(400)))
        answers(other, 1)
        answers(eager, 400)
    assert order.index("/other") < 10, order.index("/other")


_BROWSER = (
    b"Host: kpmap.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0)\r\n"
    b"Accept: image/avif,image/webp,*/*\r\nAccept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\nReferer: https://kpmap.example/\r\n"
    b'Connection: keep-alive\r\nIf-None-Match: "abc", W/"def"\r\n\r\n'
)


@pytest.mark.parametrize(
    "head",
    [
        b"Host: 127.0.0.1:8931\r\nAccept-Encoding: gzip\r\n\r\n",  # wrk's
        _BROWSER,
        b"Host: x\r\nAccept: a\r\nCookie: b=1\r\nAccept: c\r\nCookie: d=2\r\n\r\n",  # repeated
        b"Host: x\r\nX-Empty:\r\nX-Blank: \r\nX-Tab:\tv\t\r\nX-Colon: a: b\r\n\r\n",
        b"Host: x\r\nX-Bytes: caf\xc3\xa9 \xe9\r\n\r\n",  # UTF-8 and Latin-1 bytes
        b"Host: x\r\nX-Long: " + b"a" * 8000 + b"\r\n\r\n",
        b"Host: x\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n",
        b"Host: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"\r\n",  # no fields
    ],
)
def test_header_fields_are_read_as_pywsgi_read_them(head: bytes) -> None:
    from gevent.pywsgi import headers_factory

    from app.worker import read_header_fields

    ours, theirs = read_header_fields(io.BytesIO(head)), headers_factory(io.BytesIO(head))
    assert ours.status == theirs.status == ""
    assert ours.items() == theirs.items()
    assert list(ours.headers) == list(theirs.headers)


@pytest.mark.parametrize(
    "fields",
    [
        b"X-A : 1\r\n",  # a space before the colon
        b"X-A: 1\r\n folded\r\n",  # a field folded over two lines
        b"no colon\r\n",
        b": no name\r\n",
        b"X-A: \x01\r\n",  # a control character
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",  # a body framed two ways
        b"Content-Length: five\r\n",
    ],
)
def test_malformed_header_fields_are_refused_400(fields: bytes) -> None:
    from app.worker import read_header_fields

    assert read_header_fields(io.BytesIO(b"Host: x\r\n" + fields + b"\r\n")).status
    _, answer = _sends(
        _answering("200 OK", [], [b"not reached"]),
        b"GET / HTTP/1.1\r\n" + b"Host: x\r\n" + fields + b"Connection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer


def test_header_lines_ended_by_a_bare_lf_are_refused_400() -> None:
    _, answer = _sends(_answering("200 OK", [], [b"x"]), b"GET / HTTP/1.1\nHost: x\n\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer


def test_a_head_cut_short_or_a_line_over_65536_bytes_is_refused_and_101_fields_too_many() -> None:
    from app.worker import read_header_fields

    cut = read_header_fields(io.BytesIO(b"Host: x\r\nX-Cut: before the empty line\r\n"))
    assert cut.status.startswith("Connection closed before the end")
    long_line = b"X-Long: " + b"a" * 65536 + b"\r\n\r\n"
    assert read_header_fields(io.BytesIO(long_line)).status == "Line too long"
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n"
    with pytest.raises(http.client.HTTPException, match="more than 100"):
        read_header_fields(io.BytesIO(many))
    assert not read_header_fields(io.BytesIO(many.split(b"X-100")[0] + b"\r\n")).status


def pid_app(environ, start_response):
    """A WSGI app that answers the pid of the worker serving it (gunicorn's target below)."""
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


WORKERS = 4


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """gunicorn as `make run` starts it, WORKERS workers, serving pid_app; every worker up."""
    port = free_port()
    env = {**os.environ, "GUNICORN_CMD_ARGS": f"--workers {WORKERS}"}
    work = tmp_path_factory.mktemp("gunicorn")
    with Gunicorn(port, "tests.test_worker:pid_app", env, work) as running:
        wait_until_up(running.url + "/", timeout=60)
        deadline = time.monotonic() + 60
        while len(running.pids()) < 1 + WORKERS and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # each worker's server started (a worker boots in milliseconds)
        yield port


def test_a_burst_of_new_connections_is_spread_over_the_workers(workers: int) -> None:
    """Eight connections opened at once, as a browser or wrk opens them, each kept alive: every
    worker takes some, none more than three (a new connection wakes every worker, and the first
    to run took most of them: 5-2-1-0, 3-3-1-1)."""
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.create_connection(("127.0.0.1", workers), timeout=10))
            for _ in range(8)
        ]
        for s in sockets:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        served = []
        for s in sockets:
            answer = http.client.HTTPResponse(s)
            answer.begin()
            served.append(answer.read())
    counts = sorted(collections.Counter(served).values(), reverse=True)
    assert len(counts) == WORKERS and counts[0] <= 3, counts


def test_the_workers_loads_are_shared_and_slots_freed() -> None:
    """app.worker.Loads as gunicorn's master and its workers use it: a slot per worker, given
    in the master as each is made and freed when it exits, and the counts each publishes."""
    import multiprocessing

    from app.worker import Loads

    loads = Loads()
    first, second, third = (loads.claim() for _ in range(3))
    assert (first, second, third) == (0, 1, 2)
    for slot, held in ((first, 3), (second, 3), (third, 5)):
        loads.publish(slot, held)
    assert not loads.fewer_elsewhere(first, 3)  # none holds fewer than 3
    assert loads.fewer_elsewhere(third, 5)
    # a worker writes its count in another process (forked, as gunicorn forks its workers)
    forked = multiprocessing.get_context("fork").Process(target=loads.publish, args=(second, 1))
    forked.start()
    forked.join(10)
    assert forked.exitcode == 0
    assert loads.fewer_elsewhere(first, 3)  # the second now holds 1
    loads.release(second)  # it exits: its slot no longer counts, and is given again
    assert not loads.fewer_elsewhere(first, 3)
    assert loads.claim() == second
    assert [loads.claim() for _ in range(Loads.SLOTS)].count(None) == 3


def test_the_map_pages_are_rendered_before_the_workers_are_forked(store_dir: Path) -> None:
    """wsgi.py (what gunicorn's master loads before it forks) leaves the map and embed pages
    in the page cache: no worker's first visitor waits for folium."""
    import subprocess
    import sys

    check = (
        "import wsgi\n"
        "from app import maps\n"
        "def render_again(*args, **kwargs): raise AssertionError('rendered again')\n"
        "maps._render_page = render_again\n"
        "with wsgi.app.test_client() as client:\n"
        "    for path in ('/', '/embed'):\n"
        "        answer = client.get(path)\n"
        "        assert answer.status_code == 200, (path, answer.status_code)\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "KPMAP_STORE": str(store_dir)}
    done = subprocess.run([sys.executable, "-c", check], cwd=root, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
