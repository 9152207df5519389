"""A small metrics registry rendered in the Prometheus text exposition format (version 0.0.4).

Counters, gauges and histograms with optional labels; thread-safe updates, rendering never blocks the
control loop for longer than a dictionary copy.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

LabelKey = tuple[tuple[str, str], ...]


def _labels(labels: dict[str, str] | None) -> LabelKey:
    return tuple(sorted((labels or {}).items()))


def _fmt_labels(key: LabelKey, extra: Iterable[tuple[str, str]] = ()) -> str:
    items = [*key, *extra]
    if not items:
        return ""
    esc = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in items)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(items, esc, strict=True)) + "}"


def _fmt_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


@dataclass
class _Metric:
    name: str
    help: str
    kind: str
    values: dict[LabelKey, float] = field(default_factory=dict)


@dataclass
class _Histogram:
    name: str
    help: str
    buckets: Sequence[float]
    counts: dict[LabelKey, list[int]] = field(default_factory=dict)
    sums: dict[LabelKey, float] = field(default_factory=dict)


class Metrics:
    def __init__(self, prefix: str = "symtwin_") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric] = {}
        self._hist: dict[str, _Histogram] = {}

    def _metric(self, name: str, help_text: str, kind: str) -> _Metric:
        m = self._metrics.get(name)
        if m is None:
            m = self._metrics[name] = _Metric(self.prefix + name, help_text, kind)
        return m

    def inc(self, name: str, help_text: str, amount: float = 1.0, labels: dict[str, str] | None = None) -> None:
        with self._lock:
            m = self._metric(name, help_text, "counter")
            key = _labels(labels)
            m.values[key] = m.values.get(key, 0.0) + amount

    def set(self, name: str, help_text: str, value: float, labels: dict[str, str] | None = None) -> None:
        with self._lock:
            self._metric(name, help_text, "gauge").values[_labels(labels)] = float(value)

    def observe(self, name: str, help_text: str, value: float, buckets: Sequence[float],
                labels: dict[str, str] | None = None) -> None:
        with self._lock:
            h = self._hist.get(name)
            if h is None:
                h = self._hist[name] = _Histogram(self.prefix + name, help_text, tuple(sorted(buckets)))
            key = _labels(labels)
            counts = h.counts.setdefault(key, [0] * (len(h.buckets) + 1))
            counts[bisect.bisect_left(h.buckets, value)] += 1
            h.sums[key] = h.sums.get(key, 0.0) + value

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        with self._lock:
            m = self._metrics.get(name)
            return None if m is None else m.values.get(_labels(labels))

    def render(self) -> str:
        with self._lock:
            metrics = [(m.name, m.help, m.kind, dict(m.values)) for m in self._metrics.values()]
            hists = [(h.name, h.help, h.buckets, {k: list(v) for k, v in h.counts.items()}, dict(h.sums))
                     for h in self._hist.values()]
        out: list[str] = []
        for name, help_text, kind, values in sorted(metrics):
            suffix = "_total" if kind == "counter" and not name.endswith("_total") else ""
            out.append(f"# HELP {name}{suffix} {help_text}")
            out.append(f"# TYPE {name}{suffix} {kind}")
            for key, v in sorted(values.items()):
                out.append(f"{name}{suffix}{_fmt_labels(key)} {_fmt_value(v)}")
        for name, help_text, buckets, counts, sums in sorted(hists, key=lambda h: h[0]):
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} histogram")
            for key, c in sorted(counts.items()):
                running = 0
                for b, n in zip([*buckets, math.inf], c, strict=True):
                    running += n
                    le = "+Inf" if math.isinf(b) else repr(float(b))
                    out.append(f"{name}_bucket{_fmt_labels(key, [('le', le)])} {running}")
                out.append(f"{name}_sum{_fmt_labels(key)} {_fmt_value(sums[key])}")
                out.append(f"{name}_count{_fmt_labels(key)} {running}")
        return "\n".join(out) + "\n"
