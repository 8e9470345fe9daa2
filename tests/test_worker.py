"""`make run`'s server as it runs: gunicorn with gunicorn_conf.py (app.worker's worker) on the
session's store, over real sockets: the limits on a request's head that gunicorn's own HTTP
parser kept (app.worker), and answers that arrive whole, kept alive or streamed."""

import contextlib
import gzip
import http.client
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
    """A socket whose sendall calls are kept, each as the bytes it was given."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.sent = sock, []

    def sendall(self, data: bytes, *flags: int) -> None:
        self.sent.append(bytes(data))
        self.sock.sendall(data, *flags)

    def __getattr__(self, name: str):
        return getattr(self.sock, name)


def _sends(app, method: str = "GET") -> tuple[list[bytes], bytes]:
    """The sendall calls app.worker's Handler makes to answer one request with `app`, on one
    end of a socket pair, and what arrives at the other."""
    from gevent import socket as gevent_socket
    from gevent.pywsgi import WSGIServer

    from app.worker import Handler

    ours, theirs = gevent_socket.socketpair()
    recorded = _RecordedSocket(ours)
    handler = type("Handler", (Handler,), {"open": set()})
    server = WSGIServer(("127.0.0.1", 0), app, handler_class=handler)
    server.log = SimpleNamespace(access_log_enabled=False)
    theirs.sendall(f"{method} / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    handler(recorded, ("127.0.0.1", 1), server).handle()
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
    from gevent.pywsgi import WSGIServer

    from app.worker import Handler

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

    handler = type("Handler", (Handler,), {"open": set()})
    server = WSGIServer(("127.0.0.1", 0), app, handler_class=handler)
    server.log = SimpleNamespace(access_log_enabled=False)
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
