"""WSGI (PEP 3333) applications on the http protocol, on every model: ``--app MODULE:CALLABLE``.

Who runs the app (``WsgiApp.mode``, decided once per server from the model):
    "thread"  the blocking models (blocking, threads, processes, threadpool):
              each connection already has a thread (or process) of its own,
              so the app runs right there, inside data_received, as gunicorn's
              sync worker does.  wsgi.input recv()s the body from the socket
              when the app reads it; write() is sendall(), which blocks while
              the client does not read: back-pressure for free.
    "worker"  the event-loop models: the app runs on the server's worker pool
              (``transport.run_in_worker``, as waitress runs apps on its
              threads), and talks to the loop thread through a condition
              variable and a thread-safe call onto the loop (``loop_caller``).
    "inline"  ``--app-inline`` on an event-loop model: the app runs on the loop
              thread itself, for apps that never block.  The body is buffered
              (up to --max-body) before the app is called, since reading a
              body that has not arrived would block the loop.

Bodies stream both ways with bounded memory:
- in: the loop hands each body piece to ``InputStream``; above INPUT_HIGH
  buffered bytes the protocol pauses reading the socket, and the app's reads
  resume it below INPUT_LOW.  A read with nothing buffered blocks the worker
  until the loop delivers (or the request ends, or the client goes).
- out: the app's iterable is pulled a block at a time, each block handed to
  the transport before the next is pulled (PEP 3333: no block held back), and
  a worker pulls the next one only while less than HIGH_WATER of its output is
  unwritten and the transport is not paused (pause_writing/resume_writing): a
  generator of 1 GiB is never buffered.  A list (hello world) goes out in one
  write, with a Content-Length computed here when the app gave none.
- a file: ``wsgi.file_wrapper`` over a real file goes out through the kernel
  in every mode (transport.sendfile: os.sendfile, splices on io_uring), after
  the head, with a Content-Length; the file never enters the process (but
  on uvloop, which has no sendfile: read + write there).  The
  app's thread hands it over; the transport's ``done`` closes the iterable.

The iterable's close() is always called, on the thread that iterated it (a
file sent by the kernel: on the connection's thread, when the transport is
done with it), as soon as the response ends, fails, or the client goes away (a worker waiting on
the loop is woken at once by connection_lost).  An app that raises gets a 500
if no header went out, else the connection is cut (the client sees a
truncated response); the traceback is logged and the server carries on.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from iomodels.core.errors import IOModelsError
from iomodels.protocols.http.wsgi_handler import HOP_BY_HOP, NO_BODY_STATUSES, WsgiHandler, loop_caller
from iomodels.protocols.http.wsgi_streams import ERRORS, FileWrapper

__all__ = ["WsgiApp", "WsgiHandler", "is_blocking_model", "load_app", "loop_caller", "make_wsgi_app"]


def load_app(spec: str) -> Any:
    """``module:callable`` -> the callable, imported with the working directory
    on sys.path (as gunicorn and uvicorn do)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise IOModelsError(f"--app {spec!r}: expected MODULE:CALLABLE")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise IOModelsError(f"cannot load --app {spec!r}: {exc}") from None
    if not callable(target):
        raise IOModelsError(f"--app {spec!r} is not callable")
    return target


def is_blocking_model(model: str) -> bool:
    """Whether ``model`` serves each connection on a thread or process of its
    own.  The registry's class says so: the blocking models share
    models/_blocking.py's BlockingServer, whose transport runs run_in_worker()
    inline on the connection's thread.  On those, handing the app to a pool
    would only add a hop: it runs where it is (the "thread" mode)."""
    from iomodels import models
    from iomodels.models._blocking import BlockingServer

    return issubclass(models.server_class(model), BlockingServer)


def make_wsgi_app(spec: str, model: str, inline: bool = False) -> WsgiApp:
    """The per-server WSGI state for ``--app spec`` on ``model``."""
    app = load_app(spec)
    # --app-inline changes nothing on a blocking model: the connection's thread is the app's.
    mode = "thread" if is_blocking_model(model) else "inline" if inline else "worker"
    # The app is called from several threads at once on the pool and on the
    # models with a thread per connection; from one thread otherwise.
    multithread = mode == "worker" or model in ("threads", "threadpool")
    return WsgiApp(app, mode, multiprocess=model == "processes", multithread=multithread)


class WsgiApp:
    """What the connections of one server share: the app, the mode, the
    environ's constant part."""

    def __init__(self, app: Any, mode: str, multiprocess: bool = False, multithread: bool = True) -> None:
        if mode not in ("thread", "worker", "inline"):
            raise ValueError(f"unknown WSGI mode {mode!r}")
        self.app = app
        self.mode = mode
        self.base_environ = {
            "SCRIPT_NAME": "",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": ERRORS,
            "wsgi.multithread": multithread and mode != "inline",
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,  # read() returns b"" at the body's end, chunked too
        }
        # (status, id(headers)) -> [a copy of headers, status bytes, the encoded
        # fields, Content-Length or None, Connection: close?, no body?, the
        # whole head of the common answer with its Date and length, or None].
        # Most apps answer from a few constant lists: their fields are encoded
        # once, not per request (the copy guards against a list changed in
        # place).  Threads may race here; the worst is encoding twice.
        self._heads: dict[tuple[str, int], list] = {}

    def encoded_head(self, status: str, headers: list) -> list:
        key = (status, id(headers))
        entry = self._heads.get(key)
        if entry is not None and entry[0] == headers:
            return entry
        fields = []
        close = False
        length = None
        for name, value in headers:
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"WSGI header {name!r}: {value!r} is not a pair of str")
            if "\n" in name or "\r" in name or "\n" in value or "\r" in value or ":" in name:
                raise ValueError(f"WSGI header {name!r}: {value!r} would split the response")
            lowered = name.lower()
            if lowered == "content-length":
                length = int(value)
            elif lowered.encode("latin-1") in HOP_BY_HOP:
                close = close or (lowered == "connection" and "close" in value.lower())
            else:
                fields.append(f"{name}: {value}\r\n")
        code = int(status[:3])
        bodiless = code < 200 or code in NO_BODY_STATUSES
        fields_bytes = "".join(fields).encode("latin-1")
        entry = [list(headers), status.encode("latin-1"), fields_bytes, length, close, bodiless, None]
        if len(self._heads) >= 256:  # apps that build their lists per request: no use keeping them
            self._heads.clear()
        self._heads[key] = entry
        return entry

    def begin(self, protocol: Any, request: Any) -> None:
        """A request's head arrived: serve it.  Sets ``protocol._handler``."""
        handler = WsgiHandler(self, protocol, request)
        protocol._handler = handler
        if self.mode != "inline" or request.expect_continue:
            handler.start()  # inline: nothing to start, end() calls the app
