"""Shared helpers for the independent, black-box contract suite.

Everything here talks to ``python -m iomodels`` as a subprocess and over
loopback sockets only; nothing imports the package under test.

The contract is issue 2 ("Every IO model of the text as a real server behind
one protocol API").  Quotes from it are given next to the checks that follow
from them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# "the models ... named exactly as the CLI spells them"
CONTRACT_MODELS = [
    "blocking",
    "threads",
    "processes",
    "threadpool",
    "nonblocking",
    "select",
    "poll",
    "epoll",
    "kqueue",
    "asyncio",
    "uvloop",
]

READY_RE = re.compile(
    r"^listening on (?P<host>\[[0-9A-Fa-f:.]+\]|\d{1,3}(?:\.\d{1,3}){3}):(?P<port>\d{1,5})"
    r" model=(?P<model>\S+) protocol=(?P<protocol>\S+)$"
)
# lenient form used only to keep other tests running when the exact form is off
LENIENT_PORT_RE = re.compile(r":(\d{1,5})\b")

LIVENESS = 5.0  # "reply within 5 s" style deadlines
START_DEADLINE = 15.0


def ref_upper(data: bytes) -> bytes:
    """The contract's reference function for the `upper` protocol."""
    return data.decode("utf-8", "surrogateescape").upper().encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------
# running the CLI


def cli_env() -> dict:
    env = dict(os.environ)
    # Make `python -m iomodels` work from a source checkout without importing it here.
    if importlib.util.find_spec("iomodels") is None:
        src = str(REPO / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # the server must flush its ready line itself ("prints exactly one line on stdout, flushed")
    env.pop("PYTHONUNBUFFERED", None)
    return env


def _child_setup():
    # Run the server the way a terminal would: SIGINT at its default, not inherited as ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_cli(args, *, input=None, timeout=20.0):
    """Run ``python -m iomodels ARGS`` to completion. Returns CompletedProcess (bytes)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "iomodels", *args],
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
        start_new_session=True,
        preexec_fn=_child_setup,
    )
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, err = proc.communicate()
        raise AssertionError(
            f"`iomodels {' '.join(args)}` did not finish within {timeout}s; "
            f"stdout={out[-2000:]!r} stderr={err[-2000:]!r}"
        ) from None
    finally:
        kill_group(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# --------------------------------------------------------------------------
# the `models` table

_YES_CELLS = {"yes", "y", "available", "true", "ok", "✓", "✔", "+"}
_NO_CELLS = {"no", "n", "unavailable", "not available", "false", "✗", "✘", "x", "-"}
_HEADER_WORDS = {"model", "models", "name"}


class ModelTable:
    def __init__(self, ok, rows, raw, error=None):
        self.ok = ok  # the command ran with status 0
        self.rows = rows  # name -> (available: bool, reason: str)
        self.raw = raw
        self.error = error


def parse_models_output(text: str) -> dict:
    """Tolerant parse of the `iomodels models` table.

    A row is a line whose first cell is a model-like name.  Cells are split on
    '|', tabs or runs of 2+ spaces.  The first cell after the name that reads
    like yes/available or no/unavailable decides; the reason is what follows.
    Falls back to the first whole word yes/available/no/unavailable in the row.
    """
    rows = {}
    for line in text.splitlines():
        stripped = line.strip().strip("|").strip()
        if not stripped or set(stripped) <= set("-=+|: "):
            continue
        cells = [c.strip() for c in re.split(r"\s*\|\s*|\t+|\s{2,}", stripped)]
        cells = [c for c in cells if c]
        if not cells:
            continue
        first = cells[0].split()[0].strip("`*:")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", first) or first in _HEADER_WORDS:
            continue
        tail = cells[1:]
        if cells[0].split()[1:]:
            tail = [" ".join(cells[0].split()[1:]), *tail]
        available, reason = None, ""
        for i, cell in enumerate(tail):
            low = cell.lower().strip("`*")
            m = re.match(
                r"(yes|available|ok|true|no|unavailable|not available|false)\b[\s:,;(\-—]*(.*)$", low)
            if low in _YES_CELLS or low in _NO_CELLS or m:
                word = m.group(1) if m else low
                available = word in _YES_CELLS or word in {"yes", "available", "ok", "true"}
                first_reason = cell[len(cell) - len(m.group(2)):] if m and m.group(2) else ""
                reason = " ".join([first_reason, *tail[i + 1:]]).strip()
                break
        if available is None:
            words = re.findall(r"[A-Za-z]+", " ".join(tail))
            for j, w in enumerate(words):
                if w.lower() in ("yes", "available"):
                    available = True
                elif w.lower() in ("no", "unavailable"):
                    available = False
                else:
                    continue
                reason = " ".join(words[j + 1:])
                break
        if available is None:
            continue
        rows[first] = (available, reason)
    return rows


_TABLE = None


def model_table() -> ModelTable:
    global _TABLE
    if _TABLE is None:
        try:
            cp = run_cli(["models"], timeout=30)
            text = cp.stdout.decode("utf-8", "replace")
            _TABLE = ModelTable(cp.returncode == 0, parse_models_output(text), text,
                                None if cp.returncode == 0 else cp.stderr.decode("utf-8", "replace"))
        except Exception as exc:  # the package may not exist yet
            _TABLE = ModelTable(False, {}, "", repr(exc))
    return _TABLE


def all_models():
    """Contract models plus any extra ones the `models` command lists (sigio, io_uring...)."""
    names = list(CONTRACT_MODELS)
    for name in model_table().rows:
        if name not in names:
            names.append(name)
    return names


def unavailable_models():
    names = [n for n, (ok, _) in model_table().rows.items() if not ok]
    if sys.platform.startswith("linux") and "kqueue" not in names:
        names.append("kqueue")  # "kqueue cannot run here (Linux)"
    return names


def require_available(model):
    """Skip (with the registry's reason) if `models` says MODEL is unavailable; fail if unknown."""
    table = model_table()
    if not table.ok:
        pytest.fail(f"`iomodels models` failed: {table.error}\n{table.raw}")
    if model not in table.rows:
        pytest.fail(f"`iomodels models` does not list model {model!r}:\n{table.raw}")
    available, reason = table.rows[model]
    if not available:
        pytest.skip(f"model {model} unavailable: {reason or '(no reason given)'}")


# --------------------------------------------------------------------------
# processes


def group_members(pgid):
    """Live (non-zombie) processes whose process group is PGID, via /proc/*/stat."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        rparen = stat.rfind(")")
        fields = stat[rparen + 2:].split()
        if len(fields) < 3:
            continue
        state, _ppid, pgrp = fields[0], fields[1], fields[2]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            found.append((int(entry), state, stat[stat.find("(") + 1:rparen]))
    return found


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def cpu_ticks(pgid):
    """utime+stime (clock ticks) summed over the live members of a process group."""
    total = 0
    for pid, _, _ in group_members(pgid):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total


def group_rss(pgid):
    return sum(rss_bytes(pid) for pid, _, _ in group_members(pgid))


class Server:
    """One `iomodels serve` subprocess in its own session / process group."""

    def __init__(self, model, *, protocol="echo", host="127.0.0.1", port="0", extra=(), nofile=None):
        self.model = model
        self.nofile = nofile  # (soft, hard) RLIMIT_NOFILE to start the server with
        self.protocol = protocol
        self.args = ["serve", "--model", model]
        if protocol is not None:
            self.args += ["--protocol", protocol]
        if host is not None:
            self.args += ["--host", host]
        if port is not None:
            self.args += ["--port", str(port)]
        self.args += list(extra)
        self.proc = None
        self.ready_line = None
        self.stdout_rest = b""
        self.errfile = tempfile.TemporaryFile()  # noqa: SIM115 -- closed in stop()
        self.port = None
        self.host = None
        self.family = socket.AF_INET

    # -- lifecycle
    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "iomodels", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.errfile,
            env=cli_env(),
            start_new_session=True,
            preexec_fn=self._preexec,
        )
        self.pgid = self.proc.pid
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + START_DEADLINE
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError(
                    f"no ready line within {START_DEADLINE}s from `iomodels {' '.join(self.args)}`;"
                    f" stdout={buf!r} stderr={self.stderr()[-3000:]!r}")
            r, _, _ = select.select([fd], [], [], min(left, 0.2))
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.proc.wait(5)
                    raise AssertionError(
                        f"`iomodels {' '.join(self.args)}` exited with {self.proc.returncode} before"
                        f" the ready line; stdout={buf!r} stderr={self.stderr()[-3000:]!r}")
                buf += chunk
        line, _, rest = buf.partition(b"\n")
        self.stdout_rest = rest
        self.ready_line = line.decode("utf-8", "replace")
        m = READY_RE.match(self.ready_line)
        if m:
            self.port = int(m.group("port"))
            host = m.group("host")
        else:
            ports = LENIENT_PORT_RE.findall(self.ready_line)
            if not ports:
                self.kill()
                raise AssertionError(f"cannot find a port in ready line {self.ready_line!r}")
            self.port = int(ports[-1])
            host = "[::1]" if "[::1]" in self.ready_line else "127.0.0.1"
        if host.startswith("["):
            self.host = host[1:-1]
            self.family = socket.AF_INET6
        else:
            self.host = host
        return self

    def _preexec(self):
        _child_setup()
        if self.nofile is not None:
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        try:
            self.errfile.seek(0)
            return self.errfile.read().decode("utf-8", "replace")
        except Exception:
            return ""

    def read_rest_of_stdout(self, timeout=2.0):
        """After exit: whatever stdout carried after the ready line."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self.stdout_rest += chunk
        return self.stdout_rest

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout):
        """Returns (returncode or None, seconds waited)."""
        t0 = time.monotonic()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        return rc, time.monotonic() - t0

    def kill(self):
        if self.proc is None:
            return
        kill_group(self.pgid)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def stop(self):
        """Polite stop, then make sure nothing of the group is left."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                try:
                    os.kill(self.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(8)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            kill_group(self.pgid)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            for f in (self.proc.stdout,):
                try:
                    f.close()
                except Exception:
                    pass
            try:
                self.errfile.close()
            except Exception:
                pass

    # -- clients
    def connect(self, timeout=LIVENESS):
        s = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            s.settimeout(timeout)
            s.connect((self.host, self.port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            s.close()
            raise
        return s


def start_server(model, **kw):
    srv = Server(model, **kw)
    try:
        srv.start()
    except BaseException:
        srv.stop()
        raise
    return srv


# --------------------------------------------------------------------------
# socket helpers


class Sockets:
    """Collects sockets to close at teardown."""

    def __init__(self):
        self.items = []

    def add(self, s):
        self.items.append(s)
        return s

    def close_all(self):
        for s in self.items:
            try:
                s.close()
            except OSError:
                pass
        self.items.clear()


def recv_exact(sock, n, timeout=LIVENESS, what="reply"):
    """Receive exactly n bytes, with an overall deadline."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}: got {len(buf)} of {n} bytes:"
                f" {bytes(buf[-200:])!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(1 << 20, n - len(buf)))
        except TimeoutError:
            continue
        if not chunk:
            raise AssertionError(
                f"connection closed while waiting for {what}: got {len(buf)} of {n} bytes:"
                f" {bytes(buf[-200:])!r}")
        buf += chunk
    return bytes(buf)


def recv_until_eof(sock, timeout=LIVENESS, limit=1 << 30):
    """Receive until EOF. Returns (data, how) with how in {'eof','reset'}; raises on timeout."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"no EOF within {timeout}s; received {len(buf)} bytes, last: {bytes(buf[-200:])!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return bytes(buf), "reset"
        if not chunk:
            return bytes(buf), "eof"
        buf += chunk
        if len(buf) > limit:
            raise AssertionError(f"received more than {limit} bytes")


def expect_silence(sock, seconds):
    """Assert that nothing arrives on SOCK for SECONDS (EOF/reset also count as 'something')."""
    sock.settimeout(seconds)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return
    raise AssertionError(f"expected no reply for {seconds}s, got {data!r}")


def exchange(sock, data, expected=None, timeout=LIVENESS):
    """Send DATA, expect EXPECTED (default: DATA) back within TIMEOUT."""
    if expected is None:
        expected = data
    sock.sendall(data)
    got = recv_exact(sock, len(expected), timeout)
    assert got == expected, f"sent {data!r}: expected {expected!r}, got {got!r}"
    return got


def send_all_then_half_close(sock, data):
    """Background sender: sendall + SHUT_WR. Returns the thread (errors stored on it)."""
    def run():
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except Exception as exc:  # reported by the caller
            t.error = exc
    t = threading.Thread(target=run, daemon=True)
    t.error = None
    t.start()
    return t


def round_trip(srv, data, timeout=10.0):
    """One connection: send DATA (concurrently), half-close, read everything until EOF."""
    s = srv.connect()
    try:
        t = send_all_then_half_close(s, data)
        got, how = recv_until_eof(s, timeout)
        t.join(timeout)
        assert t.error is None, f"sending failed: {t.error!r}"
        return got, how
    finally:
        s.close()


def canary(srv, protocol="echo", timeout=LIVENESS):
    """After a fault: a fresh connection must still be answered."""
    assert srv.alive(), f"server died: rc={srv.proc.returncode} stderr={srv.stderr()[-3000:]}"
    msg = b"canary \xc3\xa9\n"
    expected = msg if protocol == "echo" else ref_upper(msg)
    s = srv.connect()
    try:
        exchange(s, msg, expected, timeout)
    finally:
        s.close()


def reset_close(sock):
    """Close with an RST (SO_LINGER 0)."""
    import struct
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class StalledSender:
    """A client that sends a lot without reading; tracks progress so we can see it stall."""

    def __init__(self, sock, total, block=1 << 20, chunk=1 << 16):
        import random
        self.sock = sock
        self.total = total
        rnd = random.Random(total)
        self.base = bytes(rnd.getrandbits(8) for _ in range(4096)) * (block // 4096)
        self.block = block
        self.chunk = chunk
        self.sent = 0
        self.last_progress = time.monotonic()
        self.error = None
        self.done = False
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def sha(self):
        import hashlib
        h = hashlib.sha256()
        for i in range(self.total // self.block):
            h.update(self._block(i))
        return h.hexdigest()

    def _block(self, i):
        return i.to_bytes(8, "big") + self.base[8:]

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        try:
            self.sock.settimeout(0.2)
            for i in range(self.total // self.block):
                view = memoryview(self._block(i))
                off = 0
                while off < len(view):
                    if self.stop:
                        return
                    try:
                        n = self.sock.send(view[off:off + self.chunk])
                    except TimeoutError:
                        continue
                    off += n
                    self.sent += n
                    self.last_progress = time.monotonic()
            self.done = True
        except Exception as exc:
            self.error = exc

    def wait_stall_or_done(self, quiet=0.5, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.done or self.error is not None:
                return
            if time.monotonic() - self.last_progress > quiet:
                return
            time.sleep(0.05)
        raise AssertionError(f"sender neither stalled nor finished in {timeout}s (sent {self.sent})")


def canary_eventually(srv, protocol="echo", timeout=8.0):
    """A canary that may be retried until TIMEOUT: for states the server leaves only after it has
    noticed something (freed descriptors, a freed connection slot)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            canary(srv, protocol, timeout=max(0.5, min(3.0, deadline - time.monotonic())))
            return
        except (AssertionError, OSError) as exc:
            last = exc
            if not srv.alive():
                break
            time.sleep(0.2)
    raise AssertionError(f"no canary answered within {timeout}s: {last!r}")
