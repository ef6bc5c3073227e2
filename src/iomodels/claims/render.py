"""claims.json and one self-contained claims.html (figures inlined as base64)."""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

from iomodels.harness import machine, versions
from iomodels.harness.machine import summary

SCHEMA = 1
COLOURS = {
    "holds": "#1e8449",
    "partly": "#b7950b",
    "does not hold": "#c0392b",
    "undecided": "#8e44ad",
    "not measurable": "#7f8c8d",
}


def machine_info() -> dict[str, Any]:
    info = machine()
    info["versions"] = versions()
    info["summary"] = summary(info)
    return info


def document(
    results: list[dict[str, Any]],
    command: str,
    quick: bool,
    elapsed_s: float,
    machine: dict[str, Any],
    repeats: int = 1,
) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    return {
        "schema": SCHEMA,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "quick": quick,
        "repeats": repeats,
        "elapsed_s": round(elapsed_s, 1),
        "machine": machine,
        "verdict_counts": counts,
        "results": results,
    }


def write(doc: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "claims.json"
    json_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    html_path = out_dir / "claims.html"
    html_path.write_text(to_html(doc, out_dir), encoding="utf-8")
    return json_path, html_path


def _img(path: Path) -> str:
    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return f"<p class=missing>figure {html.escape(path.name)} is missing</p>"
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def to_html(doc: dict[str, Any], out_dir: Path) -> str:
    e = html.escape
    m = doc["machine"]
    rows = []
    for r in doc["results"]:
        colour = COLOURS.get(r["verdict"], "#333")
        rows.append(
            f"<tr><td><a href='#c{e(r['id'])}'>{e(r['id'])}</a> {e(r['title'])}</td>"
            f"<td>{e(r['measures'])}</td>"
            f"<td style='color:{colour};font-weight:bold'>{e(r['verdict'])}</td>"
            f"<td>{e(r['key_figure'])}</td><td>{e(r.get('margin', ''))}</td></tr>"
        )
    sections = []
    for r in doc["results"]:
        colour = COLOURS.get(r["verdict"], "#333")
        figs = "".join(_img(out_dir / name) for name in r.get("figures", []))
        # raw syscall timelines (claim D) stay in claims.json: the figures show them
        shown = {k: v for k, v in r["numbers"].items() if k != "traces"}
        numbers = json.dumps(shown, indent=1, ensure_ascii=False, default=str)
        err = (
            f"<details><summary>error</summary><pre>{e(r['error'])}</pre></details>" if r.get("error") else ""
        )
        sections.append(
            f"<section id='c{e(r['id'])}'><h2>{e(r['id'])}. {e(r['title'])}</h2>"
            f"<blockquote lang='zh'>{e(r['quote_zh'])}</blockquote>"
            f"<blockquote lang='en'>{e(r['quote_en'])}</blockquote>"
            f"<p><b>Measured:</b> {e(r['measures'])}</p>"
            f"<p><b>Verdict:</b> <span style='color:{colour};font-weight:bold'>{e(r['verdict'])}</span>"
            f" &mdash; {e(r['key_figure'])}</p>"
            + (f"<p><b>Margin:</b> {e(r['margin'])}</p>" if r.get("margin") else "")
            + f"<p>{e(r['explanation'])}</p>{figs}"
            f"<details><summary>numbers ({r['elapsed_s']} s of a {r['budget_s']:.0f} s budget)</summary>"
            f"<pre>{e(numbers)}</pre></details>{err}</section>"
        )
    quick = " (quick sizes)" if doc.get("quick") else ""
    invoked = f"<br>run as <code>{e(doc['invoked_as'])}</code>" if doc.get("invoked_as") else ""
    if doc.get("interrupted"):
        quick += " <b>interrupted: only the claims listed below ran</b>"
    versions_ = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>iomodels: the seed's claims, checked</title>
<style>
body {{ font-family: sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em; line-height: 1.4 }}
table {{ border-collapse: collapse }}
td, th {{ border: 1px solid #ccc; padding: .3em .6em; vertical-align: top }}
blockquote {{ border-left: 4px solid #ccc; margin: .5em 0; padding: .2em 1em; color: #444 }}
img {{ max-width: 100%; display: block; margin: .5em 0 }}
pre {{ background: #f6f6f6; padding: .5em; overflow-x: auto }}
section {{ border-top: 1px solid #ddd; margin-top: 2em }}
</style></head><body>
<h1>The seed's claims, checked on this machine</h1>
<p>Each claim of the teaching text is turned into an experiment on the real servers (loopback
only), and the verdict follows from the numbers by thresholds written next to it in
<code>src/iomodels/claims/</code>. A claim that could not run here says why.</p>
<p>Each measured experiment ran {doc.get("repeats", 1)} time(s), interleaved across the models
it compares. Figures are medians, written "median (min..max)"; the figures draw every repeat. A
difference smaller than the spread of the repeats is not a difference: two figures differ only
when every repeat of one is clear of every repeat of the other and their medians are further
apart than the spread (the range of the repeats without the one farthest from the median). A
verdict that would hinge on a comparison inside the noise is <b>undecided</b> on this machine;
the margin column gives the closest comparison a verdict rests on.</p>
<h3>Machine</h3>
<table>
<tr><th>CPUs (nproc)</th><td>{e(str(m.get("nproc")))}</td></tr>
<tr><th>CPU model</th><td>{e(str(m.get("cpu_model") or "unknown"))}</td></tr>
<tr><th>kernel</th><td>{e(str(m.get("kernel")))} ({e(str(m.get("os")))})</td></tr>
<tr><th>Python</th><td>{e(str(m.get("python")))} {e(str(m.get("python_impl", "")))}</td></tr>
<tr><th>memory</th><td>{e(str(m.get("mem_total_mib")))} MiB</td></tr>
<tr><th>load average at start</th><td>{e(str(m.get("loadavg_at_start")))} (a shared machine: other
people's work runs at the same time)</td></tr>
<tr><th>versions</th><td>{e(versions_)}</td></tr>
<tr><th>command</th><td><code>{e(doc["command"])}</code>{quick}{invoked}</td></tr>
<tr><th>generated</th><td>{e(doc["generated"])}, in {doc["elapsed_s"]} s</td></tr>
</table>
<h3>Verdicts</h3>
<table><tr><th>claim</th><th>what was measured</th><th>verdict</th><th>key figure</th><th>margin</th></tr>
{"".join(rows)}
</table>
{"".join(sections)}
</body></html>
"""
