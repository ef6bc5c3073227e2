"""The servers a user would otherwise deploy, each serving the same hello world.

A peer is a command line that serves ``GET /plaintext`` on 127.0.0.1:PORT
with one worker process, so that it can be pinned to one CPU beside our
models: gunicorn (sync and gthread workers) and waitress and granian's WSGI
interface serve ``apps.wsgi_hello``; uvicorn with uvloop and httptools serves
``apps.asgi_hello``; nginx answers ``return 200`` from C, the floor.

They are optional: ``pip install -e '.[peers]'`` and ``apt-get install -y
nginx-light``.  A missing peer is a row that says so, never an error.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

WSGI_APP = "iomodels.webbench.apps:wsgi_hello"
ASGI_APP = "iomodels.webbench.apps:asgi_hello"
GTHREAD_THREADS = 8  # as our threadpool's default --threads
WAITRESS_THREADS = 4  # waitress's own default

NGINX_CONF = """\
# iomodels: nginx as the floor of the HTTP comparison (one worker, no logs).
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    server {{
        listen {host}:{port} backlog=2048;
        location / {{
            default_type text/plain;
            return 200 "Hello, World!";
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Peer:
    name: str
    describe: str
    needs: str  # what to install when it is missing
    module: str | None  # Python module that must be importable, or None
    binary: str | None  # executable that must be on PATH (or beside python), or None
    argv: Callable[[str, int, Path], list[str]]  # (host, port, scratch dir) -> command line

    def available(self) -> tuple[bool, str]:
        if self.module and importlib.util.find_spec(self.module) is None:
            return False, f"not installed: {self.needs}"
        if self.binary and _which(self.binary) is None:
            return False, f"not installed: {self.needs}"
        return True, ""


def _which(name: str) -> str | None:
    beside = Path(sys.executable).with_name(name)  # console scripts of this venv
    if beside.exists():
        return str(beside)
    return shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)


def _gunicorn(worker: str) -> Callable[[str, int, Path], list[str]]:
    def argv(host: str, port: int, scratch: Path) -> list[str]:
        extra = ["--threads", str(GTHREAD_THREADS)] if worker == "gthread" else []
        return [
            sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", worker, *extra,
            "--bind", f"{host}:{port}", "--backlog", "2048", "--log-level", "warning", WSGI_APP,
        ]  # fmt: skip

    return argv


def _waitress(host: str, port: int, scratch: Path) -> list[str]:
    return [
        sys.executable, "-c", "from waitress.runner import run; run()", f"--listen={host}:{port}",
        f"--threads={WAITRESS_THREADS}", "--backlog=2048", "--connection-limit=2000", WSGI_APP,
    ]  # fmt: skip


def _granian(host: str, port: int, scratch: Path) -> list[str]:
    return [
        sys.executable, "-m", "granian", "--interface", "wsgi", "--host", host, "--port", str(port),
        "--workers", "1", "--backlog", "2048", "--no-ws", "--log-level", "warning", WSGI_APP,
    ]  # fmt: skip


def _uvicorn(host: str, port: int, scratch: Path) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--host", host,
        "--port", str(port), "--backlog", "2048", "--log-level", "warning", "--no-access-log", ASGI_APP,
    ]  # fmt: skip


def _nginx(host: str, port: int, scratch: Path) -> list[str]:
    conf = scratch / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=scratch, host=host, port=port))
    return [_which("nginx") or "nginx", "-p", str(scratch), "-c", str(conf), "-e", "stderr"]


PEERS: dict[str, Peer] = {
    p.name: p
    for p in [
        Peer("gunicorn-sync", "gunicorn, 1 sync worker", "pip install -e '.[peers]'", "gunicorn", None,
             _gunicorn("sync")),
        Peer("gunicorn-gthread", f"gunicorn, 1 gthread worker x {GTHREAD_THREADS} threads",
             "pip install -e '.[peers]'", "gunicorn", None, _gunicorn("gthread")),
        Peer("waitress", f"waitress, {WAITRESS_THREADS} threads", "pip install -e '.[peers]'", "waitress",
             None, _waitress),
        Peer("granian", "granian WSGI, 1 worker", "pip install -e '.[peers]'", "granian", None, _granian),
        Peer("uvicorn", "uvicorn + uvloop + httptools (ASGI)", "pip install -e '.[peers]'", "uvicorn", None,
             _uvicorn),
        Peer("nginx", "nginx return 200, 1 worker (the C floor)", "apt-get install -y nginx-light", None,
             "nginx", _nginx),
    ]
}  # fmt: skip


def names() -> list[str]:
    return list(PEERS)


def get(name: str) -> Peer:
    try:
        return PEERS[name]
    except KeyError:
        raise ValueError(f"unknown peer {name!r}; choose from: {', '.join(PEERS)}") from None
