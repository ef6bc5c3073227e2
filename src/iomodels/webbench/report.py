"""What ``iomodels compare --protocol http`` writes: results.json, table.txt, charts.

The JSON keeps every cell of every repeat (wrk's figures and the server's
CPU), the summary rows and the machine; the charts draw the summary: server
CPU per request and throughput against connections, one line per server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from iomodels.webbench.runner import SCHEMA, HttpSettings, table


def write(out_dir: Path, settings: HttpSettings, cells: list[dict[str, Any]], rows: list[dict[str, Any]],
          machine: dict[str, Any]) -> list[Path]:  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"schema": SCHEMA, "kind": "http", "settings": settings.__dict__, "machine": machine,
           "summary": rows, "cells": cells}  # fmt: skip
    written = [out_dir / "results.json", out_dir / "table.txt"]
    written[0].write_text(json.dumps(doc, indent=1, default=str) + "\n")
    written[1].write_text(table(rows) + "\n")
    try:
        written += charts(out_dir, rows)
    except ImportError:  # matplotlib is in the [measure] extra
        pass
    return written


def charts(out_dir: Path, rows: list[dict[str, Any]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = sorted({r["target"] for r in rows if "rps" in r})
    paths = []
    for key, label, name in (
        ("cpu_us_per_req", "server CPU µs per request (lower is better)", "http_cpu.png"),
        ("rps", "requests per second (wrk)", "http_rps.png"),
        ("p99_us", "p99 latency, µs (wrk)", "http_p99.png"),
    ):
        fig, ax = plt.subplots(figsize=(9, 5.5))
        for target in targets:
            pts = sorted((r["connections"], r[key]) for r in rows if r["target"] == target and key in r)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=target)
        ax.set_xscale("log")
        if key != "rps":
            ax.set_yscale("log")
        ax.set_xlabel("connections (wrk, keep-alive)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
