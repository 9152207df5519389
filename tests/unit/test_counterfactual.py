"""Coalition parks derived from the reference park: what is cut, what is added (no twin runs here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from symtwin.config import load_site
from symtwin.contracts.counterfactual import NotionalBoiler, coalition_park
from twin.park import Park


@pytest.fixture(scope="module")
def spec():
    return load_site(Path(__file__).resolve().parents[2] / "configs/kalundborg.yaml").park_spec()


def test_the_whole_park_is_left_as_it_is(spec):
    cp = coalition_park(spec, ["powerco", "pharma", "refinery", "utility"])
    assert cp.spec.units == spec.units and set(cp.spec.connections) == set(spec.connections)
    assert not cp.notional and not cp.dropped


def test_a_party_without_a_boiler_gets_a_notional_one_and_a_header(spec):
    cp = coalition_park(spec, ["refinery"])
    models = {u.name: u.model for u in cp.spec.units}
    assert cp.notional == {
        "standalone_header_refinery": "refinery",
        "notional_steam_boiler_refinery": "refinery",
    }
    boiler = cp.spec.unit("notional_steam_boiler_refinery")
    # 1.25 x the 22 kg/s design flow at 2.8 MJ/kg for sizing; gas at 0.9 and 202 kg/MWh
    assert boiler.params["capacity"] == pytest.approx(1.25 * 22 * 2.8e6)
    assert boiler.params["efficiency"] == 0.9 and boiler.params["co2_per_fuel"] == pytest.approx(202 / 3.6e9)
    assert models["refinery_steam"] == "steam_consumer"
    ends = {(c.source, c.target) for c in cp.spec.connections}
    assert ("standalone_header_refinery", "refinery_steam") in ends
    assert ("notional_steam_boiler_refinery", "standalone_header_refinery") in ends
    assert all(u.owner == "refinery" for u in cp.spec.units)
    Park.from_spec(cp.spec)  # the twin accepts it


def test_a_too_small_own_boiler_is_topped_up(spec):
    cp = coalition_park(spec, ["pharma"], NotionalBoiler(oversize=1.5))
    top = cp.spec.unit("notional_steam_boiler_pharma")
    assert top.params["capacity"] == pytest.approx(1.5 * 28 * 2.8e6 - 40e6)  # own backup boiler: 40 MW
    assert "pharma_cooling" in {u.name for u in cp.spec.units}  # its own surplus source stays, unused


def test_exchanges_to_outside_parties_are_cut_and_a_sourceless_heat_pump_left_out(spec):
    cp = coalition_park(spec, ["utility"])
    names = {u.name for u in cp.spec.units}
    assert "heat_pump" not in names and cp.dropped == ("surplus_hx", "heat_pump")
    assert not any(c.source == "refinery_surplus" or c.source == "chp" for c in cp.spec.connections)
    # 50 MW peak boiler < 60 MW design load: 1.25 x 60 - 50 = 25 MW notional
    assert cp.spec.unit("notional_heat_boiler_town").params["capacity"] == pytest.approx(25e6)
    assert ("notional_heat_boiler_town", "transmission") in {
        (c.source, c.target) for c in cp.spec.connections
    }


def test_coalitions_keep_the_exchanges_among_their_members(spec):
    cp = coalition_park(spec, ["powerco", "pharma"])
    ends = {(c.source, c.target) for c in cp.spec.connections}
    assert ("steam_header", "pharma_steam") in ends
    assert not cp.notional  # the CHP supplies pharma through the real header
    cp = coalition_park(spec, ["pharma", "refinery"])
    # no exchange between them: each gets its own header, so neither supplies the other
    headers = {u.name for u in cp.spec.units if u.model == "steam_header"}
    assert headers == {"standalone_header_pharma", "standalone_header_refinery"}


@pytest.mark.slow  # ~5 s with warm numba caches, a minute cold
def test_a_day_of_the_demo_park_on_the_twin():
    """Stand-alone, operated and the (two-party) coalition values over a day with the baseline."""
    from symtwin.contracts.counterfactual import compute_counterfactual

    site = load_site(Path(__file__).resolve().parents[2] / "configs/demo.yaml")
    messages: list[str] = []
    cf = compute_counterfactual(site, 150 * 86400.0, 86400.0, coalitions=True, progress=messages.append)
    assert cf.runs == 3 and len([m for m in messages if m.startswith("counterfactual [")]) == 3
    # the factory has no demand: stand-alone it burns nothing; it burns nothing in the park either
    assert cf.standalone["factory"].cost_eur == 0.0 and cf.operating["factory"].fuel_mwh == 0.0
    # stand-alone the utility's gas boiler carries the town; in the park the factory's surplus heat does
    alone, park = cf.standalone["utility"], cf.operating["utility"]
    assert alone.fuel_mwh > 0.5 * alone.demand_mwh > 0
    assert park.fuel_mwh < 0.5 * alone.fuel_mwh
    assert alone.demand_mwh == pytest.approx(park.demand_mwh)
    assert cf.exchange_mwh["surplus_heat"] > 0.5 * park.demand_mwh
    # surplus heat costs its supplier nothing; the receiver's alternative is its stand-alone gas per MWh
    assert cf.supplier_cost_eur_per_mwh["surplus_heat"] == 0.0
    assert cf.receiver_alt_eur_per_mwh["surplus_heat"] == pytest.approx(alone.cost_eur / alone.demand_mwh)
    assert cf.coalition_savings is not None
    grand = frozenset({"factory", "utility"})
    assert cf.coalition_savings[grand] == pytest.approx(
        sum(cf.standalone[p].cost_eur - cf.operating[p].cost_eur for p in grand)
    )
    assert cf.coalition_savings[frozenset({"factory"})] == 0.0
