"""`symtwin settle` end to end on the demo park: history store in, reports out."""

from __future__ import annotations

import csv
import json

import pytest

from adapters.base import Sample
from adapters.store.history import HistoryParams, LocalHistory
from symtwin.cli import main
from symtwin.contracts.settlement import period_bounds
from symtwin.governance.audit import verify

START, END = period_bounds("2026-11")


@pytest.fixture
def history(tmp_path):
    path = tmp_path / "history.sqlite"
    store = LocalHistory(HistoryParams(path, retention_s=1e12), clock=lambda: END)
    samples = []
    for h in range(24 * 30):
        t = START + 3600.0 * h
        samples.append(Sample("exchange.surplus_heat.heat_flow", t, 2e6))  # 2 MW all month → 1440 MWh
        samples.append(Sample("factory.heat", t, 3e6))
        samples.append(Sample("utility.town.heat", t, 5e6 + 1e6 * (h % 2)))
        samples.append(Sample("utility.hx.t_out", t, 345.0))
    store.write(samples)
    assert store.flush()
    store.close()
    return path


def test_settle_writes_filtered_reports(tmp_path, history, repo_root, capsys):
    inputs = tmp_path / "inputs.json"
    inputs.write_text(
        json.dumps(
            {
                "parties": {
                    "factory": {"standalone_cost_eur": 1000.0, "operating_cost_eur": 1000.0},
                    "utility": {
                        "standalone_cost_eur": 90000.0,
                        "operating_cost_eur": 50000.0,
                        "standalone_co2_t": 300,
                        "operating_co2_t": 100,
                    },
                }
            }
        )
    )
    out = tmp_path / "reports"
    rc = main(
        [
            "settle",
            str(repo_root / "configs/demo.yaml"),
            "--period",
            "2026-11",
            "--inputs",
            str(inputs),
            "--history",
            str(history),
            "--out",
            str(out),
            "--audit",
            str(tmp_path / "audit.jsonl"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    with (out / "utility" / "settlement.csv").open(newline="") as f:
        rows = {(r["section"], r["item"], r["contract"]): float(r["value"]) for r in csv.DictReader(f)}
    assert rows[("contract", "delivered", "surplus_contract")] == pytest.approx(1440.0)
    assert rows[("contract", "total_due", "surplus_contract")] == pytest.approx(1440.0 * 15.0)
    assert rows[("party", "savings_allocated", "")] == pytest.approx(40000.0 - 1440.0 * 15.0)
    assert rows[("park", "total_savings", "")] == pytest.approx(40000.0)
    with (out / "factory" / "series.csv").open(newline="") as f:
        names = {r["name"] for r in csv.DictReader(f)}
    assert "utility.hx.t_out" not in names and "utility.town.heat" not in names  # withheld / only aggregated
    assert "utility.town.heat:mean_1h" in names and "factory.heat" in names
    assert "utility.hx.t_out" not in (out / "factory" / "report.html").read_text()
    assert verify(tmp_path / "audit.jsonl").ok


def test_settle_computes_what_the_inputs_leave_out(tmp_path, history, repo_root, capsys):
    """Only the factory's costs are given: the utility's stand-alone and operating cost come from the twin
    with the baseline (one day), and the printed line says so."""
    inputs = tmp_path / "inputs.json"
    inputs.write_text(
        json.dumps({"parties": {"factory": {"standalone_cost_eur": 1, "operating_cost_eur": 1}}})
    )
    rc = main(
        [
            "settle",
            str(repo_root / "configs/demo.yaml"),
            "--period",
            "2026-11-05",
            "--inputs",
            str(inputs),
            "--history",
            str(history),
            "--out",
            str(tmp_path / "r"),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "counterfactual: 3 runs" in captured.err
    with (tmp_path / "r" / "utility" / "settlement.csv").open(newline="") as f:
        rows = {(r["section"], r["item"], r["contract"]): float(r["value"]) for r in csv.DictReader(f)}
    # stand-alone: the utility's boiler burns gas for the town (what the full tank at the start leaves)
    assert rows[("party", "standalone_cost", "")] > 0.0
    assert "utility      stand-alone" in captured.out
    with (tmp_path / "r" / "factory" / "settlement.csv").open(newline="") as f:
        rows = {(r["section"], r["item"], r["contract"]): float(r["value"]) for r in csv.DictReader(f)}
    assert rows[("party", "standalone_cost", "")] == 1.0
    # how the utility's stand-alone park was built is in its report only (it names its plant)
    assert "notional gas boiler" in (tmp_path / "r" / "utility" / "report.html").read_text()
    assert "notional" not in (tmp_path / "r" / "factory" / "report.html").read_text()
    assert "notional" not in (tmp_path / "r" / "park" / "summary.html").read_text()


def test_settle_refuses_a_bad_inputs_value(tmp_path, history, repo_root, capsys):
    inputs = tmp_path / "inputs.json"
    inputs.write_text(
        json.dumps({"parties": {"factory": {"standalone_cost_eur": "much", "operating_cost_eur": 1}}})
    )
    rc = main(
        [
            "settle",
            str(repo_root / "configs/demo.yaml"),
            "--period",
            "2026-11-05",
            "--inputs",
            str(inputs),
            "--history",
            str(history),
            "--out",
            str(tmp_path / "r"),
            "--quiet",
        ]
    )
    assert rc == 2
    assert "parties.factory.standalone_cost_eur" in capsys.readouterr().err


def test_contract_terms_from_the_reference_park(repo_root):
    from symtwin.commands.settle import contract_terms_from_site
    from symtwin.config import load_site
    from symtwin.contracts.pricing import IndexedPrice

    terms = {t.id: t for t in contract_terms_from_site(load_site(repo_root / "configs/kalundborg.yaml"))}
    steam = terms["steam_pharma"]
    assert (steam.supplier, steam.receiver) == ("powerco", "pharma")
    assert steam.price == IndexedPrice(8.0, 0.6, 0.1)
    assert (steam.min_delivery_mwh, steam.take_or_pay_fraction, steam.penalty_eur_per_mwh) == (
        40000,
        0.8,
        5.0,
    )
    assert terms["steam_refinery"].penalty_eur_per_mwh is None  # unset: valued at the contract price
    assert terms["cooling_water"].settlement_period == "quarter"
