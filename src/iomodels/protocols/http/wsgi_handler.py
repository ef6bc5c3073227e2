"""One request served by a WSGI app: the environ, start_response, framing,
and the three ways of running it (see wsgi.py's docstring)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from iomodels.core.protocol import HIGH_WATER
from iomodels.protocols.http.core import END_OF_MESSAGE, LAST_CHUNK, RemoteError
from iomodels.protocols.http.protocol import _origin_form
from iomodels.protocols.http.wsgi_streams import (
    EMPTY_INPUT,
    INPUT_HIGH,
    ClientDisconnected,
    FileWrapper,
    InputStream,
)

if TYPE_CHECKING:
    from iomodels.protocols.http.wsgi import WsgiApp

log = logging.getLogger("iomodels")

NO_BODY_STATUSES = frozenset({204, 304})
# The app answered without reading its whole request body: the rest is read
# and dropped, so that the next request on the connection can be found
# (gunicorn and nginx's discard do the same), but not without end: past this
# much dropped, the connection is closed instead.  16 MiB is milliseconds on
# a LAN, and the answer went out long before (the client has had it); a
# client still sending past it costs us more than a new connection costs it.
DISCARD_MAX = 16 * 1024 * 1024  # bytes of an unread request body dropped, at most
_FILE = object()  # a worker's outcome: a real file to send from the loop (WsgiHandler._send_file)
# Hop-by-hop fields (RFC 9110 7.6.1) are the server's business: an app's are dropped.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"proxy-connection"}
)


def loop_caller(transport: Any) -> Any:
    """A function ``call(callback, arg)`` that runs ``callback(arg)`` on the
    connection's loop thread and may be called from any thread.

    Our protocol API has no public thread-safe call (run_in_worker's ``done``
    is the only way back, and it needs a free pool thread: apps blocked on
    wsgi.input could hold them all and deadlock).  So: a transport's own
    ``call_soon_threadsafe`` if it has one; asyncio's and uvloop's running
    loop (called here, on the loop thread); our loops' CallbackQueue."""
    call = getattr(transport, "call_soon_threadsafe", None)
    if call is not None:
        return call
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:
        pass
    loop = getattr(transport, "_loop", None)  # core/loop.py CallbackQueue (readiness, io_uring)
    call = getattr(loop, "call_soon_threadsafe", None)
    if call is None:
        raise RuntimeError(f"no way to call back onto the loop of {type(transport).__name__}")
    return call


# Field name as received -> its environ key ("" for a name that is dropped).
# Clients send the same few names again and again: translated once, not per
# request.  Bounded: a client inventing names cannot grow it without limit.
_ENVIRON_KEYS: dict[bytes, str] = {}
_ENVIRON_KEYS_MAX = 4096


# Request target as received -> (PATH_INFO, QUERY_STRING).  A server sees
# the same few targets again and again (a partition, a search for "%" and two
# decodes: 0.35 us a request, timeit); bounded as _ENVIRON_KEYS is.
_TARGETS: dict[bytes, tuple[str, str]] = {}
_TARGETS_MAX = 4096
_TARGET_CACHED_MAX = 512


def _path_query(target: bytes) -> tuple[str, str]:
    original = target
    if target[:1] != b"/":
        target = _origin_form(target)
    path, _, query = target.partition(b"?")
    if b"%" in path:
        path = unquote_to_bytes(path)
    path_query = (path.decode("latin-1"), query.decode("latin-1"))
    if len(original) <= _TARGET_CACHED_MAX:  # memory: at most 4096 x 512 bytes of targets
        if len(_TARGETS) >= _TARGETS_MAX:
            _TARGETS.clear()
        _TARGETS[original] = path_query
    return path_query


# The methods' str, without a decode per request.
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}

# Statuses an app has passed that were checked already (apps answer with a
# few constant strings); bounded like _ENVIRON_KEYS.
_GOOD_STATUSES: set[str] = set()


def _environ_key(name: bytes) -> str:
    key = name.decode("latin-1").upper()
    if "_" in key:
        key = ""  # X_Forwarded_For would pass for X-Forwarded-For: drop it (as gunicorn does)
    else:
        key = key.replace("-", "_")
        if key != "CONTENT_TYPE" and key != "CONTENT_LENGTH":
            key = "HTTP_" + key
    if len(_ENVIRON_KEYS) >= _ENVIRON_KEYS_MAX:
        _ENVIRON_KEYS.clear()
    _ENVIRON_KEYS[name] = key
    return key


class _ShortBody:
    """A worker's outcome: the rest of a response that fell short of its
    Content-Length (sent, then the connection is cut)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class WsgiHandler:
    """One request served by the app.  The protocol calls ``body()``,
    ``end()``, ``pause_writing()``, ``resume_writing()`` and
    ``connection_lost()`` on the loop thread (or the connection's thread)."""

    # No __slots__: the defaults below are class attributes, so that making
    # a handler (once per request, on the hot path) stores five attributes,
    # not twenty-four.
    _cond: threading.Condition | None = None  # worker mode: guards what both threads touch
    _call: Any = None  # worker mode: loop_caller(transport)
    _status: str | None = None
    _headers: list | None = None
    _length: int | None = None  # the app's Content-Length
    _sent = 0  # body bytes framed so far
    _head_sent = False  # framed (maybe not yet written: see _begun)
    _chunked = False
    _no_body = False
    _keep_alive = False
    _begun = False  # the protocol was told the response started
    _in_flight = 0  # worker mode: bytes handed to the loop, not yet written
    _write_paused = False
    _input_paused = False
    _resume_asked = False
    _gone = False  # the connection closed: stop at the next step
    _app_done = False
    _input_closed = False  # worker mode: the app returned; the rest of the body is dropped
    _dropped = 0  # body bytes dropped after the app answered (DISCARD_MAX)
    _overflow = 0  # body bytes the app produced past its Content-Length (cut off)
    _iterator: Any = None
    _result: Any = None
    _file: tuple | None = None  # a real file to send: (file, offset, count, head), not yet handed over
    _file_sending = False  # handed to transport.sendfile(); its done closes the iterable
    hold_lazily = True  # see HttpProtocol._process: no pause/resume per request

    def __init__(self, wsgi: WsgiApp, protocol: Any, request: Any) -> None:
        self.wsgi = wsgi
        self.protocol = protocol
        self.request = request
        self._pending: list[bytes] = []  # framed output not yet written
        mode = wsgi.mode
        if mode == "worker":
            # One lock and one way back to the loop per connection, not per
            # request: a connection's requests are served one after another.
            sync = protocol._wsgi_sync
            if sync is None:
                sync = protocol._wsgi_sync = (
                    threading.Condition(threading.Lock()),
                    loop_caller(protocol.transport),
                )
            self._cond, self._call = sync
            if request.has_body:
                self.input = InputStream(self._cond, self._wait_for_input, self._input_drained)
            else:
                self.input = EMPTY_INPUT  # and end() has no reader to wake
        elif not request.has_body:
            self.input = EMPTY_INPUT
        else:
            self.input = InputStream(None, self._pump if mode == "thread" else self._no_input)

    # ---- the protocol's side (loop thread, or the connection's thread)

    def start(self) -> None:
        protocol = self.protocol
        if self.request.expect_continue:
            protocol.send_continue()  # PEP 3333 allows it up front; curl waits for it
            protocol.write_now(b"", True)  # out now: the thread mode recv()s the body next
        mode = self.wsgi.mode
        if mode == "worker":
            protocol.transport.run_in_worker(self._run_worker, done=self._worker_finished)
        elif mode == "thread":
            self._run_here()
        # inline: at end(), once the body is complete

    def body(self, data: bytes) -> None:
        if self._app_done or self._input_closed:
            self._drop(data)  # the app answered without reading it all
            return
        cond = self._cond
        if cond is None:
            self.input.feed(data)
            return
        with cond:
            self.input.feed(data)
            cond.notify_all()
            paused = self.input.size > INPUT_HIGH and not self._input_paused
            if paused:
                self._input_paused = True
                self._resume_asked = False
        if paused:
            self.protocol.pause_input(True)

    def _drop(self, data: bytes) -> None:
        self._dropped += len(data)
        if self._dropped > DISCARD_MAX and not self.protocol.transport_closing():
            log.info(
                "WSGI app %r answered without reading its request body: closing after %d bytes of it dropped",
                self.wsgi.app,
                self._dropped,
            )
            self.protocol.cut()

    def end(self) -> None:
        cond = self._cond
        if cond is None:
            if self.input is not EMPTY_INPUT:
                self.input.eof = True
            if self.wsgi.mode == "inline":
                self._run_here()
            return
        if self.input is EMPTY_INPUT:
            return  # a worker: nothing waits for a body that is not coming
        with cond:
            self.input.eof = True
            cond.notify_all()

    def pause_writing(self) -> None:
        if self._cond is not None:
            with self._cond:
                self._write_paused = True
        else:
            self._write_paused = True

    def resume_writing(self) -> None:
        if self._cond is not None:
            with self._cond:
                self._write_paused = False
                self._cond.notify_all()
        else:
            self._write_paused = False
            if self.wsgi.mode == "inline" and self._iterator is not None and not self._app_done:
                self._continue_inline()

    def connection_lost(self) -> None:
        self._gone = True
        error = ClientDisconnected("the client went away")
        if self._cond is not None:
            with self._cond:
                self.input.error = self.input.error or error
                self._cond.notify_all()
                file, self._file = self._file, None  # a worker's file not handed over yet
            if file is not None:
                self._close_result()  # nobody will send it (run_in_worker's done will not come)
        else:
            self.input.error = self.input.error or error
            if self.wsgi.mode == "inline" and self._iterator is not None and not self._app_done:
                self._app_done = True
                self._close_result()

    # ---- calling the app (any mode)

    def _environ(self) -> dict:
        request = self.request
        protocol = self.protocol
        target = request.target
        path_query = _TARGETS.get(target)
        if path_query is None:
            path_query = _path_query(target)
        # The connection's addresses and the fields: a keep-alive client
        # sends the same fields request after request (wrk, a browser's
        # Accept/User-Agent), so the environ they make is kept per connection
        # with the list it came from: one list comparison (in C) and a copy
        # instead of a lookup, a decode and a store per field.
        headers = request.headers
        fields = protocol._wsgi_fields
        if fields is None or fields[0] != headers:
            fields = protocol._wsgi_fields = (headers, self._fields_environ(headers))
        environ = fields[1].copy()
        method = request.method
        environ["REQUEST_METHOD"] = _METHODS.get(method) or method.decode("latin-1")
        environ["PATH_INFO"], environ["QUERY_STRING"] = path_query
        environ["wsgi.input"] = self.input
        if request.http_version == "1.0":
            environ["SERVER_PROTOCOL"] = "HTTP/1.0"
        return environ

    def _fields_environ(self, headers: list) -> dict:
        """The connection's constant environ plus these request fields."""
        protocol = self.protocol
        environ = (protocol._wsgi_environ or protocol.base_environ(self.wsgi.base_environ)).copy()
        keys = _ENVIRON_KEYS
        for name, value in headers:
            key = keys.get(name)
            if key is None:
                key = _environ_key(name)
            if not key:
                continue
            if key in environ:  # RFC 9110 5.3: one field, its values joined
                environ[key] += "," + value.decode("latin-1")
            else:
                environ[key] = value.decode("latin-1")
        return environ

    def _start_response(self, status: str, headers: list, exc_info=None):
        if exc_info is not None:
            try:
                if self._begun:  # too late to change the answer: PEP 3333 says re-raise
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no cycle through the traceback
            # An error page replaces a head that was framed but has not gone out.
            self._pending.clear()
            self._head_sent = self._chunked = self._no_body = False
            self._length = None
            self._sent = 0
        elif self._status is not None:
            raise AssertionError("start_response called twice without exc_info")
        if type(status) is not str or status not in _GOOD_STATUSES:
            if type(status) is not str or len(status) < 4 or not status[:3].isdigit() or status[3] != " ":
                raise ValueError(f"bad WSGI status {status!r}")
            if len(_GOOD_STATUSES) >= 256:
                _GOOD_STATUSES.clear()
            _GOOD_STATUSES.add(status)
        self._status = status
        self._headers = headers
        return self._write

    def _write(self, data: bytes) -> None:
        """The legacy write() callable start_response returns."""
        self._add(data)
        self._flush()

    def _call_app(self) -> bool:
        """Call the app; True if its result was a list or tuple (the whole
        body, now framed in _pending), else its iterator is ready to pull."""
        result = self.wsgi.app(self._environ(), self._start_response)
        if type(result) is not list and type(result) is not tuple:
            self._result = result
            if type(result) is FileWrapper:
                plan = self._file_plan(result)
                if plan is not None:
                    self._file = plan  # the caller hands it to the transport (_send_file)
                    return True
            self._iterator = iter(result)
            return False
        # The whole body is here (and a list has no close()): one write, with
        # a Content-Length.  Hello world takes the first branch.
        if len(result) == 1 and not self._head_sent and type(result[0]) is bytes:
            data = result[0]
            head = self._head(len(data))
            if self._length == len(data) or self._no_body:
                self._pending.append(head if self._no_body else head + data)
                self._sent = len(data)
            else:  # not what its Content-Length says: _add cuts, _finish_output tells
                self._pending.append(head)
                self._add(data)
        else:
            if not self._head_sent and self._status is not None:
                self._pending.append(self._head(sum(len(data) for data in result)))
            for data in result:
                self._add(data)
        self._iterator = ()
        return True

    def _file_plan(self, wrapper: FileWrapper) -> tuple | None:
        """A real file (a regular file with a fileno, nothing sent yet): its
        (file, offset, count, head), the head framed with a Content-Length;
        None: iterate it instead (a BytesIO, a pipe, a socket...)."""
        if self._head_sent or self._status is None:
            return None
        file = wrapper.filelike
        try:
            info = os.fstat(file.fileno())
            offset = file.tell()  # where the app left it (it may have seeked)
        except (AttributeError, OSError, ValueError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        count = max(0, info.st_size - offset)
        head = self._head(count)
        if self._length is not None and self._length < count:
            count = self._length  # the app announced less: send that much
        return file, offset, count, head

    def _send_file(self) -> None:
        """On the protocol's thread: the head, then the file through the
        kernel (transport.sendfile: os.sendfile, or splices on io_uring);
        _file_sent ends the response when the transport is done with it."""
        if self._cond is not None:
            with self._cond:
                file, offset, count, head = self._file
                self._file = None
        else:
            file, offset, count, head = self._file
            self._file = None
        self._file_sending = True
        try:
            self._deliver(head, True)
            skip = self._no_body or not count or self.protocol.transport_closing()
            if not skip:
                self.protocol.transport.sendfile(file, offset, count, done=self._file_sent)
        except Exception as exc:  # the file went bad since _file_plan (fd closed...)
            self._file_sent(None, exc)
            return
        if skip:
            self._file_sent(None)

    def _file_sent(self, future: Any, error: BaseException | None = None) -> None:
        """The transport is done with the file: close the iterable (the file),
        then end the response, or cut it if the file fell short or failed."""
        if self._app_done:
            return  # once: a done that raised came back here through _send_file
        sent = 0
        if future is not None:
            try:
                sent = future.result()
            except Exception as exc:  # the client went away, the file failed
                error = exc
        self._sent = sent
        self._app_done = True
        self._close_result()
        if self._gone or self.protocol.transport is None:
            return
        if error is not None:
            log.debug("file_wrapper: sendfile failed: %r", error)
            self.protocol.cut()
        elif self._no_body or self._length is None or sent >= self._length:
            self.protocol.finish()
        else:
            self._wrong_length()  # the file shrank since _file_plan
            self.protocol.cut()  # shorter than its Content-Length: the client must see it

    def _pull(self) -> bool:
        """Pull the next block; True when the iterable has ended.

        One block at a time: PEP 3333 forbids holding a block back while the
        app computes the next (a generator may sleep between blocks).  A list
        (the common small response) was taken whole by _call_app."""
        for data in self._iterator:
            if data:
                self._add(data)
                return False
            if self._gone:
                raise ClientDisconnected("the client went away")
        return True

    def _close_result(self) -> None:
        result, self._result = self._result, None
        self._iterator = None
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:
                log.error("WSGI app's iterable close() raised", exc_info=exc)

    # ---- framing (on the thread that runs the app)

    def _head(self, known_length: int | None) -> bytes:
        """The response head; ``known_length``: the whole body's size, when
        the iterable ended before anything went out."""
        if self._status is None:
            raise AssertionError("the WSGI app returned without calling start_response")
        protocol = self.protocol
        request = self.request
        entry = self.wsgi.encoded_head(self._status, self._headers)
        _, status, fields, length, close, bodiless, whole = entry
        if length is None and known_length is not None and not bodiless:
            length = known_length
        self._length = length
        if (
            length is not None
            and not close
            and not bodiless
            and not protocol._close_after
            and not request.expect_continue
            and request.http_version == "1.1"
            and request.method != b"HEAD"
        ):
            # The common answer (keep-alive, HTTP/1.1, a Content-Length, not
            # HEAD; keep_alive_after() would say True: nothing closes): its
            # head changes only with Date, so it is kept with the encoded
            # fields for the rest of the second.
            self._keep_alive = True
            self._head_sent = True
            date = protocol.settings.date
            if whole is not None and whole[0] is date and whole[1] == length:
                return whole[2]
            head = b"HTTP/1.1 %s\r\nServer: %s\r\nDate: %s\r\n%sContent-Length: %d\r\n\r\n" % (
                status,
                protocol.settings.server,
                date,
                fields,
                length,
            )
            entry[6] = (date, length, head)  # threads may race: the worst is building it twice
            return head
        head_request = request.method == b"HEAD"
        keep_alive = protocol.keep_alive_after(close)
        if bodiless:
            framing = b""
        elif length is not None:
            framing = b"Content-Length: %d\r\n" % length
        elif request.http_version == "1.1":
            self._chunked = not head_request
            framing = b"Transfer-Encoding: chunked\r\n"
        else:
            framing = b""
            keep_alive = False  # HTTP/1.0: the close ends the body
        if not keep_alive:
            connection = b"Connection: close\r\n"
        elif request.http_version == "1.0":
            connection = b"Connection: keep-alive\r\n"
        else:
            connection = b""
        self._keep_alive = keep_alive
        self._no_body = head_request or bodiless
        self._head_sent = True
        settings = protocol.settings
        return b"HTTP/1.1 %s\r\nServer: %s\r\nDate: %s\r\n%s%s%s\r\n" % (
            status,
            settings.server,
            settings.date,
            fields,
            framing,
            connection,
        )

    def _add(self, data: bytes) -> None:
        """Frame one piece of the body into the pending output."""
        if type(data) is not bytes:
            data = bytes(data)  # a bytearray or memoryview: PEP 3333 wants bytes, be lenient
        pending = self._pending
        if not self._head_sent:
            if not data:
                return
            pending.append(self._head(None))
        if self._no_body or not data:
            return
        length = self._length
        if length is not None:
            left = length - self._sent
            if len(data) > left:
                self._overflow += len(data) - left
                data = data[:left]  # more than the app announced: cut, and close after
                self._keep_alive = False
                self.protocol.keep_alive_after(True)
        self._sent += len(data)
        if self._chunked:
            pending.append(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            pending.append(data)

    def _finish_output(self) -> bool:
        """Frame the end; False if the body fell short of its Content-Length."""
        pending = self._pending
        if not self._head_sent:
            known = sum(len(piece) for piece in pending)
            pending.insert(0, self._head(known))
            if self._no_body:
                pending[1:] = []
            else:
                self._sent = known
        if self._chunked:
            pending.append(LAST_CHUNK)
        if self._no_body or self._length is None or (self._sent == self._length and not self._overflow):
            return True
        return self._wrong_length()

    def _wrong_length(self) -> bool:
        """The app's body and its Content-Length differ: say so.  True if the
        declared length went out whole (the rest was cut off, and the
        connection closes after the response), False if the body fell short:
        what it has goes out, then the connection is cut, so that the client
        sees a short body rather than waits for the rest (gunicorn does so)."""
        length = self._length
        produced = self._sent + self._overflow
        short = produced < length
        log.error(
            "WSGI app %r: Content-Length %d but a body of %d bytes; %s",
            self.wsgi.app,
            length,
            produced,
            "the connection is cut after it" if short else f"sent {length}, then the connection closes",
        )
        return not short

    def _take_pending(self) -> bytes:
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        return data

    def _deliver(self, data: bytes, streaming: bool) -> None:
        """Write on the protocol's thread; ``streaming``: now, not batched
        with the rest of a pipelined batch (more of this response follows)."""
        if not self._begun:
            self._begun = True
            self.protocol.response_begins(self._keep_alive)
        self.protocol.write_now(data, streaming)

    def _error_response(self, exc: BaseException) -> None:
        """Log the app's failure and answer it (on the protocol's thread)."""
        if isinstance(exc, ClientDisconnected) or self._gone:
            return
        log.error("WSGI app %r raised", self.wsgi.app, exc_info=exc)
        if self._begun:
            self.protocol.cut()
        else:
            self.protocol.respond_error(500, b"internal server error\n")

    # ---- thread and inline modes: the app runs on the protocol's own thread

    def _run_here(self) -> None:
        try:
            if self._call_app():
                if self._file is not None:
                    self._send_file()
                    return
                self._app_done = True
                pending = self._pending
                if len(pending) == 1 and self._sent == self._length:  # one piece, framed whole
                    data, whole = pending[0], True
                else:
                    whole = self._finish_output()
                    data = self._take_pending()
                self._begun = True
                self.protocol.respond_framed(data, self._keep_alive, whole)
                return
            inline = self.wsgi.mode == "inline"
            while not self._pull():
                self._flush()
                if self._gone or self.protocol.transport is None:
                    raise ClientDisconnected("the client went away")
                if inline and self._write_paused:
                    return  # resume_writing() continues
            self._complete()
        except Exception as exc:
            if self._file_sending:  # the head is out: _file_sent ends it
                self._error_response(exc)
                return
            self._app_done = True
            self._close_result()
            self._pending.clear()
            self._error_response(exc)

    def _continue_inline(self) -> None:
        try:
            while not self._pull():
                self._flush()
                if self._write_paused:
                    return
            self._complete()
        except Exception as exc:
            self._app_done = True
            self._close_result()
            self._pending.clear()
            self._error_response(exc)

    def _complete(self) -> None:
        self._app_done = True
        self._close_result()
        whole = self._finish_output()
        self._deliver(self._take_pending(), False)
        if whole:
            self.protocol.finish()
        else:
            self.protocol.cut()  # shorter than its Content-Length: the client must see it

    def _flush(self) -> None:
        """Hand the pending output to the transport (thread and inline modes),
        or to the loop (worker mode)."""
        if not self._pending:
            return
        if self._cond is not None:
            self._flush_to_loop()
            return
        self._deliver(self._take_pending(), True)
        if self.protocol.transport_closing():  # the write failed: the peer is gone
            raise ClientDisconnected("the client went away")

    def _no_input(self) -> None:  # inline: the body is complete before the app runs
        self.input.eof = True

    def _pump(self) -> None:
        """Thread mode: recv() the next piece of the body for wsgi.input."""
        protocol = self.protocol
        for event in protocol.pump_body():
            if type(event) is bytes:
                self.input.feed(event)
            elif event is END_OF_MESSAGE:
                self.input.eof = True
            elif isinstance(event, RemoteError):
                self.input.error = ClientDisconnected(f"request body: {event}")
            else:
                self.input.error = ClientDisconnected("the client went away")

    # ---- worker mode: the app on a pool thread, the loop writes

    def _run_worker(self) -> bytes | BaseException | None:
        """On a worker thread; the result goes to _worker_finished on the loop."""
        handed = False
        try:
            if not self._call_app():
                while not self._pull():
                    self._flush_to_loop()
            elif self._file is not None:
                # The loop sends it (_worker_finished) and its done closes the
                # iterable, or connection_lost takes it and closes it: whichever
                # takes self._file, under the lock; not this thread.
                handed = True
                return _FILE
            whole = self._finish_output()
            data = self._take_pending()
            return data if whole else _ShortBody(data)
        except BaseException as exc:
            self._pending.clear()
            return exc
        finally:
            self._input_closed = True  # body() drops the rest from now on
            if not handed:
                self._app_done = True
                self._close_result()

    def _worker_finished(self, future) -> None:
        """On the loop thread (not called if the connection closed meanwhile)."""
        outcome = future.result()
        if self._gone:
            return
        if self._input_paused:
            self._release_input()
        if outcome is _FILE:
            with self._cond:
                mine = self._file is not None  # else connection_lost took it (and closed it)
            if mine:
                self._send_file()
            return
        if type(outcome) is bytes:
            self._begun = True
            self.protocol.respond_framed(outcome, self._keep_alive, True)
        elif type(outcome) is _ShortBody:  # what the app has goes out, then the cut
            self._begun = True
            self.protocol.respond_framed(outcome.data, self._keep_alive, False)
        elif isinstance(outcome, BaseException):
            self._error_response(outcome)

    def _release_input(self) -> None:
        """Loop thread: the app returned while reading was paused for its
        unread body (more than INPUT_HIGH buffered).  Nobody would resume it
        now, and a paused connection arms no timer: it would hang for good.
        Drop the buffer and read on: body() drops the rest (DISCARD_MAX), the
        body timers run again, and the next request is served."""
        with self._cond:
            self._input_paused = self._resume_asked = False
            self.input = EMPTY_INPUT  # frees the buffered body (the app is done with it)
        self.protocol.pause_input(False)

    def _flush_to_loop(self) -> None:
        """Worker: hand the pending output to the loop; wait while the loop
        has more than HIGH_WATER of ours unwritten, or the transport is paused."""
        data = self._take_pending()
        cond = self._cond
        with cond:
            while not self._gone and (self._write_paused or self._in_flight > HIGH_WATER):
                cond.wait()
            if self._gone:
                raise ClientDisconnected("the client went away")
            self._in_flight += len(data)
        self._call(self._write_from_loop, data)

    def _write_from_loop(self, data: bytes) -> None:
        if not self._gone:
            self._deliver(data, True)  # may call pause_writing() at once
        with self._cond:
            self._in_flight -= len(data)
            self._cond.notify_all()

    def _wait_for_input(self) -> None:
        """Worker, lock held: nothing buffered; the loop will notify."""
        if self._input_paused and not self._resume_asked:
            self._input_drained()
        self._cond.wait()

    def _input_drained(self) -> None:
        """Worker, lock held: the buffered body is low: let the loop read again."""
        if self._input_paused and not self._resume_asked:
            self._resume_asked = True
            self._call(self._resume_input, None)

    def _resume_input(self, _arg: Any = None) -> None:
        with self._cond:
            if not self._resume_asked:
                return  # paused again since: the app will ask again
            self._input_paused = False
            self._resume_asked = False
        if not self._gone:
            self.protocol.pause_input(False)
