"""Drawing repeats: the median, its min..max as an error bar, and every repeat as a dot.

A figure that showed only medians would hide the noise the verdicts are
decided against (base.py); these helpers draw all three in one call.
"""

from __future__ import annotations

from collections.abc import Sequence

from iomodels.claims.base import spread

DOT = {"s": 9, "alpha": 0.55, "zorder": 3}


def _bar(s, scale: float) -> tuple[float, float, float]:
    return s.median * scale, (s.median - s.lo) * scale, (s.hi - s.median) * scale


def line(ax, xs: Sequence[float], sample_lists: Sequence[Sequence[float]], label: str, scale: float = 1.0):
    """One series: medians joined by a line, min..max bars, each repeat's point."""
    pts = [(x, spread(vals)) for x, vals in zip(xs, sample_lists, strict=True)]
    pts = [(x, s) for x, s in pts if s is not None]
    if not pts:
        return
    mids = [_bar(s, scale) for _, s in pts]
    container = ax.errorbar(
        [x for x, _ in pts],
        [m for m, _, _ in mids],
        yerr=[[lo for _, lo, _ in mids], [hi for _, _, hi in mids]],
        fmt="o-",
        capsize=3,
        label=label,
    )
    colour = container.lines[0].get_color()
    for x, vals in zip(xs, sample_lists, strict=True):
        ys = [v * scale for v in vals if v is not None]
        ax.scatter([x] * len(ys), ys, color=colour, **DOT)


def bars(
    ax,
    labels: Sequence[str],
    sample_lists: Sequence[Sequence[float]],
    colours: Sequence[str] | str = "#2980b9",
    horizontal: bool = False,
    scale: float = 1.0,
    offset: float = 0.0,
    width: float = 0.8,
    label: str | None = None,
):
    """Bars at the medians, min..max error bars, each repeat's value as a dot."""
    pos = [i + offset for i in range(len(labels))]
    stats = [spread(vals) for vals in sample_lists]
    mids = [_bar(s, scale) if s is not None else (0.0, 0.0, 0.0) for s in stats]
    heights = [m for m, _, _ in mids]
    err = [[lo for _, lo, _ in mids], [hi for _, _, hi in mids]]
    if horizontal:
        ax.barh(pos, heights, height=width, color=colours, xerr=err, capsize=3, label=label)
        ax.set_yticks([i + offset / 2 for i in range(len(labels))], labels)
    else:
        ax.bar(pos, heights, width=width, color=colours, yerr=err, capsize=3, label=label)
        ax.set_xticks([i + offset / 2 for i in range(len(labels))], labels)
    for p, vals in zip(pos, sample_lists, strict=True):
        vs = [v * scale for v in vals if v is not None]
        if horizontal:
            ax.scatter(vs, [p] * len(vs), color="k", **DOT)
        else:
            ax.scatter([p] * len(vs), vs, color="k", **DOT)
