"""A party's settlement report holds nothing its sharing policy withholds."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from adapters.base import Sample
from symtwin.contracts.pricing import FixedPrice
from symtwin.contracts.report import write_reports
from symtwin.contracts.settlement import (
    ContractTerms,
    ExchangeHistory,
    PartyLedger,
    period_bounds,
    settle_park,
)
from symtwin.governance.audit import AuditLog, verify
from symtwin.governance.policy import Party, Resolution, SharingRule, TagGroup, TagInfo, build_policy

START, END = period_bounds("2026-11")

POLICY = build_policy(
    [Party("powerco"), Party("pharma"), Party("utility")],
    [
        TagInfo("pc.steam_flow", "powerco"),
        TagInfo("pc.secret_fuel", "powerco"),
        TagInfo("pc.boiler_load", "powerco"),
        TagInfo("ph.steam_demand", "pharma"),
        TagInfo("ut.town_heat", "utility"),
    ],
    [
        TagGroup("x", ("pc.steam_flow",)),
        TagGroup("ops", ("pc.boiler_load",)),
        TagGroup("town", ("ut.town_heat",)),
    ],
    [
        SharingRule("x", "pharma", Resolution.raw()),
        SharingRule("ops", "pharma", Resolution.aggregated(86400)),
        SharingRule("town", "powerco", Resolution.aggregated(86400)),
    ],
)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    t = START + 3600.0 * np.arange(72)
    contracts = [
        ContractTerms("steam", "x_steam", "powerco", "pharma", FixedPrice(30.0)),
        ContractTerms("heat", "x_heat", "powerco", "utility", FixedPrice(20.0)),
    ]
    histories = {
        "x_steam": ExchangeHistory("x_steam", t, np.full(72, 10.0)),
        "x_heat": ExchangeHistory("x_heat", t, np.full(72, 5.0)),
    }
    # distinctive numbers, so a leak would show up as text
    ledgers = [
        PartyLedger("powerco", 111111.0, 122222.0, 10.0, 12.0),
        PartyLedger("pharma", 233333.0, 200001.0, 8.0, 1.0),
        PartyLedger("utility", 344444.0, 300002.0, 9.0, 3.0),
    ]
    park = settle_park("2026-11", START, END, contracts, histories, ledgers)
    series = []
    for k, ts in enumerate(t):
        series += [
            Sample("pc.steam_flow", float(ts), 50.0 + k % 3),
            Sample("pc.secret_fuel", float(ts), 987654.321),
            Sample("pc.boiler_load", float(ts), 0.25 + 0.5 * (k % 2)),
            Sample("ph.steam_demand", float(ts), 44.0),
            Sample("ut.town_heat", float(ts), 7.5),
        ]
    audit = AuditLog(out / "audit.jsonl")
    files = write_reports(park, POLICY, series, out, site_name="test park", audit=audit)
    return out, files, park


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _text(paths):
    return "\n".join(p.read_text() for p in paths)


def test_files_exist_and_hold_the_parties_own_figures(reports):
    _, files, park = reports
    assert set(files.parties) == {"powerco", "pharma", "utility"}
    pharma = _text(files.parties["pharma"])
    assert "233,333 €" in pharma and "<img" in pharma  # own stand-alone cost, plots embedded
    rows = list(_rows(files.parties["pharma"][1]))
    got = {(r["section"], r["item"], r["contract"]): float(r["value"]) for r in rows}
    assert got[("party", "savings_allocated", "")] == pytest.approx(
        park.party("pharma").savings_eur, abs=0.01
    )
    assert got[("contract", "total_due", "steam")] == pytest.approx(720 * 30.0)
    assert ("contract", "total_due", "heat") not in got  # not its contract
    assert files.park[0].exists() and "Shapley" in files.park[0].read_text()


def test_report_contains_nothing_the_policy_withholds(reports):
    _, files, _ = reports
    pharma = _text(files.parties["pharma"])
    assert "pc.secret_fuel" not in pharma and "987654" not in pharma
    assert "ut.town_heat" not in pharma  # utility shares nothing with pharma
    assert "344,444" not in pharma and "300,002" not in pharma  # utility's own costs
    assert "111,111" not in pharma and "122,222" not in pharma  # powerco's own costs
    names = {r["name"] for r in _rows(files.parties["pharma"][2])}
    assert names == {"pc.steam_flow", "ph.steam_demand"} | {
        f"pc.boiler_load:{s}_1d" for s in ("mean", "min", "max")
    }
    # utility gets no powerco data at all, powerco sees the town heat only as daily aggregates
    utility_names = {r["name"] for r in _rows(files.parties["utility"][2])}
    assert utility_names == {"ut.town_heat"}
    powerco_names = {r["name"] for r in _rows(files.parties["powerco"][2])}
    assert "ut.town_heat" not in powerco_names and "ut.town_heat:mean_1d" in powerco_names
    # the park summary carries allocations, never a party's own costs
    park_text = _text(files.park)
    for private in ("111,111", "122,222", "233,333", "200,001", "344,444", "300,002", "111111", "233333"):
        assert private not in park_text


def test_each_report_is_audited(reports):
    out, _, _ = reports
    assert verify(out / "audit.jsonl").ok
    recs = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    by = {r["recipient"]: r for r in recs}
    assert by["pharma"]["tags"] == {"pc.steam_flow": "raw", "pc.boiler_load": "aggregated 1d"}
    assert by["utility"]["tags"] == {}
    assert by["pharma"]["channel"] == "report" and by["pharma"]["start"] == START
