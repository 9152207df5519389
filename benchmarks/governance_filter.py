"""Cost of the sharing-policy enforcement layer.

1. Live view: 1,000 tags at 1 Hz through one recipient's StreamFilter (a third raw, a third
   aggregated over 15 min, a third withheld): time per 1-second push.
2. History/reports: SharingPolicy.filter_for over 1,000,000 samples (100 tags x 10,000), against a
   plain per-sample dictionary aggregation written the obvious way, side by side in this process.

Usage: .venv/bin/python benchmarks/governance_filter.py
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.base import Sample
from benchmarks._common import write_result
from symtwin.governance.policy import (
    Party,
    Resolution,
    SharingRule,
    StreamFilter,
    TagGroup,
    TagInfo,
    build_policy,
)


def make_policy(n_tags: int):
    tags = [TagInfo(f"own.t{i}", "owner") for i in range(n_tags)]
    third = n_tags // 3
    groups = [
        TagGroup("raw", tuple(t.id for t in tags[:third])),
        TagGroup("agg", tuple(t.id for t in tags[third : 2 * third])),
        TagGroup("none", tuple(t.id for t in tags[2 * third :])),
    ]
    rules = [
        SharingRule("raw", "viewer", Resolution.raw()),
        SharingRule("agg", "viewer", Resolution.aggregated(900)),
        SharingRule("none", "viewer", Resolution.none()),
    ]
    return build_policy([Party("owner"), Party("viewer")], tags, groups, rules)


def naive_filter(policy, recipient, samples):
    """Baseline: one dict of lists per (tag, bin), then mean/min/max in Python."""
    out = []
    bins: dict[tuple[str, int], list[float]] = {}
    for s in samples:
        res = policy.resolution(s.tag, recipient)
        if res.kind.value == "raw":
            out.append(s)
        elif res.kind.value == "aggregated":
            bins.setdefault((s.tag, math.floor(s.timestamp / res.interval_s)), []).append(s.value)
    for (tag, b), vs in bins.items():
        end = (b + 1) * 900.0
        out += [
            Sample(f"{tag}:mean_15min", end, sum(vs) / len(vs)),
            Sample(f"{tag}:min_15min", end, min(vs)),
            Sample(f"{tag}:max_15min", end, max(vs)),
        ]
    return out


def main() -> None:
    policy = make_policy(1000)
    live = StreamFilter(policy, "viewer")
    pushes = []
    t0 = 1_790_000_000.0
    for k in range(1800):  # half an hour at 1 Hz: crosses two 15-min boundaries
        batch = [Sample(f"own.t{i}", t0 + k, float(i + k)) for i in range(1000)]
        a = time.perf_counter()
        live.push(batch)
        live.flush(t0 + k)
        pushes.append(time.perf_counter() - a)
    pushes.sort()

    hist_policy = make_policy(100)
    samples = [Sample(f"own.t{i}", t0 + 10.0 * k, float(k % 97)) for k in range(10_000) for i in range(100)]
    a = time.perf_counter()
    fast = hist_policy.filter_for("viewer", samples)
    t_fast = time.perf_counter() - a
    a = time.perf_counter()
    slow = naive_filter(hist_policy, "viewer", samples)
    t_slow = time.perf_counter() - a
    assert len(fast) == len(slow)

    write_result(
        "governance_filter",
        {
            "live_push_1000_tags_median_ms": 1e3 * statistics.median(pushes),
            "live_push_1000_tags_p99_ms": 1e3 * pushes[int(0.99 * len(pushes))],
            "live_push_share_of_1s_budget_p99": pushes[int(0.99 * len(pushes))] / 1.0,
            "history_filter_1M_samples_s": t_fast,
            "history_naive_1M_samples_s": t_slow,
            "history_speedup_vs_naive": t_slow / t_fast,
            "history_samples_per_s": len(samples) / t_fast,
            "note": "taken on a shared 2-core machine under load from other engineers",
        },
    )


if __name__ == "__main__":
    main()
