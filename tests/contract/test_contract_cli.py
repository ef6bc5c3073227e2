"""Contract: the command line (`serve` flags and ready line, exit codes, `models`, `client`)."""

import os
import socket
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _contract_support import (
    CONTRACT_MODELS,
    READY_RE,
    Sockets,
    all_models,
    exchange,
    model_table,
    require_available,
    run_cli,
    start_server,
    unavailable_models,
)

pytestmark = pytest.mark.timeout(60)

MODELS = all_models()


def _one_line(text: bytes) -> bool:
    lines = [ln for ln in text.decode("utf-8", "replace").splitlines() if ln.strip()]
    return len(lines) == 1


# ---------------------------------------------------------------- models


def test_models_command_lists_every_model_with_availability():
    # "iomodels models: a table of every model, whether it is available on this machine and, if not, why"
    table = model_table()
    assert table.ok, f"`iomodels models` failed: {table.error}\n{table.raw}"
    missing = [m for m in CONTRACT_MODELS if m not in table.rows]
    assert not missing, f"models not listed (or no yes/no column parsed) {missing}:\n{table.raw}"


def test_models_command_reasons_for_unavailable():
    table = model_table()
    assert table.ok, table.error
    no_reason = [n for n, (ok, why) in table.rows.items() if not ok and not why.strip()]
    assert not no_reason, f"unavailable without a reason: {no_reason}\n{table.raw}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux facts")
def test_models_probe_linux_facts():
    # "kqueue cannot run here (Linux) ... it skips with the reason"; select/poll/epoll exist on Linux;
    # the blocking models and asyncio are pure stdlib.
    table = model_table()
    assert table.ok, table.error
    assert table.rows.get("kqueue", (True,))[0] is False, table.raw
    for name in ("blocking", "threads", "processes", "threadpool", "nonblocking",
                 "select", "poll", "epoll", "asyncio"):
        assert table.rows.get(name, (False,))[0] is True, f"{name} should be available here:\n{table.raw}"


def test_models_uvloop_matches_installation():
    # "uvloop: the same on uvloop, where it is installed" -- probe for real
    import importlib.util
    table = model_table()
    assert table.ok, table.error
    installed = importlib.util.find_spec("uvloop") is not None
    assert table.rows.get("uvloop", (None,))[0] is installed, table.raw


# ---------------------------------------------------------------- exit status 2

BAD_ARGS = {
    "unknown-model": ["serve", "--model", "no-such-model", "--port", "0"],
    "unknown-flag": ["serve", "--model", "threads", "--port", "0", "--no-such-flag"],
    "bad-protocol": ["serve", "--model", "threads", "--port", "0", "--protocol", "rot13"],
    "bad-port": ["serve", "--model", "threads", "--port", "eighty"],
    "missing-model": ["serve", "--port", "0"],
}


@pytest.mark.parametrize("case", sorted(BAD_ARGS))
def test_bad_flag_exits_2(case):
    # "a bad flag or an unavailable model gives a one-line error and exit status 2"
    cp = run_cli(BAD_ARGS[case], timeout=20)
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    assert cp.stdout == b"", f"stdout must carry only the ready line, got {cp.stdout!r}"
    assert cp.stderr.strip(), "no error message on stderr"


@pytest.mark.parametrize("case", sorted(BAD_ARGS))
def test_bad_flag_error_is_one_line(case):
    # "... gives a one-line error ..."
    cp = run_cli(BAD_ARGS[case], timeout=20)
    assert _one_line(cp.stderr), f"stderr is not one line: {cp.stderr.decode(errors='replace')!r}"


@pytest.mark.parametrize("model", unavailable_models())
def test_unavailable_model_exits_2_with_one_line(model):
    # "kqueue cannot run here (Linux)"; "an unavailable model gives a one-line error and exit status 2"
    cp = run_cli(["serve", "--model", model, "--port", "0"], timeout=20)
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    assert cp.stdout == b"", cp.stdout
    assert _one_line(cp.stderr), f"stderr is not one line: {cp.stderr.decode(errors='replace')!r}"


def test_serve_help_documents_flags_and_max_connections():
    # "--max-connections: connections beyond it are accepted and closed at once (say so in --help)"
    cp = run_cli(["serve", "--help"], timeout=20)
    assert cp.returncode == 0, cp.stderr
    text = " ".join(cp.stdout.decode("utf-8", "replace").split())
    for flag in ("--model", "--protocol", "--host", "--port", "--threads", "--backlog",
                 "--max-connections", "--idle-timeout", "--graceful-timeout"):
        assert flag in text, f"{flag} missing from serve --help"
    low = text.lower()
    # the option's own description: its last occurrence (the first is in the usage line),
    # up to the next option
    i = low.rfind("--max-connections")
    window = low[i:]
    j = window.find(" --", 3)
    window = window[:j] if j > 0 else window[:600]
    assert "accept" in window and "clos" in window, (
        f"--help does not say extra connections are accepted and closed: {window!r}")


# ---------------------------------------------------------------- ready line


@pytest.mark.parametrize("model", MODELS)
def test_ready_line_ipv6_bracketed(model):
    # "HOST being the numeric address bound (IPv6 in brackets) and PORT the real port"
    require_available(model)
    srv = start_server(model, protocol="echo", host="::1")
    socks = Sockets()
    try:
        assert srv.ready_line == f"listening on [::1]:{srv.port} model={model} protocol=echo", srv.ready_line
        s = socks.add(socket.create_connection(("::1", srv.port), timeout=5))
        exchange(s, b"over v6 \xe2\x82\xac\n")
    finally:
        socks.close_all()
        srv.stop()


@pytest.mark.parametrize("model", ["threads", "asyncio"])
def test_ready_line_host_is_numeric_for_a_name(model):
    # "HOST being the numeric address bound"
    require_available(model)
    srv = start_server(model, protocol="upper", host="localhost")
    socks = Sockets()
    try:
        m = READY_RE.match(srv.ready_line)
        assert m, srv.ready_line
        assert m.group("host") in ("127.0.0.1", "[::1]"), srv.ready_line
        s = socks.add(srv.connect())
        exchange(s, b"abc", b"ABC")
    finally:
        socks.close_all()
        srv.stop()


# ---------------------------------------------------------------- the text's session


def _client(port, data, host="127.0.0.1", timeout=20):
    args = ["client"]
    if host is not None:
        args += ["--host", host]
    if port is not None:
        args += ["--port", str(port)]
    return run_cli(args, input=data, timeout=timeout)


def _lines(out: bytes):
    return [ln.rstrip("\r") for ln in out.decode("utf-8", "replace").split("\n")]


def _is_subsequence(needles, hay):
    it = iter(hay)
    return all(any(n == h for h in it) for n in needles)


@pytest.mark.parametrize("model", MODELS)
def test_text_session_default_protocol(model):
    # Done when: "`iomodels serve --model M`, then `printf 'hello\nstraße\n' | iomodels client`
    # prints `HELLO` and `STRASSE`" -- so the default protocol is upper.
    require_available(model)
    srv = start_server(model, protocol=None)
    try:
        m = READY_RE.match(srv.ready_line)
        assert m, f"ready line does not match the contract format: {srv.ready_line!r}"
        assert m.group("host") == "127.0.0.1" and m.group("model") == model, srv.ready_line
        assert m.group("protocol") == "upper", srv.ready_line
        cp = _client(srv.port, "hello\nstraße\n".encode())
        assert cp.returncode == 0, (cp.returncode, cp.stderr)
        lines = _lines(cp.stdout)
        assert _is_subsequence(["HELLO", "STRASSE"], lines), cp.stdout
        assert srv.alive()
    finally:
        srv.stop()


@pytest.mark.parametrize("model", MODELS)
def test_client_piped_many_lines(model):
    # "with piped stdin it sends everything, half-closes, prints all replies and exits 0"
    require_available(model)
    srv = start_server(model, protocol="upper")
    try:
        text = "".join(f"line {i} grüße é ß 日本\n" for i in range(2000))
        cp = _client(srv.port, text.encode())
        assert cp.returncode == 0, (cp.returncode, cp.stderr[-2000:])
        expected = [ln for ln in text.upper().split("\n") if ln]
        got = [ln for ln in _lines(cp.stdout) if ln]
        assert got == expected or _is_subsequence(expected, got), (
            f"replies missing/garbled; first lines: {got[:3]!r} ... last: {got[-3:]!r} ({len(got)} lines)")
    finally:
        srv.stop()


def test_client_refused_is_one_line_exit_1():
    # "A refused connection is a one-line error, exit status 1."
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # bound then closed, never listening: connect is refused
    cp = _client(port, b"hello\n")
    assert cp.returncode == 1, (cp.returncode, cp.stdout, cp.stderr)
    assert _one_line(cp.stdout + cp.stderr), (cp.stdout, cp.stderr)


def _port_free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_defaults_host_port_and_client_session():
    # "[--host 127.0.0.1] [--port 8080]" and the client's defaults: the text's session verbatim.
    require_available("threads")
    if not _port_free(8080):
        pytest.skip("port 8080 is in use on this machine (environment, not the implementation)")
    srv = start_server("threads", protocol=None, host=None, port=None)
    try:
        assert srv.ready_line == "listening on 127.0.0.1:8080 model=threads protocol=upper", srv.ready_line
        cp = run_cli(["client"], input="hello\nstraße\n".encode(), timeout=20)
        assert cp.returncode == 0, cp.stderr
        assert _is_subsequence(["HELLO", "STRASSE"], _lines(cp.stdout)), cp.stdout
    finally:
        srv.stop()
