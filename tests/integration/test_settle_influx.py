"""History in a real victoria-metrics store (written by our InfluxDB historian): settlement read back from it
equals settlement from the local store, and the per-party buckets hold exactly what the policy grants."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from adapters.base import Sample
from adapters.influx import InfluxHistorian, InfluxParams, OutboxParams
from adapters.influx.lineproto import BucketLabels
from adapters.influx.reader import InfluxReader, QueryApi, ReaderParams
from adapters.store import DeadLetterStore
from adapters.store.history import HistoryParams, LocalHistory
from symtwin.cli import main
from symtwin.config import load_site
from symtwin.contracts.settlement import period_bounds
from symtwin.governance.from_site import policy_from_site
from symtwin.runtime.sharing import PublisherParams, bucket_writer_from_site
from tests.support.servers import VictoriaMetrics

REPO = Path(__file__).resolve().parents[2]
DAY = "2026-11-05"
START, END = period_bounds(DAY)


def demo_with_influx(tmp: Path, url: str) -> Path:
    """configs/demo.yaml with profile paths made absolute and an adapters.influx section on ``url``."""
    text = (REPO / "configs/demo.yaml").read_text()
    text = text.replace("path: profiles/", f"path: {REPO / 'configs/profiles'}/")
    text += f'\nadapters:\n  influx: {{url: "{url}", bucket: symtwin}}\n'
    path = tmp / "site.yaml"
    path.write_text(text)
    return path


def day_of_samples() -> list[Sample]:
    out = []
    for k in range(24 * 12):  # every 5 min
        t = START + 300.0 * k
        out.append(Sample("exchange.surplus_heat.heat_flow", t, 2e6 + 1e5 * (k % 7)))
        out.append(Sample("factory.heat", t, 3e6))
        out.append(Sample("utility.town.heat", t, 5e6 + 1e6 * (k % 2)))
        out.append(Sample("utility.hx.t_out", t, 345.0))
    return out


def wait_for(vm: VictoriaMetrics, match: str, n: int, timeout_s: float = 15.0) -> int:
    deadline = time.monotonic() + timeout_s
    got = -1
    while time.monotonic() < deadline:
        got = vm.count_points(match)
        if got >= n:
            return got
        time.sleep(0.2)
    return got


def settlement_rows(folder: Path, party: str) -> dict[tuple[str, str, str], str]:
    with (folder / party / "settlement.csv").open(newline="") as f:
        return {(r["section"], r["item"], r["contract"]): r["value"] for r in csv.DictReader(f)}


def test_settlement_from_victoria_metrics_equals_the_local_store(
    victoria_metrics: VictoriaMetrics, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = day_of_samples()
    local = LocalHistory(HistoryParams(tmp_path / "history.sqlite", retention_s=1e12), clock=lambda: END)
    local.write(samples)
    assert local.flush()
    local.close()
    dead = DeadLetterStore(tmp_path / "dead.sqlite")
    hist = InfluxHistorian(
        InfluxParams(victoria_metrics.url, "park", "symtwin"),
        OutboxParams(tmp_path / "outbox.sqlite"),
        dead,
        labels=BucketLabels(None, "symtwin"),  # as the service writes (see symtwin.runtime.app)
    )
    hist.write(samples)
    assert hist.wait_sent(15.0)
    hist.close()
    assert wait_for(victoria_metrics, '{__name__="symtwin_sample_value",db="symtwin"}', len(samples)) == len(
        samples
    )

    reader = InfluxReader(ReaderParams(victoria_metrics.url, "park", "symtwin"))
    assert reader.api is QueryApi.VICTORIA_METRICS  # detected from /health
    got = reader.query("exchange.surplus_heat.heat_flow", START, END, max_points=10**6)
    assert [(s.timestamp, s.value) for s in got] == [
        (s.timestamp, s.value) for s in samples if s.tag == "exchange.surplus_heat.heat_flow"
    ]
    assert reader.query("exchange.surplus_heat.heat_flow", START, START + 3600, max_points=3)[0].value == (
        pytest.approx(sum(2e6 + 1e5 * (k % 7) for k in range(4)) / 4)
    )
    reader.close()

    config = demo_with_influx(tmp_path, victoria_metrics.url)
    inputs = tmp_path / "inputs.json"
    inputs.write_text(
        json.dumps(
            {
                "parties": {
                    "factory": {"standalone_cost_eur": 0, "operating_cost_eur": 0},
                    "utility": {"standalone_cost_eur": 5000, "operating_cost_eur": 2000},
                }
            }
        )
    )
    common = ["settle", str(config), "--period", DAY, "--inputs", str(inputs), "--quiet"]
    assert main([*common, "--history", str(tmp_path / "history.sqlite"), "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--store", "influx", "--out", str(tmp_path / "b")]) == 0, capsys.readouterr().err
    for party in ("factory", "utility"):
        a, b = settlement_rows(tmp_path / "a", party), settlement_rows(tmp_path / "b", party)
        assert a == b
    assert float(a[("contract", "delivered", "surplus_contract")]) > 40.0  # ~2.3 MW for 24 h
    # the series in the reports come from the store too, filtered the same way
    assert (tmp_path / "a/factory/series.csv").read_text() == (tmp_path / "b/factory/series.csv").read_text()


def test_party_buckets_hold_what_the_policy_grants(victoria_metrics: VictoriaMetrics, tmp_path: Path) -> None:
    config = demo_with_influx(tmp_path, victoria_metrics.url)
    site = load_site(config)
    policy = policy_from_site(site)
    dead = DeadLetterStore(tmp_path / "dead.sqlite")
    state = tmp_path / "state"
    state.mkdir()
    writer, historians = bucket_writer_from_site(
        site,
        policy,
        state,
        dead,
        clock=lambda: END,
        params=PublisherParams(flush_every_s=0.05, flush_lag_s=0.0),
    )
    writer.start()
    day = [s for s in day_of_samples() if s.timestamp < START + 2 * 3600]  # two hours, 24 samples per tag
    for k in range(0, len(day), 8):
        writer.write(day[k : k + 8])  # as the service's fan-out hands them on
    assert writer.drain(10.0, release_until=START + 2 * 3600)
    for h in historians:
        assert h.wait_sent(15.0)
    writer.stop()
    for h in historians:
        h.close()

    def names(bucket: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for series in victoria_metrics.export(f'{{__name__="symtwin_sample_value",db="{bucket}"}}'):
            metric = series["metric"]
            assert isinstance(metric, dict)
            out[metric["tag"]] = len(series["values"])  # type: ignore[arg-type]
        return out

    time.sleep(1.0)  # victoria-metrics makes points searchable after a moment
    assert wait_for(victoria_metrics, '{__name__="symtwin_sample_value",db="symtwin-factory"}', 24) == 24
    # factory's own bucket: its tag raw, nothing of the utility's
    assert names("symtwin-factory") == {"factory.heat": 24}
    # what the utility shares with factory: the town load as hourly mean/min/max only, hx.t_out never
    assert names("symtwin-utility-to-factory") == {
        "utility.town.heat:mean_1h": 2,
        "utility.town.heat:min_1h": 2,
        "utility.town.heat:max_1h": 2,
    }
    mean = victoria_metrics.export('{__name__="symtwin_sample_value",tag="utility.town.heat:mean_1h"}')[0]
    assert mean["values"] == [5.5e6, 5.5e6]
    # what factory shares with the utility: raw
    assert names("symtwin-factory-to-utility") == {"factory.heat": 24}
    assert names("symtwin-utility") == {"utility.town.heat": 24, "utility.hx.t_out": 24}
    # nothing the utility withholds reaches any bucket factory may read
    for bucket in ("symtwin-factory", "symtwin-utility-to-factory", "symtwin-factory-to-utility"):
        assert not any(n.startswith("utility.hx.t_out") for n in names(bucket))
        assert "utility.town.heat" not in names(bucket)
