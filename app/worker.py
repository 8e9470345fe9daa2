"""The gunicorn worker `make run` serves with (gunicorn_conf.py): gevent's own WSGI server on
gunicorn's gevent worker, with the limits gunicorn's HTTP parser would have kept.

Why not gunicorn's plain `gevent` worker: it parses every request with gunicorn's HTTP parser,
written in Python on gevent's sockets, and that parser, not the app, was the floor under a
cached tile (docs/tiles.md): 142 µs of CPU per answer for a fixed body, 0.21 of what nginx
serves from the same disk, p99 over 100 ms at 8 connections. gevent's `pywsgi` server, which
gunicorn runs as its `gevent_pywsgi` worker, answers the same fixed body with 90 µs, at 0.32
of nginx's rate (benchmarks/bench_tiles_nginx.py). Slow clients cost the same in both: a
greenlet each.

What gunicorn's parser enforced and pywsgi does not, kept here (from gunicorn's settings, so
gunicorn_conf.py and the command line still set them):
- a request's head (its request line and headers) must arrive within `keepalive` seconds,
  and a kept-alive connection idle for as long is closed: a slowloris connection, which sends
  its headers a byte at a time, holds a greenlet for seconds, not for ever;
- `limit_request_fields` and `limit_request_field_size`: more or longer header fields are
  answered 431 (the head's own bounds are past them: 100 fields and lines of 65,536 bytes,
  http.client's, kept by read_header_fields, and pywsgi's request line of 8,190 characters,
  answered 414);
- no access-log record is made when no access log is kept.

What pywsgi does at a cost, changed here (docs/tiles.md has the figures):
- a greenlet serves its connection's next request without letting the worker's other
  connections have their turn when the request has already arrived (its socket never blocks):
  a client that asks again as soon as it is answered held the others' answers for up to
  hundreds of milliseconds. Each connection now yields before its next request;
- it parses a request's header fields with http.client's email parser, a tenth of a cached
  tile's CPU; llhttp (httptools) parses them here (read_header_fields), strictly;
- it formats the Date field for every answer; here once a second;
- it sends a response's head and its body's first chunk with a sendall each (gevent's sendall
  asks for the socket's buffer size first). A small first chunk is sent with the head, with one
  send (Handler._sendall): a segment and three system calls fewer for every tile and JSON answer.

What the workers do together, added here: a new connection goes to the worker holding fewest
(Server, with the counts in memory the workers share: Loads), where the first worker to run took
it, so a burst of connections went mostly to one or two workers.
"""

import mmap
from functools import lru_cache
from http.client import HTTPException
from time import monotonic, time
from wsgiref.handlers import format_date_time

import gevent
import httptools
from gevent.pywsgi import OldMessage
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler, PyWSGIServer

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Connection: close\r\nContent-Length: 0\r\n\r\n"
)


# The largest first body chunk sent in one piece with its response's head (copied to it).
JOINED_BODY_BYTES = 64 * 1024


# http.client's bounds on a request's head, which pywsgi read it with: a line of at most
# 65,536 bytes (longer: 400), at most 100 fields (more: 431, as for limit_request_fields).
_MAX_LINE, _MAX_FIELDS = 65536, 100
# llhttp is given the fields after a request line of its own: pywsgi has read and checked the
# request's, and its own rules for it stay.
_REQUEST_LINE = b"GET / HTTP/1.1\r\n"


class _HeadersTooLarge(ValueError):
    """More header fields, or a longer one, than the worker takes."""


class _Fields:
    """httptools' parser callback: each header field into the message, as it is parsed."""

    def __init__(self, message: OldMessage) -> None:
        self.message = message

    def on_header(self, name: bytes, value: bytes) -> None:
        self.message.set_raw(name.decode("latin-1"), value.decode("latin-1"))


def read_header_fields(fp, *_) -> OldMessage:
    """A request's header fields, read from `fp` up to the empty line, as the message pywsgi
    takes (http.client's, with its bounds), parsed by llhttp (httptools) instead of the email
    parser http.client uses: a tenth of the time, and strict where RFC 9112 lets a server be
    (a space before the colon, a field folded over lines, a control character, a line ended
    by a bare LF, both Content-Length and Transfer-Encoding, a head cut short: 400, where the
    email parser took them one way or another)."""
    message = OldMessage()
    head = [_REQUEST_LINE]
    while True:
        line = fp.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            message.status = "Line too long"
            return message
        if not line:
            message.status = "Connection closed before the end of the header fields"
            return message
        head.append(line)
        if line in (b"\r\n", b"\n"):
            break
        if len(head) > _MAX_FIELDS + 1:
            raise HTTPException(f"got more than {_MAX_FIELDS} headers")
    try:
        httptools.HttpRequestParser(_Fields(message)).feed_data(b"".join(head))
    except httptools.HttpParserUpgrade:
        pass  # fields that ask for another protocol: read whole, pywsgi answers them
    except httptools.HttpParserError as error:
        message = OldMessage()
        message.status = f"Invalid header fields: {error}"
    return message


@lru_cache(maxsize=1)
def _http_date(second: int) -> bytes:
    """The Date field's value for a second."""
    return format_date_time(second).encode("latin-1")


class Handler(PyWSGIHandler):
    """pywsgi's handler of one connection, with gunicorn's limits (set per worker: Worker)."""

    head_seconds: float = 5.0
    max_fields: int = 100
    max_field_size: int = 8190
    # When the request head being read began to be awaited (None while the app answers): the
    # worker's watch (Worker._drop_late_heads) drops the connection once it is too old.
    head_since: float | None = None
    # The connections the worker holds (each worker's subclass has its own set: Worker).
    open: set["Handler"]
    # Whether a request of this connection has been answered (the next one waits its turn).
    answered_one: bool = False
    # While a response's head is being written: the head, held back to go out with the body.
    held_head: bytearray | None = None

    def handle(self):
        self.greenlet = gevent.getcurrent()
        self.open.add(self)
        try:
            super().handle()
        finally:
            self.open.discard(self)

    def handle_one_request(self):
        if self.answered_one:
            # The worker's other connections have their turn before this one's next request.
            # A greenlet only yields when its socket would block: a client that sends its next
            # request as soon as it has an answer (or pipelines them) would otherwise be
            # answered again and again while the others wait, up to hundreds of milliseconds
            # on a busy worker (benchmarks/bench_tiles_nginx.py, docs/tiles.md).
            gevent.sleep(0)
        self.answered_one = True
        self.head_since = monotonic()
        try:
            return super().handle_one_request()
        finally:
            self.head_since = None

    MessageClass = staticmethod(read_header_fields)

    def read_request(self, raw_requestline):
        try:
            read = super().read_request(raw_requestline)
        except HTTPException as exc:  # http.client's parser: "got more than 100 headers"
            raise _HeadersTooLarge(str(exc)) from None
        finally:
            self.head_since = None  # the head is in: the answer takes what it takes
        fields = self.headers.items()
        if 0 < self.max_fields < len(fields):  # 0: no limit, as in gunicorn
            raise _HeadersTooLarge(f"{len(fields)} header fields, at most {self.max_fields}")
        for name, value in fields:
            if 0 < self.max_field_size < len(name) + len(value) + 2:
                raise _HeadersTooLarge(
                    f"header field {name!r} longer than {self.max_field_size} bytes"
                )
        return read

    def _handle_client_error(self, ex):
        # pywsgi's hook for a request it cannot take (it would print a TimeoutError's
        # traceback and answer 400 to everything).
        if isinstance(ex, TimeoutError):
            return None  # a head that never came: close the connection, as gunicorn does
        if isinstance(ex, _HeadersTooLarge):
            self.log_error("(from %s) %s", self.client_address, ex)
            return ("431", _TOO_LARGE)
        return super()._handle_client_error(ex)

    def log_request(self):
        if self.server.log.access_log_enabled:
            super().log_request()

    def finalize_headers(self):
        # pywsgi formats the Date field anew for every answer; it changes once a second.
        if self.provided_date is None:
            self.provided_date = _http_date(int(time()))
            self.response_headers.append((b"Date", self.provided_date))
        super().finalize_headers()

    def _write_with_headers(self, data):
        # pywsgi sends a response's head and its first body chunk with a sendall each: four
        # system calls (gevent asks for the socket's buffer size before each send) and two TCP
        # segments. A small first chunk (a tile, a JSON answer) goes out with the head, in one
        # send (_sendall); a large one is not copied for it.
        if len(data) > JOINED_BODY_BYTES:
            return super()._write_with_headers(data)
        self.held_head = bytearray()
        try:
            super()._write_with_headers(data)  # the head, then the body: both to _sendall
        finally:
            head, self.held_head = self.held_head, None
        if head:  # an empty body, which pywsgi does not send: the head alone
            super()._sendall(head)

    def _sendall(self, data):
        head = self.held_head
        if head is None:
            return super()._sendall(data)
        if not head:
            head += data  # the head: held until the body comes
            return
        self.held_head = None
        joined = head + data
        # One send, not gevent's sendall, which asks for the socket's buffer size first (a
        # system call); a few kilobytes are taken whole, and the rest goes as before.
        try:
            sent = self.socket.send(joined)
        except OSError:
            sent = 0  # pywsgi's _sendall meets the error again, and records it its way
        self.response_length += sent
        if sent < len(joined):
            super()._sendall(memoryview(joined)[sent:])


# How long a worker holding more connections than another waits before it takes a new one.
SPREAD_SECONDS = 0.002


class Loads:
    """How many connections each worker of a server holds, in memory the workers share: made
    by gunicorn's master (when it imports this module) before it forks them, a slot each.

    The master gives each worker its slot as it makes it (`claim`, in Worker.__init__) and
    takes it back when the worker exits (`release`, gunicorn_conf.child_exit); the worker
    writes its count (`publish`) and reads the others' (`fewer_elsewhere`)."""

    SLOTS = 64
    FREE = -1

    def __init__(self) -> None:
        self.memory = mmap.mmap(-1, self.SLOTS * 8)  # shared with the processes forked later
        self.counts = memoryview(self.memory).cast("q")
        for slot in range(self.SLOTS):
            self.counts[slot] = self.FREE

    def claim(self) -> int | None:
        """A free slot for a worker being made (None: all taken; it then takes connections as
        it finds them, as pywsgi does)."""
        for slot, count in enumerate(self.counts):
            if count == self.FREE:
                self.counts[slot] = 0
                return slot
        return None

    def release(self, slot: int | None) -> None:
        if slot is not None:
            self.counts[slot] = self.FREE

    def publish(self, slot: int, held: int) -> None:
        self.counts[slot] = held

    def fewer_elsewhere(self, slot: int, held: int) -> bool:
        """Does another worker hold fewer connections than `held`?"""
        return any(0 <= count < held for at, count in enumerate(self.counts) if at != slot)


LOADS = Loads()


class Server(PyWSGIServer):
    """pywsgi's server of one worker, which leaves a new connection to a worker holding fewer.

    Every worker waits on the one listening socket, and a new connection wakes them all; the
    first to run takes it. On 2 cores that is mostly a worker already running, so a burst of
    connections (a browser's six for a map's tiles, wrk's eight) went mostly to one or two of
    the four workers (5-2-1-0, 3-3-1-1), which then answered them one after the other on one
    core, for as long as the connections were kept alive, while other workers had none. Here
    a worker that holds more connections than another lets SPREAD_SECONDS pass before it takes
    a new one, and takes it then only if no other worker has: least connections. When all
    hold as many (a flood of new connections), each takes them as soon as it can.
    """

    # Set per worker (Worker), for all its servers (one per address it listens on):
    slot: int | None = None  # its slot in LOADS
    held = 0  # the connections it holds
    deferral = None  # the timer of a deferred accept
    taking = False  # the deferral is over: take the connection if it is still there

    def do_read(self):
        if self.slot is not None and not self.taking:
            if self.deferral is not None:  # woken again meanwhile (a connection closed)
                self.stop_accepting()
                return None
            if LOADS.fewer_elsewhere(self.slot, self.held):
                self.stop_accepting()
                self.deferral = self.loop.timer(SPREAD_SECONDS)
                self.deferral.start(self._take_deferred)
                return None
        return super().do_read()

    def _take_deferred(self):
        self.deferral.close()
        self.deferral = None
        if not self.started:
            return  # closed meanwhile (the worker stops)
        self.taking = True
        try:
            self._do_read()  # takes the connection unless another worker did
        finally:
            self.taking = False
        self._start_accepting_if_started()

    def do_handle(self, *args):
        self._count(+1)  # before the handler runs: do_close counts it out, whatever happens
        super().do_handle(*args)

    def do_close(self, *args):
        try:
            super().do_close(*args)
        finally:
            self._count(-1)

    def _count(self, change: int) -> None:
        worker = type(self)  # the worker's, shared by its servers
        worker.held += change
        if self.slot is not None:
            LOADS.publish(self.slot, worker.held)


class Worker(GeventPyWSGIWorker):
    """gunicorn's gevent_pywsgi worker with Handler and Server, given this server's settings."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.slot = LOADS.claim()  # in the master, before it forks this worker

    def init_process(self):
        cfg = self.cfg
        self.wsgi_handler = type(
            "Handler",
            (Handler,),
            {
                "head_seconds": float(cfg.keepalive or 5),
                "max_fields": cfg.limit_request_fields,
                "max_field_size": cfg.limit_request_field_size,
                "open": set(),
            },
        )
        self.server_class = type("Server", (Server,), {"slot": self.slot, "held": 0})
        super().init_process()

    def run(self):
        gevent.spawn(self._drop_late_heads)
        super().run()

    def _drop_late_heads(self) -> None:
        """Once a second, drop every connection whose request head has been awaited for longer
        than head_seconds. One watch for all, not a timer per request: a request costs a clock
        reading, and a gevent Timeout started and cancelled for each request dropped a busy
        kept-alive connection now and then (after ~40,000 requests in 11 s, in one test)."""
        handler = self.wsgi_handler
        hub = gevent.get_hub()
        while True:
            gevent.sleep(1)
            late = monotonic() - handler.head_seconds
            for connection in list(handler.open):
                since = connection.head_since
                if since is not None and since < late:
                    hub.loop.run_callback(_drop, connection, since)


def _drop(connection: Handler, since: float) -> None:
    """Raise TimeoutError in a connection's greenlet if it still awaits the head it awaited
    `since`. Run by the event loop (as a gevent timeout is), between the greenlets' turns."""
    if connection.head_since == since:
        connection.head_since = None
        connection.greenlet.throw(TimeoutError("no request head in time"))
