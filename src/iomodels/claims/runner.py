"""``iomodels claims``: run the experiments, print the verdicts, write the report.

Each experiment runs in this process under a time limit (Lab.time_limit:
SIGALRM), one after the other, so they never load the machine at the same
time.  An experiment that fails or runs out of time is reported as "not
measurable" with what happened, never with a guessed verdict.  Each measured
experiment repeats itself ``--repeats`` times (3 with --quick, else 5):
lab.py's ``Lab.interleave``.
"""

from __future__ import annotations

import shlex
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from iomodels.claims import registry, render
from iomodels.claims.base import NOT_MEASURABLE, NotMeasurable, Verdict
from iomodels.claims.lab import FULL_REPEATS, QUICK_REPEATS, ClaimTimeout, Lab
from iomodels.harness import ArgParser

DEFAULT_BUDGET_S = (90.0, 300.0)  # per claim (quick, full) unless the module sets BUDGET_S


def build_parser() -> ArgParser:
    parser = ArgParser(
        prog="iomodels claims",
        description="Check the seed's claims: one experiment, verdict and figure per claim, on loopback.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (the whole run in a few minutes)")
    parser.add_argument("--only", metavar="ID[,ID]", help="run only these claims (see --list)")
    parser.add_argument(
        "--out", default="claims-report", type=Path, help="output directory (default ./claims-report)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        metavar="N",
        help=f"repeats of each measured experiment, interleaved across its models "
        f"(default {QUICK_REPEATS} with --quick, else {FULL_REPEATS})",
    )
    parser.add_argument("--list", action="store_true", help="list the claims and exit")
    return parser


def select_claims(only: str | None) -> list[ModuleType]:
    claims = registry.claims()
    if not only:
        return claims
    wanted = [x.strip() for x in only.split(",") if x.strip()]
    known = {c.ID for c in claims}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ValueError(f"unknown claim {', '.join(unknown)}; choose from {', '.join(c.ID for c in claims)}")
    return [c for c in claims if c.ID in wanted]


def run_one(claim: ModuleType, lab: Lab, quick: bool) -> dict[str, Any]:
    """Run one claim's experiment and verdict; never raises (but KeyboardInterrupt)."""
    budget = getattr(claim, "BUDGET_S", DEFAULT_BUDGET_S)[0 if quick else 1]
    t0 = time.monotonic()
    error = None
    try:
        with lab.time_limit(budget):
            numbers = claim.run(lab, quick)
    except NotMeasurable as exc:
        numbers = {"not_measurable": str(exc)}
    except ClaimTimeout as exc:
        numbers = {"not_measurable": f"the experiment {exc}"}
        error = str(exc)
    except Exception as exc:
        error = "".join(traceback.format_exception(exc))
        numbers = {"not_measurable": f"the experiment failed: {type(exc).__name__}: {exc}"}
    elapsed = time.monotonic() - t0
    try:
        v = claim.verdict(numbers)
    except Exception as exc:  # a verdict bug must not hide the numbers
        v = Verdict(NOT_MEASURABLE, "-", f"verdict failed: {type(exc).__name__}: {exc}")
    return {
        "id": claim.ID,
        "title": claim.TITLE,
        "quote_zh": claim.QUOTE_ZH,
        "quote_en": claim.QUOTE_EN,
        "measures": claim.MEASURES,
        "verdict": v.verdict,
        "key_figure": v.key_figure,
        "explanation": v.explanation,
        "margin": v.margin,
        "numbers": numbers,
        "elapsed_s": round(elapsed, 1),
        "budget_s": budget,
        "error": error,
        "figures": [],
    }


def draw(claim: ModuleType, result: dict[str, Any], out_dir: Path) -> None:
    fig = getattr(claim, "figure", None)
    if fig is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    path = out_dir / f"claim-{claim.ID}.png"
    try:
        made = fig(result["numbers"], path)
    except Exception as exc:
        result["figure_error"] = f"{type(exc).__name__}: {exc}"
        return
    if made is True:
        result["figures"].append(path.name)
    elif isinstance(made, list):  # several figures
        result["figures"].extend(Path(p).name for p in made)


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        claims = select_claims(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    repeats = args.repeats if args.repeats is not None else QUICK_REPEATS if args.quick else FULL_REPEATS
    if repeats < 1:
        parser.error(f"--repeats must be at least 1, not {repeats}")
    if args.list:
        for c in claims:
            print(f"{c.ID:>3}  {c.TITLE}")
        return 0
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    command = "iomodels claims " + shlex.join(argv) if argv else "iomodels claims"
    started = time.monotonic()
    machine = render.machine_info()
    results = []
    with Progress(
        TextColumn("[bold]{task.fields[claim]:>4}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        # no refresh thread: c10's HeavyClient forks from this process, and a fork
        # while another thread holds a lock can leave the child stuck (the load
        # generator's workers come from a fork server, loadgen/runner.py)
        auto_refresh=False,
    ) as progress:
        task = progress.add_task("", total=len(claims), claim="")

        def step(desc: str) -> None:
            progress.update(task, description=desc)
            progress.refresh()

        lab = Lab(out_dir, progress=step, repeats=repeats)
        interrupted = False
        try:
            for claim in claims:
                progress.update(task, claim=claim.ID, description=claim.TITLE)
                progress.refresh()
                result = run_one(claim, lab, args.quick)
                draw(claim, result, out_dir)
                results.append(result)
                progress.advance(task)
        except KeyboardInterrupt:  # every server is already stopped (finally blocks): report what ran
            interrupted = True
    elapsed = time.monotonic() - started
    doc = render.document(
        results, command=command, quick=args.quick, elapsed_s=elapsed, machine=machine, repeats=repeats
    )
    doc["invoked_as"] = shlex.join(getattr(sys, "orig_argv", sys.argv))
    doc["interrupted"] = interrupted
    render.write(doc, out_dir)
    print_table(doc, console=Console())
    print(
        f"wrote {out_dir / 'claims.html'}, claims.json and {sum(len(r['figures']) for r in results)} figures "
        f"in {elapsed:.0f} s" + (" (interrupted)" if interrupted else "")
    )
    return 130 if interrupted else 0


def print_table(doc: dict[str, Any], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"claims on {doc['machine'].get('summary', '')}, {doc.get('repeats', 1)} repeats")
    for col in ("claim", "verdict", "key figure (median, min..max of repeats)", "margin"):
        table.add_column(col, overflow="fold")
    colour = {"holds": "green", "partly": "yellow", "does not hold": "red", "undecided": "magenta"}
    for r in doc["results"]:
        v = r["verdict"]
        table.add_row(
            f"{r['id']} {r['title']}",
            f"[{colour.get(v, 'dim')}]{v}[/]",
            r["key_figure"],
            r.get("margin", ""),
        )
    console.print(table)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
