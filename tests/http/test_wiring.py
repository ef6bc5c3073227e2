"""How --protocol http is wired: the optional dependency, the options, the state."""

from __future__ import annotations

import subprocess
import sys

from iomodels import protocols
from iomodels.cli import build_parser
from iomodels.core.server import ServerConfig, ServerState
from iomodels.protocols.http import HttpProtocol

BLOCK_HTTPTOOLS = "import sys; sys.modules['httptools'] = None; "


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_importing_protocols_does_not_import_httptools() -> None:
    out = run_python("import sys, iomodels.protocols, iomodels.cli; print('httptools' in sys.modules)")
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_serve_without_httptools_names_the_extra() -> None:
    code = BLOCK_HTTPTOOLS + (
        "from iomodels.cli import main; "
        "sys.exit(main(['serve', '--model', 'epoll', '--protocol', 'http', '--port', '0']))"
    )
    out = run_python(code)
    assert out.returncode == 2
    assert "pip install 'iomodels[http]'" in out.stderr and "Traceback" not in out.stderr
    # The other protocols do not care.
    out = run_python(BLOCK_HTTPTOOLS + "from iomodels import protocols; print(protocols.resolve('echo'))")
    assert out.returncode == 0, out.stderr


def test_serve_options_reach_the_protocol() -> None:
    args = build_parser().parse_args(
        ["serve", "--model", "epoll", "--protocol", "http", "--keepalive-timeout", "2.5",
         "--header-timeout", "7", "--max-body", "1234", "--min-body-rate", "0"]
    )  # fmt: skip
    assert (args.keepalive_timeout, args.header_timeout, args.max_body, args.min_body_rate) == (
        2.5,
        7,
        1234,
        0,
    )
    config = ServerConfig(
        model="epoll",
        protocol="http",
        http_keepalive_timeout_s=2.5,
        http_header_timeout_s=7.0,
        http_max_body=1234,
        http_min_body_rate=0.0,
    )
    state = ServerState("epoll", "http")
    factory = protocols.resolve("http", state=state, config=config)
    proto = factory()
    assert isinstance(proto, HttpProtocol)
    settings = proto.settings
    assert settings is factory().settings  # one settings object per server
    assert (settings.model, settings.keepalive_timeout_s) == ("epoll", 2.5)
    assert (settings.limits.header_timeout_s, settings.limits.max_body, settings.limits.min_body_rate) == (
        7.0,
        1234,
        0.0,
    )
    assert not settings.stopping()
    state.stopping = True
    assert settings.stopping()


def test_resolve_without_state_serves_an_unknown_model() -> None:
    proto = protocols.resolve("http")()
    assert proto.settings.model == "unknown" and not proto.settings.stopping()
    assert "http" in protocols.names()
