"""Latency histograms: HDR histograms (hdrh) in microseconds, encoded to merge.

Why HDR: percentiles up to p99.9 and the max over millions of requests, in
  fixed memory, with a bounded relative error (3 significant digits here:
  0.1 %), and histograms of separate processes or runs add exactly.
Why microseconds: loopback round trips are tens of microseconds; 1 us
  resolution at the low end, 1 hour at the top (a stalled server must fit).
Why count first: ``HdrHistogram.record_value`` is pure Python (~1 us); a
  window of a million requests has a few thousand distinct microsecond
  values, so ``collections.Counter`` (C speed) then one ``record_value(v, n)``
  per distinct value fills the histogram in milliseconds, after the window.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3600 * 1_000_000  # one hour
SIGNIFICANT_FIGURES = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def from_latencies_ns(latencies_ns: Iterable[int], histogram: HdrHistogram | None = None) -> HdrHistogram:
    """Record latencies given in nanoseconds (as the engine measures them)."""
    histogram = histogram if histogram is not None else new_histogram()
    counts = collections.Counter(ns // 1000 for ns in latencies_ns)
    for us, count in counts.items():
        histogram.record_value(min(max(us, 0), HIGHEST_US), count)
    return histogram


def encode(histogram: HdrHistogram) -> str:
    """The compressed, base64 HdrHistogram V2 blob (what --json carries)."""
    blob = histogram.encode()
    return blob.decode("ascii") if isinstance(blob, bytes) else blob


def decode(blob: str | bytes) -> HdrHistogram:
    return HdrHistogram.decode(blob.encode("ascii") if isinstance(blob, str) else blob)


def merge(blobs: Iterable[str | bytes | HdrHistogram]) -> HdrHistogram:
    """One histogram holding every sample of the given ones (encoded or not)."""
    total = new_histogram()
    for blob in blobs:
        total.add(blob if isinstance(blob, HdrHistogram) else decode(blob))
    return total


def summary(histogram: HdrHistogram) -> dict[str, float | int | None]:
    """p50, p90, p99, p99.9 and max in microseconds (None when empty), and the count."""
    count = histogram.get_total_count()
    out: dict[str, float | int | None] = {"count": count}
    for p in PERCENTILES:
        out[f"p{p:g}_us"] = histogram.get_value_at_percentile(p) if count else None
    out["max_us"] = histogram.get_max_value() if count else None
    out["mean_us"] = round(histogram.get_mean_value(), 1) if count else None
    return out
