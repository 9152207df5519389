"""Query construction of the history reader (the Flux path has no server here; victoria-metrics is
tested against a real one in tests/integration/test_settle_influx.py)."""

from __future__ import annotations

import datetime as dt

from adapters.base import Quality, Sample
from adapters.influx.reader import _records, downsample, export_selector, flux_query


def test_flux_query_filters_one_tag_over_a_half_open_range():
    q = flux_query("symtwin", "symtwin_sample", "exchange.a.heat_flow", 1_700_000_000.0, 1_700_086_400.5)
    assert q.splitlines()[0] == 'from(bucket: "symtwin")'
    assert "range(start: 2023-11-14T22:13:20.000000Z, stop: 2023-11-15T22:13:20.500000Z)" in q
    assert 'r._measurement == "symtwin_sample" and r.tag == "exchange.a.heat_flow"' in q
    assert 'r._field == "value" or r._field == "quality"' in q
    assert 'pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")' in q


def test_flux_strings_are_escaped():
    q = flux_query('b"x', "m", 'tag"with\\quote${x}', 0.0, 1.0)
    assert 'from(bucket: "b\\"x")' in q
    assert 'r.tag == "tag\\"with\\\\quote\\${x}"' in q


def test_export_selector_names_the_bucket_as_db_label():
    sel = export_selector("symtwin-pharma", "symtwin_sample", 'a"b')
    assert sel == '{__name__=~"symtwin_sample_(value|quality)",tag="a\\"b",db="symtwin-pharma"}'


def test_pivoted_flux_rows_become_samples():
    t = dt.datetime(2026, 11, 5, tzinfo=dt.UTC)
    rows = [{"_time": t, "value": 2.0, "quality": 1}, {"_time": t, "value": None}, {"_time": t, "value": 3}]
    out = list(_records("x", rows))
    assert out == [Sample("x", t.timestamp(), 2.0, Quality.UNCERTAIN), Sample("x", t.timestamp(), 3.0)]


def test_downsample_means_per_bucket_worst_quality():
    s = [Sample("x", float(i), float(i), Quality.BAD if i == 3 else Quality.GOOD) for i in range(10)]
    assert downsample(s, 0.0, 10.0, 20) == s
    out = downsample(s, 0.0, 10.0, 2)
    assert [(o.timestamp, o.value, o.quality) for o in out] == [
        (2.0, 2.0, Quality.BAD),
        (7.0, 7.0, Quality.GOOD),
    ]
