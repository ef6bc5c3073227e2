"""Rendering a results document: terminal tables, PNG charts, one report.html.

Everything here reads only the results document (results.json), never a
live run, so a report can be rebuilt from a saved file (``iomodels compare
--render results.json``) and tested from a small fixture.

Charts use matplotlib's Agg backend (no display), selected before pyplot is
imported.  report.html is self-contained: the PNGs are inlined as base64,
no script, no external stylesheet, so it can be mailed or archived as one
file.  Skipped and failed cells appear in every table with their reason;
the charts simply have no point for them (a gap, never a made-up value).
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

# ----------------------------------------------------------------------
# tables (shared by the terminal and the HTML)

GRID_COLUMNS = [
    ("model", "model"),
    ("conns", "connections"),
    ("req/s", "req_per_s"),
    ("MiB/s", "mib_per_s"),
    ("srv µs/req", "srv_us_per_req"),
    ("srv CPU%", "srv_cpu_pct"),
    ("p50 µs", "p50_us"),
    ("p90 µs", "p90_us"),
    ("p99 µs", "p99_us"),
    ("p99.9 µs", "p99.9_us"),
    ("max µs", "max_us"),
    ("errors", "errors_total"),
    ("RSS MiB", "srv_rss_mib"),
    ("PSS MiB", "srv_pss_mib"),
    ("threads", "srv_threads"),
    ("fds", "srv_fds"),
    ("gen CPU%", "gen_cpu_pct"),
    ("noise%", "noise_cpu_pct"),
    ("note", "note"),
]
IDLE_COLUMNS = [(h, k) if k != "connections" else ("active+idle", "active_idle") for h, k in GRID_COLUMNS]
TERMINAL_KEYS = {
    "model",
    "connections",
    "active_idle",
    "req_per_s",
    "srv_us_per_req",
    "p50_us",
    "p99_us",
    "p99.9_us",
    "errors_total",
    "srv_rss_mib",
    "srv_threads",
    "srv_fds",
    "noise_cpu_pct",
    "note",
}


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if key in ("req_per_s",) or (key.endswith("_us") and value >= 100):
            return f"{value:.0f}"
        if key.endswith("_pct") or key in ("srv_rss_mib", "srv_pss_mib", "srv_threads", "srv_fds"):
            return f"{value:.0f}"
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return str(value)


def table_rows(summary: list[dict[str, Any]], kind: str) -> tuple[list[str], list[list[str]]]:
    """Header and string rows of the summary table of one kind ('grid' or 'idle')."""
    columns = GRID_COLUMNS if kind == "grid" else IDLE_COLUMNS
    rows = []
    for row in summary:
        if row["kind"] != kind:
            continue
        flat = dict(row)
        flat.update(row.get("latency") or {})
        flat["active_idle"] = f"{row['connections']}+{row['idle']}"
        if row["status"] != "ok":
            cells = [
                _fmt(k, flat.get(k)) if k in ("model", "connections", "active_idle") else "-"
                for _, k in columns
            ]
            cells[-1] = f"{row['status'].upper()}: {row.get('reason', '')}"
        else:
            cells = [_fmt(k, flat.get(k)) for _, k in columns]
        rows.append(cells)
    return [h for h, _ in columns], rows


def terminal_tables(doc: dict[str, Any], console: Any) -> None:
    """The tables for a terminal (rich), fewer columns than the HTML."""
    from rich.table import Table

    for kind, title in (("grid", "echo, by connections"), ("idle", "echo, 10 active + N idle connections")):
        head, rows = table_rows(doc["summary"], kind)
        if not rows:
            continue
        columns = GRID_COLUMNS if kind == "grid" else IDLE_COLUMNS
        keep = [i for i, (_, k) in enumerate(columns) if k in TERMINAL_KEYS]
        msize = doc["settings"].get("msize")
        table = Table(title=f"{title}, {msize} B messages", show_lines=False, header_style="bold")
        for i in keep:
            justify = "left" if columns[i][1] in ("model", "note") else "right"
            table.add_column(head[i], justify=justify, overflow="fold")
        previous = None
        for r in rows:
            if previous is not None and r[0] != previous:
                table.add_section()
            previous = r[0]
            table.add_row(*(r[i] for i in keep))
        console.print(table)


def text_tables(doc: dict[str, Any]) -> str:
    """Plain-text tables (for logs and tests)."""
    out = []
    for kind in ("grid", "idle"):
        head, rows = table_rows(doc["summary"], kind)
        if not rows:
            continue
        widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=False)]
        out.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=False)).rstrip())
        for r in rows:
            out.append("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=False)).rstrip())
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------
# charts


def _ok_rows(doc: dict[str, Any], kind: str) -> dict[str, list[dict[str, Any]]]:
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in doc["summary"]:
        if row["kind"] == kind and row["status"] == "ok":
            by_model.setdefault(row["model"], []).append(row)
    return by_model


def _styles(names: list[str]) -> dict[str, dict[str, Any]]:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    markers = "osD^v<>ph*XP"
    return {
        n: {"color": cmap(i % 20), "marker": markers[i % len(markers)]} for i, n in enumerate(sorted(names))
    }


def charts(doc: dict[str, Any], out_dir: Path) -> list[tuple[str, str]]:
    """Write the PNG charts; return (title, file name) of each one written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _pos: f"{v:g}")  # 1000, not 10^3

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, str]] = []
    grid = _ok_rows(doc, "grid")
    idle = _ok_rows(doc, "idle")
    styles = _styles(list({*grid, *idle}))
    msize = doc["settings"].get("msize")

    def save(fig: Any, name: str, title: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        written.append((title, name))

    for key, label, name, title in (
        ("req_per_s", "requests/s", "throughput.png", "Requests per second vs connections"),
        ("srv_us_per_req", "server CPU µs per request", "cpu_per_request.png", "Server CPU per request"),
    ):
        if not grid:
            break
        fig, ax = plt.subplots(figsize=(9, 5.5))
        for model, rows in sorted(grid.items()):
            pts = sorted((r["connections"], r[key]) for r in rows if r.get(key) is not None)
            if pts:
                ax.plot(*zip(*pts, strict=False), label=model, **styles[model])
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plain)
        if key == "srv_us_per_req":
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plain)
        ax.set_xlabel("active connections (log)")
        ax.set_ylabel(label)
        ax.set_title(f"{title} (echo, {msize} B)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small", ncol=2)
        save(fig, name, title)

    if grid:
        conns = sorted({r["connections"] for rows in grid.values() for r in rows})
        ncols = min(2, len(conns))
        nrows = math.ceil(len(conns) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols, 4 * nrows), squeeze=False)
        labels = ["p50", "p90", "p99", "p99.9", "max"]
        keys = ["p50_us", "p90_us", "p99_us", "p99.9_us", "max_us"]
        for ax, c in zip(axes.flat, conns, strict=False):
            for model, rows in sorted(grid.items()):
                for r in rows:
                    lat = r.get("latency") or {}
                    if r["connections"] == c and lat.get("count"):
                        ax.plot(labels, [max(1, lat[k]) for k in keys], label=model, **styles[model])
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plain)
            ax.set_title(f"{c} connection(s)")
            ax.set_ylabel("latency µs (log)")
            ax.grid(True, which="both", alpha=0.3)
        for ax in list(axes.flat)[len(conns) :]:
            ax.axis("off")
        axes.flat[0].legend(fontsize="x-small", ncol=2)
        fig.suptitle(f"Latency percentiles (echo, {msize} B, closed loop)")
        save(fig, "latency.png", "Latency percentiles")

    if idle:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
        for model, rows in sorted(idle.items()):
            pts = sorted((r["idle"], r.get("srv_us_per_req")) for r in rows if r.get("srv_us_per_req"))
            if pts:
                ax1.plot(*zip(*pts, strict=False), label=model, **styles[model])
            mem = sorted(
                (r["idle"], r.get("srv_pss_mib") or r.get("srv_rss_mib"))
                for r in rows
                if r.get("srv_pss_mib") or r.get("srv_rss_mib")
            )
            if mem:
                ax2.plot(*zip(*mem, strict=False), label=model, **styles[model])
        sweep = sorted({r["idle"] for rows in idle.values() for r in rows})
        for ax in (ax1, ax2):
            ax.set_xscale("symlog", linthresh=100)  # log x, with 0 idle still on the axis
            ax.set_xticks(sweep)
            ax.xaxis.set_major_formatter(plain)
            ax.set_xlabel("idle connections (log; 0 included)")
            ax.grid(True, which="both", alpha=0.3)
        ax1.set_yscale("log")  # nonblocking's rescan of every socket dwarfs the rest otherwise
        ax1.yaxis.set_major_formatter(plain)
        ax1.set_ylabel("server CPU µs per request, 10 active (log)")
        ax2.set_ylabel("server memory MiB (PSS of the process group)")
        ax1.legend(fontsize="small")
        fig.suptitle("Cost of idle connections")
        save(fig, "idle_cost.png", "Cost vs idle connections")
    return written


# ----------------------------------------------------------------------
# report.html

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f0f0f0; }
td.l, th.l { text-align: left; }
tr.skip td { color: #888; }
code, pre { background: #f6f6f6; padding: 2px 4px; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
"""


def _html_table(head: list[str], rows: list[list[str]], left: set[int]) -> str:
    def cls(i: int) -> str:
        return ' class="l"' if i in left else ""

    out = [
        "<table><tr>" + "".join(f"<th{cls(i)}>{html.escape(h)}</th>" for i, h in enumerate(head)) + "</tr>"
    ]
    for r in rows:
        skip = r[-1].startswith(("SKIPPED", "ERROR"))
        out.append(
            ("<tr class='skip'>" if skip else "<tr>")
            + "".join(f"<td{cls(i)}>{html.escape(x)}</td>" for i, x in enumerate(r))
            + "</tr>"
        )
    out.append("</table>")
    return "\n".join(out)


def _kv_table(d: dict[str, Any]) -> str:
    rows = [[str(k), json.dumps(v) if isinstance(v, list | dict) else str(v)] for k, v in d.items()]
    return _html_table(["", ""], rows, {0, 1})


def report_html(doc: dict[str, Any], out_dir: Path, written: list[tuple[str, str]]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>iomodels compare</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>iomodels compare</h1>",
        f"<p>Command: <code>{html.escape(doc.get('command', ''))}</code><br>",
        f"Generated {html.escape(str(doc.get('generated', '')))} in {doc.get('elapsed_s', '?')} s.</p>",
        "<p>Every model serves <code>echo</code> on loopback, pinned to one CPU; the load generator "
        "(closed loop: each connection sends its next request when the reply is complete) runs on the "
        "others. <b>Server CPU µs per request</b> is the figure that survives a noisy machine; req/s "
        "and latency depend on what else runs. <i>noise%</i> is CPU used by other processes during "
        "the window, in % of one CPU; noisy cells were measured again once. Latency percentiles come "
        "from HDR histograms (3 significant digits) added over repeats.</p>",
    ]
    for title, name in written:
        data = base64.b64encode((out_dir / name).read_bytes()).decode("ascii")
        alt = html.escape(title)
        parts.append(f"<h2>{alt}</h2><img alt='{alt}' src='data:image/png;base64,{data}'>")
    for kind, title in (("grid", "By connections"), ("idle", "Idle connections (10 active + N idle)")):
        head, rows = table_rows(doc["summary"], kind)
        if rows:
            parts.append(f"<h2>{title}</h2>")
            parts.append(_html_table(head, rows, {0, len(head) - 1}))
    parts.append("<h2>Machine</h2>" + _kv_table(doc.get("machine", {})))
    parts.append("<h2>Versions</h2>" + _kv_table(doc.get("versions", {})))
    parts.append("<h2>Settings</h2>" + _kv_table(doc.get("settings", {})))
    parts.append("</body></html>")
    return "\n".join(parts)


def render(doc: dict[str, Any], out_dir: Path) -> Path:
    """Charts and report.html into ``out_dir``; the path of report.html."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = charts(doc, out_dir)
    path = out_dir / "report.html"
    path.write_text(report_html(doc, out_dir, written), encoding="utf-8")
    return path
