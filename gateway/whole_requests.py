"""A gunicorn worker that gives a thread a request only once it has arrived whole.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as it is
readable, and that thread then reads the headers and the body from the
socket: a few clients that trickle their bodies hold every thread, and the
gateway stops answering everyone else. :class:`WholeRequestWorker` reads each
request (headers and body, chunked or not) in the worker's own event loop,
without blocking, and submits it to the thread pool only once it is complete.
Every wait is bounded:

- time: a request must arrive whole within ``read_timeout_s`` of its first
  byte (of the connection, for the first request); past it the client gets
  408 and the connection is closed;
- bytes: at most ``max_body_bytes`` of body (413) and ``MAX_HEAD_BYTES`` of
  request line and headers (431); a worker buffers at most
  ``BUFFERED_BODIES`` x ``max_body_bytes`` at once (503 past it);
- connections: gunicorn's ``worker_connections`` per worker; one more is
  answered 503 and closed at once. (gthread itself would stop selecting
  then, spinning until a connection closed, the ones being received stalled.)

The workers share the listening socket, and whichever wakes first accepts:
on a busy host one worker often took every kept-alive connection of a
client pool (8 of 8), and served them all on one core while the other
idled, at half the throughput. A worker with as many requests under way as
it has threads stops accepting, leaving a new connection to a worker with a
thread to spare, for ``ACCEPT_DEFERRAL_S``; one with as many connections as
threads, kept-alive ones between two requests included, for
``FULL_DEFERRAL_S``, so that a pool of connections opened at once is spread
evenly. A deferral is as long as the worker's state asks now: shorter once
one of its requests is done, over once it has a connection less. Then it
accepts the connection itself if no other did, and, the others being as
busy, accepts at once while it is as busy.

An application may serve some requests on the loop instead, with no thread
of their own (:class:`LoopRequest`): the gateway's callbacks.

Pipelined requests (a second request sent before the first is answered) are
not replayed: the connection is closed after the first one's answer, and
HTTP clients send the rest again on a new connection.
"""

import errno
import io
import selectors
import time
from concurrent import futures
from functools import cached_property, partial

from typing import NamedTuple

from gunicorn import SERVER
from gunicorn.util import http_date
from gunicorn.workers.gthread import TConn, ThreadWorker

MAX_HEAD_BYTES = 64 * 1024
# A chunk-size line is a few hex digits and maybe extensions.
MAX_CHUNK_LINE_BYTES = 1024
# Whole bodies a worker holds in memory at once, in max_body_bytes.
BUFFERED_BODIES = 4
RECV_BYTES = 64 * 1024
# An answer's head goes in one send with its body's first write up to this size; a
# larger one is not copied for it (a segment more is nothing next to its own).
JOINED_BODY_BYTES = 64 * 1024
# How long a worker with every thread spoken for leaves a new connection to the others.
# It takes the connection sooner once one of its requests is done, and the request
# would have waited for that thread anyway: only a peer that is stopped or hung
# makes a connection wait this long. Long enough for a peer on a loaded host to be
# scheduled (20 ms was not, now and then, with a test suite running alongside).
ACCEPT_DEFERRAL_S = 0.1
# How long a worker with a connection for each thread, though a thread to spare
# at the moment, leaves a new connection to a worker with fewer. A client's
# kept-alive connection between two requests waits for nothing, but its next
# request is on its way: counting only the requests under way, a pool of eight
# connections opened at once went 5 to 3 to two workers of four threads about
# one time in five, and the callback burst then ran at ~800 a second instead of
# ~1,000 (p50 3-8 ms instead of 0.5). Shorter than ACCEPT_DEFERRAL_S: a worker
# with no thread to spare leaves it to this one.
FULL_DEFERRAL_S = 0.05
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# How often a worker tells the arbiter it is alive. gthread does it after every
# select, a system call (a utime of the worker's file) for each request under
# load; the arbiter only asks whether the last one is older than gunicorn's
# timeout (30 s or more here).
HEARTBEAT_S = 1.0


class LoopRequest(NamedTuple):
    """A request received whole, for an application's loop route (``wsgi.loop_route``).

    An application may serve some requests on the worker's event loop, with
    no thread of their own: ones that need little CPU and then wait for
    something another thread does (the callbacks' commit, shared with the
    others received meanwhile). Its ``loop_route`` has ``takes(method,
    target) -> bool``, ``serve(request, respond)`` and ``expire_overdue()``
    (called at least once a second). ``serve`` must never block; it calls
    ``respond(status, headers, body)`` (WSGI's status line and headers, the
    body as bytes, Content-Length among the headers) once, then or later
    from any thread.
    """

    method: str
    target: str  # as the request line has it
    fields: dict  # see RequestFramer.fields
    body: bytes  # a chunked one joined
    peer: str  # the connection's address


class Refused(Exception):
    """The request cannot be taken: answered with ``status`` and closed."""

    def __init__(self, status, reason):
        self.status, self.reason = status, reason
        super().__init__(f"{status} {reason}")


class RequestFramer:
    """Finds where one HTTP/1.x request ends in the bytes received so far.

    ``feed`` is called with everything received for the request; it scans
    only what it has not seen, and returns the request's length once whole.
    """

    def __init__(self, max_body_bytes):
        self._max_body_bytes = max_body_bytes
        self._head_end = None
        self._content_length = 0
        self._chunked = False
        self._scan = 0  # chunked: where the next chunk-size line starts
        self._body_bytes = 0
        self._chunks = []  # chunked: each whole chunk's (start, end) in the request
        self.expects_continue = False
        # Of the request line and head, once read: None if the line is not METHOD TARGET HTTP/1.x.
        self.method = self.target = self.version = None
        self._field_lines = []

    def feed(self, data):
        if self._head_end is None:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > MAX_HEAD_BYTES:
                    raise Refused(431, "Request Header Fields Too Large")
                return None
            self._head_end = self._scan = end + 4
            self._read_head(bytes(data[:end]))
        if not self._chunked:
            end = self._head_end + self._content_length
            return end if len(data) >= end else None
        return self._chunked_end(data)

    def _read_head(self, head):
        if len(head) > MAX_HEAD_BYTES:
            raise Refused(431, "Request Header Fields Too Large")
        lines = head.split(b"\r\n")
        request_line = lines[0].decode("latin-1").split(" ")
        if len(request_line) == 3 and request_line[2] in ("HTTP/1.1", "HTTP/1.0"):
            self.method, self.target, self.version = request_line
        self._field_lines = lines[1:]
        for line in self._field_lines:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"transfer-encoding" and b"chunked" in value:
                self._chunked = True
            elif name == b"content-length":
                if not value.isdigit():
                    raise Refused(400, "Bad Request")
                self._content_length = int(value)
                if self._content_length > self._max_body_bytes:
                    raise Refused(413, "Content Too Large")
            elif name == b"expect" and value == b"100-continue":
                self.expects_continue = True

    def _chunked_end(self, data):
        while True:
            line_end = data.find(b"\r\n", self._scan)
            if line_end < 0:
                if len(data) - self._scan > MAX_CHUNK_LINE_BYTES:
                    raise Refused(400, "Bad Request")
                return None
            try:
                size = int(bytes(data[self._scan:line_end]).split(b";")[0].strip(), 16)
            except ValueError:
                raise Refused(400, "Bad Request") from None
            if size == 0:
                # Trailers, if any, end with an empty line.
                if data[line_end + 2:line_end + 4] == b"\r\n":
                    return line_end + 4
                end = data.find(b"\r\n\r\n", line_end + 2)
                if end < 0:
                    if len(data) - line_end > MAX_HEAD_BYTES:
                        raise Refused(431, "Request Header Fields Too Large")
                    return None
                return end + 4
            self._body_bytes += size
            if self._body_bytes > self._max_body_bytes:
                raise Refused(413, "Content Too Large")
            chunk_end = line_end + 2 + size + 2
            if len(data) < chunk_end:
                self._body_bytes -= size  # counted again when the chunk is whole
                return None
            self._chunks.append((line_end + 2, line_end + 2 + size))
            self._scan = chunk_end


    @cached_property
    def fields(self):
        """The head's fields, once read: lower-case name -> value (Latin-1 text), a repeated
        name's values joined by ", ". Only a request served on the loop needs them."""
        fields = {}
        for line in self._field_lines:
            name, _, value = line.partition(b":")
            field, text = name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")
            fields[field] = f"{fields[field]}, {text}" if field in fields else text
        return fields

    def body(self, request):
        """The body of ``request``, the whole request this framer found the end of (chunks joined)."""
        if self._chunked:
            return b"".join(request[start:end] for start, end in self._chunks)
        return bytes(request[self._head_end:self._head_end + self._content_length])

    def keeps_alive(self):
        """Whether the client asks for the connection to be kept after the answer (HTTP/1.1's default)."""
        connection = self.fields.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


class ReplayedSocket:
    """The client's socket as the thread sees it: reads come from the request received whole.

    Writes go to the socket. The ``100 Continue`` gunicorn sends for an
    ``Expect: 100-continue`` is dropped: the worker sent it already, when the
    headers arrived.

    gunicorn writes an answer's head on its own, then its body: two sends, two
    TCP segments, two wake-ups of the client. After ``hold_head``, the next
    write (the head) waits for the one after it (the body, or its first part)
    and goes with it in one send, up to JOINED_BODY_BYTES; ``send_held``
    sends it when none follows.
    """

    def __init__(self, sock):
        self.raw = sock
        self.request = io.BytesIO()
        self._holding = False
        self._held = None

    def recv(self, size, *flags):
        return self.request.read(size)

    def send(self, data, *flags):
        if data == CONTINUE:
            return len(data)
        return self.raw.send(data, *flags)

    def hold_head(self):
        self._holding = True

    def sendall(self, data, *flags):
        if self._holding:
            self._holding, self._held = False, data
            return
        if self._held is not None and len(data) <= JOINED_BODY_BYTES:
            data, self._held = self._held + data, None
        self.send_held()
        self.raw.sendall(data, *flags)

    def send_held(self):
        self._holding = False
        held, self._held = self._held, None
        if held is not None:
            self.raw.sendall(held)

    def shutdown(self, how):
        # gunicorn ends an answer that failed after its head this way: the head goes first.
        self.send_held()
        self.raw.shutdown(how)

    def __getattr__(self, name):
        return getattr(self.raw, name)


class BufferedConnection(TConn):
    def __init__(self, cfg, sock, client, server, limits):
        super().__init__(cfg, ReplayedSocket(sock), client, server)
        self.limits = limits
        self.received = bytearray()
        self.framer = RequestFramer(limits.max_body_bytes)
        self.pipelined = False

    def init(self):
        super().init()
        # A client that does not read its answer holds the thread this long at most.
        self.sock.settimeout(self.limits.read_timeout_s)


class WakingSelector(selectors.DefaultSelector):
    """The worker's selector; a select waits no later than ``wake_at`` (``time.monotonic()``), when set."""

    wake_at = None

    def select(self, timeout=None):
        if self.wake_at is not None:
            until_wake = max(self.wake_at - time.monotonic(), 0.0)
            timeout = until_wake if timeout is None else min(timeout, until_wake)
        return super().select(timeout)


class WholeRequestWorker(ThreadWorker):
    """gunicorn's gthread worker, reading each request whole in its event loop before a thread takes it."""

    _heartbeat_due = 0.0  # time.monotonic() of the next heartbeat

    def init_process(self):
        self.cfg = settings_read_once(self.cfg)
        # Enforced in accept() instead, so that run() always selects.
        self._max_connections, self.worker_connections = self.worker_connections, float("inf")
        # [server] max_body_bytes and read_timeout_s: the gateway's settings, not gunicorn's.
        self._limits = self.app.settings.server
        self._reading = {}  # connection -> deadline, for every request being received
        self._buffered = 0
        self._max_buffered = BUFFERED_BODIES * self._limits.max_body_bytes
        self._deferred = []  # the listeners' selector keys while they are left to the other workers
        self._deferred_at = None  # time.monotonic() when they were
        # A deferral this long ran out with a connection still waiting: no other
        # worker takes any, so this one accepts at once while its own deferral
        # would be no longer (0: none ran out so).
        self._others_busy_s = 0.0
        self._serving = set()  # the futures of the requests the threads have, until each is done
        super().init_process()

    def run(self):
        # The requests the application serves on this loop, without a thread (see LoopRequest).
        self._loop_route = getattr(self.wsgi, "loop_route", None)
        self.poller.close()  # gthread's, still empty
        self.poller = WakingSelector()
        super().run()
        # gthread's run() ends waiting for its self.futures, always empty here: the requests still served.
        with self._lock:
            serving = list(self._serving)
        futures.wait(serving, timeout=self.cfg.graceful_timeout)

    def notify(self):
        now = time.monotonic()
        if now >= self._heartbeat_due:
            self._heartbeat_due = now + HEARTBEAT_S
            super().notify()

    def _wrap_future(self, fs, conn):
        """Each request's future leaves ``_serving`` once done, rather than gthread's ``self.futures``.

        gthread's loop finds its done futures with a ``futures.wait(timeout=0)``
        after every select, which locks every future still under way and hangs
        a waiter on each (8 µs with 4 under way): with ``self.futures`` empty,
        that wait is 1 µs.
        """
        fs.conn = conn
        with self._lock:
            self._serving.add(fs)
        fs.add_done_callback(self._served)

    def _served(self, fs):
        with self._lock:
            self._serving.discard(fs)
        self.finish_request(fs)

    def _deadline(self):
        return time.monotonic() + self._limits.read_timeout_s

    def accept(self, server, listener):
        deferral_s = self._deferral_s()
        if deferral_s > self._others_busy_s:
            with self._lock:
                self._deferred.append(self.poller.unregister(listener))
            self._deferred_at = time.monotonic()
            self.poller.wake_at = self._deferred_at + deferral_s
            return
        try:
            sock, client = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        if self.nr_conns >= self._max_connections:
            _answer(sock, Refused(503, "Service Unavailable"))
            sock.close()
            return
        conn = BufferedConnection(self.cfg, sock, client, server, self._limits)
        self.nr_conns += 1
        with self._lock:
            self._reading[conn] = self._deadline()
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))

    def on_client_socket_readable(self, conn, client):
        try:
            data = conn.sock.raw.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        with self._lock:
            if conn not in self._reading:
                # A kept-alive connection: its next request starts now.
                try:
                    self._keep.remove(conn)
                except ValueError:
                    return  # just closed as idle
                conn.framer = RequestFramer(self._limits.max_body_bytes)
                self._reading[conn] = self._deadline()
        if not data:
            return self._drop(conn)
        continued = conn.framer.expects_continue  # already: its head came before
        conn.received += data
        self._buffered += len(data)
        try:
            if self._buffered > self._max_buffered:
                raise Refused(503, "Service Unavailable")
            end = conn.framer.feed(conn.received)
        except Refused as refusal:
            return self._drop(conn, refusal)
        if end is None:
            if conn.framer.expects_continue and not continued:
                try:
                    conn.sock.raw.send(CONTINUE)  # 25 bytes: a socket buffer takes them whole, or the client is gone
                except OSError:
                    return self._drop(conn)
            return
        with self._lock:
            self.poller.unregister(conn.sock)
            del self._reading[conn]
        self._buffered -= len(conn.received)
        conn.pipelined = end < len(conn.received)
        request, conn.received = bytes(conn.received[:end]), bytearray()
        if self._loop_route is not None and self._loop_route.takes(conn.framer.method, conn.framer.target):
            return self._serve_on_loop(conn, request)
        conn.sock.request = io.BytesIO(request)
        self.enqueue_req(conn)

    def _serve_on_loop(self, conn, request):
        """Give ``request`` to the application's loop route; its answer is written, and the
        connection kept or closed, from whichever thread the route answers in."""
        framer = conn.framer
        served = futures.Future()
        self._wrap_future(served, conn)  # kept alive or closed as a thread's request is, once answered
        keep_alive = framer.keeps_alive() and not conn.pipelined
        version = framer.version

        def respond(status, headers, body):
            keeps = keep_alive and self.alive and self.cfg.keepalive > 0
            head = [f"{version} {status}\r\nServer: {SERVER}\r\nDate: {http_date()}\r\n"]
            head.append("Connection: keep-alive\r\n" if keeps else "Connection: close\r\n")
            head.extend(f"{name}: {value}\r\n" for name, value in headers)
            answer = "".join(head).encode("latin-1") + b"\r\n" + body
            try:
                # Never blocking the thread that answers: a few hundred bytes, which a socket
                # buffer takes whole unless the client has stopped reading (then it is closed).
                keeps = conn.sock.raw.send(answer) == len(answer) and keeps
            except OSError:
                keeps = False
            served.set_result((keeps, conn))

        try:
            self._loop_route.serve(
                LoopRequest(framer.method, framer.target, framer.fields, framer.body(request), _peer(conn.client)), respond
            )
        except Exception:  # noqa: BLE001 - a request that fails must not end the worker's loop
            self.log.exception("request from %s failed on the event loop", _peer(conn.client))
            if not served.done():
                respond("500 INTERNAL SERVER ERROR", [("Content-Length", "0")], b"")

    def handle_request(self, req, conn):
        conn.sock.hold_head()  # sent with the body's first write: see ReplayedSocket
        try:
            return super().handle_request(req, conn)
        finally:
            conn.sock.send_held()

    def handle(self, conn):
        keepalive, conn = super().handle(conn)
        return keepalive and not conn.pipelined, conn

    def murder_keepalived(self):
        super().murder_keepalived()
        if self._loop_route is not None:
            self._loop_route.expire_overdue()  # (called after every select, at least once a second)
        now = time.monotonic()
        deferral_s = self._deferral_s()  # (called after every select)
        if deferral_s < self._others_busy_s:
            self._others_busy_s = 0.0
        if self._deferred:
            # As long as this worker's state asks now: shorter once one of its threads
            # is spare, over once it has a connection less.
            self.poller.wake_at = self._deferred_at + deferral_s
            if now >= self.poller.wake_at:
                self._accept_deferred(ran_out_s=deferral_s)
        with self._lock:
            late = [conn for conn, deadline in self._reading.items() if deadline < now]
        for conn in late:
            self._drop(conn, Refused(408, "Request Timeout"))

    def _deferral_s(self):
        """How long this worker leaves a new connection to the others: ACCEPT_DEFERRAL_S with as many
        requests under way (being received or served) as threads, where a new one would wait for a
        thread and another worker may have one; FULL_DEFERRAL_S with as many connections, kept-alive
        ones between two requests included; else 0."""
        if self.cfg.workers == 1 or self.nr_conns < self.cfg.threads:
            return 0.0
        return ACCEPT_DEFERRAL_S if self.nr_conns - len(self._keep) >= self.cfg.threads else FULL_DEFERRAL_S

    def _accept_deferred(self, ran_out_s):
        """The deferral is over: listen again, and take a connection still waiting, loaded or not.

        When it ran out after ``ran_out_s`` (0: ended early) and one was still
        waiting, the other workers are as busy: deferring the next ones too would
        accept a burst of connections one per deferral (50 clients connecting at
        once took 2 s).
        """
        deferred, self._deferred, self.poller.wake_at = self._deferred, [], None
        connections = self.nr_conns
        self._others_busy_s = ACCEPT_DEFERRAL_S  # what waits now is taken now
        try:
            for key in deferred:
                with self._lock:
                    self.poller.register(key.fileobj, selectors.EVENT_READ, key.data)
                key.data(key.fileobj)  # accept(): nothing waiting is EAGAIN, ignored
        finally:
            self._others_busy_s = ran_out_s if self.nr_conns > connections else 0.0

    def _drop(self, conn, refusal=None):
        """Close a connection whose request is being received, answering ``refusal`` if there is one."""
        with self._lock:
            if self._reading.pop(conn, None) is None:
                return
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
        self._buffered -= len(conn.received)
        self.nr_conns -= 1
        if refusal is not None:
            self.log.info("request from %s refused before it reached a thread: %s", _peer(conn.client), refusal)
            _answer(conn.sock.raw, refusal)
        conn.close()


def settings_read_once(cfg):
    """gunicorn's settings ``cfg`` with each one's value read once, into an attribute of a copy.

    Every read of a setting (``cfg.keepalive``) goes through
    ``Config.__getattr__``, 0.5 µs, and a request reads some 30 of them (the
    parser, the response, the worker's loop). A worker's settings never change
    (a reload starts new workers). Config's properties (``is_ssl``,
    ``worker_class``) still compute theirs, now from these attributes.
    """
    read_once = object.__new__(type(cfg))  # (copy.copy would recurse in Config.__getattr__: no settings yet)
    read_once.__dict__.update(cfg.__dict__)
    read_once.__dict__.update((name, setting.get()) for name, setting in cfg.settings.items())
    return read_once


def _answer(sock, refusal):
    """Best effort, never blocking: the client may be gone or not reading."""
    sock.setblocking(False)
    try:
        sock.send(f"HTTP/1.1 {refusal.status} {refusal.reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    except OSError:
        pass


def _peer(client):
    return client[0] if isinstance(client, tuple) else client
