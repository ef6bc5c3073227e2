"""The command line: argument parsing and one library call per subcommand.

No sockets here: ``serve`` calls serve.run, ``client`` calls client.main,
``models`` reads the registry.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from iomodels import __version__, models
from iomodels.core.errors import IOModelsError
from iomodels.harness.cli import EXIT_USAGE, ArgParser
from iomodels.harness.cli import at_least as _at_least
from iomodels.protocols import names as protocol_names


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, not {value}")
    return value


def _protocol(text: str) -> str:
    if text not in protocol_names() and ":" not in text:
        raise argparse.ArgumentTypeError(
            f"unknown protocol {text!r}; choose from {', '.join(protocol_names())} or MODULE:CALLABLE"
        )
    return text


def parse_workers(text: str) -> int:
    """--workers: N >= 1, or 'auto' (the CPUs this process may run on)."""
    if text == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers takes a number or 'auto', not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--workers must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgParser(
        prog="iomodels",
        description="The IO models of Unix network programming as real Python servers.",
    )
    parser.add_argument("--version", action="version", version=f"iomodels {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgParser)

    serve = sub.add_parser(
        "serve",
        help="run a server on one IO model",
        description="Serve a protocol on one IO model until SIGINT/SIGTERM. When ready, prints "
        "exactly one line on stdout: 'listening on HOST:PORT model=MODEL protocol=PROTOCOL'. "
        "Logs go to stderr.",
    )
    serve.add_argument(
        "--model",
        required=True,
        choices=models.names(),
        metavar="MODEL",
        help="one of: " + ", ".join(models.names()) + " (see 'iomodels models')",
    )
    serve.add_argument(
        "--protocol",
        default="upper",
        type=_protocol,
        help="upper (default), echo, http (HTTP/1.1, needs the [http] extra; docs/http.md), "
        "or MODULE:CALLABLE for a protocol of your own",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; ::1 for IPv6)"
    )
    serve.add_argument("--port", type=_port, default=8080, help="port (default 8080; 0 picks a free one)")
    serve.add_argument(
        "--threads", type=_at_least(1), default=8, help="worker threads of the threadpool model (default 8)"
    )
    serve.add_argument("--backlog", type=_at_least(1), default=2048, help="listen backlog (default 2048)")
    serve.add_argument(
        "--max-connections",
        type=_at_least(0),
        default=0,
        metavar="N",
        help="serve at most N connections at once; connections beyond it are accepted "
        "and closed at once (default 0: unlimited)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=_at_least(0, float),
        default=0.0,
        metavar="SECONDS",
        help="close a connection with no progress for this long (default 0: never)",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=_at_least(0, float),
        default=5.0,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, flush pending output for at most this long, then close "
        "everything and exit 0 (default 5); a second signal exits at once",
    )
    serve.add_argument(
        "--poll-interval",
        type=_at_least(0, float),
        default=0.0,
        metavar="SECONDS",
        help="nonblocking model only: sleep between sweeps, the seed's time.sleep() "
        "(default 0: busy-poll a whole CPU)",
    )
    serve.add_argument(
        "--offload-workers",
        type=_at_least(1),
        default=4,
        metavar="N",
        help="threads behind transport.run_in_worker(), started on first use (default 4)",
    )
    serve.add_argument(
        "--sigio-classic",
        action="store_true",
        help="sigio model only: plain SIGIO, which does not say which socket is ready, so every "
        "signal rescans every connection (the seed's description); default: a realtime signal "
        "carrying the descriptor",
    )
    serve.add_argument(
        "--uring-sends",
        choices=["quick", "plain"],
        default="quick",
        help="io_uring model only: 'quick' sends post a completion only when they fail or fall "
        "short (IOSQE_CQE_SKIP_SUCCESS + MSG_DONTWAIT), where the kernel allows it; 'plain': "
        "every send posts one (default quick)",
    )
    workers = serve.add_argument_group("worker processes (see docs/workers.md)")
    workers.add_argument(
        "--workers",
        type=parse_workers,
        default=0,
        metavar="N",
        help="a supervisor process and N worker processes, each running the model; 'auto': one per "
        "CPU (default: one process, no supervisor). SIGHUP: rolling reload; SIGTTIN/SIGTTOU: a worker "
        "more/less",
    )
    workers.add_argument(
        "--shared-listener",
        action="store_true",
        help="with --workers: one listening socket inherited by every worker (default: one "
        "SO_REUSEPORT socket per worker)",
    )
    workers.add_argument(
        "--drain-delay",
        type=_at_least(0, float),
        default=0.0,
        metavar="SECONDS",
        help="with --workers: on SIGTERM, /health answers 503 at once but the workers go on "
        "accepting and serving this long before they stop accepting and drain (default 0)",
    )
    http = serve.add_argument_group("--protocol http (see docs/http.md)")
    http.add_argument(
        "--keepalive-timeout",
        type=_at_least(0.001, float),
        default=5.0,
        metavar="SECONDS",
        help="close a keep-alive connection idle between requests for this long (default 5)",
    )
    http.add_argument(
        "--header-timeout",
        type=_at_least(0.001, float),
        default=10.0,
        metavar="SECONDS",
        help="a request head must be complete this long after its first byte, and a body may "
        "not stall longer (default 10)",
    )
    http.add_argument(
        "--max-body",
        type=_at_least(0),
        default=1024**3,
        metavar="BYTES",
        help="larger request bodies get 413 (default 1073741824, 1 GiB)",
    )
    http.add_argument(
        "--min-body-rate",
        type=_at_least(0, float),
        default=240.0,
        metavar="BYTES_PER_S",
        help="a request body slower than this after a 5 s grace is cut with 408 (default 240; 0: off)",
    )
    http.add_argument(
        "--app",
        default="",
        metavar="MODULE:CALLABLE",
        help="serve this WSGI (PEP 3333) application on every path: on the connection's own "
        "thread in the blocking models, on the --offload-workers pool in the event-loop ones",
    )
    http.add_argument(
        "--app-inline",
        action="store_true",
        help="run the --app on the event loop's thread (only for apps that never block; the "
        "request body is buffered before the app is called)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    sub.add_parser(
        "models",
        help="list the models and whether each is available here",
        description="List every IO model, whether it can run on this machine and, if not, why.",
    )

    sub.add_parser(
        "bench",
        add_help=False,
        help="load generator for echo/upper servers, ours or not (see 'iomodels bench --help')",
    )
    sub.add_parser(
        "compare",
        add_help=False,
        help="every model under the same load: table, results.json, charts, report.html "
        "(see 'iomodels compare --help')",
    )
    sub.add_parser(
        "claims",
        add_help=False,
        help="check the seed's claims: an experiment, a verdict and a figure each "
        "(see 'iomodels claims --help')",
    )
    sub.add_parser(
        "tour",
        help="run the seed's session against every available model",
        description="For each model: serve, send 'hello\\nstraße\\n' through the client, check the "
        "replies, stop with SIGTERM, check exit 0. Prints a table; exits 1 if any model failed.",
    )

    client = sub.add_parser(
        "client",
        help="the seed's interactive client",
        description="Send each line of stdin, print the replies. With piped stdin: send it all, "
        "half-close, print every reply, exit 0. A refused connection exits 1.",
    )
    client.add_argument("--host", default="127.0.0.1")
    client.add_argument("--port", type=_port, default=8080)
    return parser


def _cmd_models() -> int:
    rows = []
    for name in models.names():
        ok, reason = models.available(name)
        rows.append((name, "yes" if ok else "no", models.describe(name) if ok else reason))
    width = max(len(r[0]) for r in rows)
    print(f"{'model':<{width}}  available  notes")
    for name, ok, note in rows:
        print(f"{name:<{width}}  {ok:<9}  {note}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from iomodels.core.server import ServerConfig, configure_logging
    from iomodels.serve import run

    configure_logging(getattr(logging, args.log_level.upper()))
    if not args.workers and (args.shared_listener or args.drain_delay):
        sys.stderr.write("iomodels serve: error: --shared-listener and --drain-delay need --workers\n")
        return EXIT_USAGE
    ok, reason = models.available(args.model)
    if not ok:
        sys.stderr.write(f"iomodels serve: error: model {args.model!r} is not available here: {reason}\n")
        return EXIT_USAGE
    config = ServerConfig(
        model=args.model,
        protocol=args.protocol,
        host=args.host,
        port=args.port,
        threads=args.threads,
        backlog=args.backlog,
        max_connections=args.max_connections,
        idle_timeout_s=args.idle_timeout,
        graceful_timeout_s=args.graceful_timeout,
        poll_interval_s=args.poll_interval,
        sigio_classic=args.sigio_classic,
        uring_quick_sends=args.uring_sends == "quick",
        offload_workers=args.offload_workers,
        workers=args.workers,
        shared_listener=args.shared_listener,
        drain_delay_s=args.drain_delay,
        http_keepalive_timeout_s=args.keepalive_timeout,
        http_header_timeout_s=args.header_timeout,
        http_max_body=args.max_body,
        http_min_body_rate=args.min_body_rate,
        http_app=args.app,
        http_app_inline=args.app_inline,
    )
    if (args.app or args.app_inline) and args.protocol != "http":
        sys.stderr.write("iomodels serve: error: --app and --app-inline need --protocol http\n")
        return EXIT_USAGE
    if args.app_inline and not args.app:
        sys.stderr.write("iomodels serve: error: --app-inline needs --app MODULE:CALLABLE\n")
        return EXIT_USAGE
    try:
        return run(config)
    except IOModelsError as exc:
        sys.stderr.write(f"iomodels serve: error: {exc}\n")
        return EXIT_USAGE
    except OSError as exc:  # bind: address in use, permission, bad address
        sys.stderr.write(
            f"iomodels serve: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n"
        )
        return 1


# Subcommands with parsers of their own (wrk-style flags such as -c 10 that
# argparse.REMAINDER would refuse): the rest of the line is handed over as is.
_DELEGATED = {
    "bench": "iomodels.loadgen",
    "compare": "iomodels.compare",
    "claims": "iomodels.claims",
}


def _delegate(command: str, argv: list[str]) -> int:
    import importlib

    try:
        module = importlib.import_module(_DELEGATED[command])
    except ImportError as exc:
        sys.stderr.write(
            f"iomodels {command}: error: {exc.name or exc} is not installed; "
            "pip install 'iomodels[measure]'\n"
        )
        return EXIT_USAGE
    return module.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in _DELEGATED:
        return _delegate(argv[0], argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the subcommand, as its other errors are: "iomodels serve: error: ..."
        subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        subcommands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "serve":
        return _cmd_serve(args)
    if args.command == "models":
        return _cmd_models()
    if args.command == "tour":
        from iomodels import tour

        return tour.main()
    if args.command == "client":
        from iomodels import client

        return client.main(args.host, args.port)
    raise AssertionError(args.command)
