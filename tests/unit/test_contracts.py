from __future__ import annotations

import numpy as np
import pytest

from symtwin.contracts.pricing import (
    CostPlus,
    FixedPrice,
    IndexedPrice,
    PriceInputs,
    PricingError,
    ShareOfSavings,
    price_rule_from_config,
    unit_prices,
)
from symtwin.contracts.settlement import (
    ContractTerms,
    ExchangeHistory,
    PartyLedger,
    SettlementError,
    period_bounds,
    settle_exchange,
    settle_park,
    split_periods,
)

NOV_START, NOV_END = period_bounds("2026-11")
HOUR = 3600.0


def hist(energy, **series):
    t = NOV_START + HOUR * np.arange(len(energy))
    return ExchangeHistory(
        "x1", t, np.asarray(energy, float), **{k: np.asarray(v, float) for k, v in series.items()}
    )


def terms(price, **kw):
    return ContractTerms("c1", "x1", "powerco", "pharma", price, **kw)


def settle(price, energy, **kw):
    series = {
        k: kw.pop(k)
        for k in list(kw)
        if k.endswith(("_mwh", "_t")) and k.startswith(("gas", "co2", "supplier", "receiver"))
    }
    return settle_exchange(terms(price, **kw), hist(energy, **series), NOV_START, NOV_END)


def test_period_bounds_and_split():
    assert NOV_END - NOV_START == 30 * 86400
    assert period_bounds("2026-11-05")[1] - period_bounds("2026-11-05")[0] == 86400
    assert period_bounds("2026-W45")[1] - period_bounds("2026-W45")[0] == 7 * 86400
    with pytest.raises(SettlementError):
        period_bounds("November")
    assert len(split_periods(NOV_START, NOV_END, "day")) == 30
    weeks = split_periods(NOV_START, NOV_END, "week")  # 1 Nov 2026 is a Sunday
    assert weeks[0] == (NOV_START, NOV_START + 86400) and len(weeks) == 6
    assert split_periods(NOV_START, NOV_END, "month") == [(NOV_START, NOV_END)]


def test_fixed_price():
    s = settle(FixedPrice(30.0), [1.0, 2.0, 3.0])
    assert s.delivered_mwh == 6.0 and s.energy_payment_eur == pytest.approx(180.0)
    assert (
        s.avg_price_eur_per_mwh == pytest.approx(30.0)
        and s.penalty_eur == 0.0
        and s.total_eur == pytest.approx(180.0)
    )


def test_indexed_price():
    # p = 10 + 1.1·gas + 0.2·co2 → 10 + 44 + 16 = 70 and 10 + 55 + 20 = 85; 2·70 + 1·85 = 225
    s = settle(IndexedPrice(10.0, 1.1, 0.2), [2.0, 1.0], gas_eur_per_mwh=[40, 50], co2_eur_per_t=[80, 100])
    assert s.energy_payment_eur == pytest.approx(225.0)
    assert s.avg_price_eur_per_mwh == pytest.approx(75.0)
    with pytest.raises(PricingError, match="gas price"):
        settle(IndexedPrice(10.0, 1.1, 0.2), [2.0, 1.0])


def test_cost_plus():
    # (1 + 0.1)·20 + (1 + 0.1)·30 = 22 + 33
    s = settle(CostPlus(0.1), [1.0, 1.0], supplier_cost_eur_per_mwh=[20, 30])
    assert s.energy_payment_eur == pytest.approx(55.0)


def test_share_of_savings():
    # step 1: saving 60 − 20 = 40, price 20 + 0.5·40 = 40; step 2: no saving (80 > 60), price = alt = 60
    s = settle(
        ShareOfSavings(0.5), [1.0, 1.0], supplier_cost_eur_per_mwh=[20, 80], receiver_alt_eur_per_mwh=[60, 60]
    )
    assert s.energy_payment_eur == pytest.approx(100.0)
    assert s.joint_saving_eur == pytest.approx(20.0)
    # surplus heat at no cost: the supplier gets its share of the receiver's avoided cost
    s = settle(ShareOfSavings(0.25), [4.0], receiver_alt_eur_per_mwh=[50])
    assert s.energy_payment_eur == pytest.approx(0.25 * 4 * 50)


def test_take_or_pay_shortfall_with_penalty_rate():
    s = settle(
        FixedPrice(30.0),
        [3.0, 3.0],
        min_delivery_mwh=10.0,
        take_or_pay_fraction=0.8,
        penalty_eur_per_mwh=50.0,
    )
    assert s.shortfall_mwh == pytest.approx(2.0)  # 0.8·10 − 6
    assert s.penalty_eur == pytest.approx(100.0) and s.total_eur == pytest.approx(280.0)
    assert any("below the minimum" in n for n in s.notes)


def test_take_or_pay_exactly_at_threshold_has_no_penalty_but_is_noted():
    s = settle(
        FixedPrice(30.0),
        [4.0, 4.0],
        min_delivery_mwh=10.0,
        take_or_pay_fraction=0.8,
        penalty_eur_per_mwh=50.0,
    )
    assert s.shortfall_mwh == 0.0 and s.penalty_eur == 0.0
    assert any("below the minimum" in n for n in s.notes)


def test_take_or_pay_nothing_delivered_uses_contract_price():
    s = settle(FixedPrice(30.0), [0.0, 0.0, 0.0], min_delivery_mwh=10.0, take_or_pay_fraction=0.8)
    assert s.energy_payment_eur == 0.0
    assert s.penalty_eur == pytest.approx(8.0 * 30.0)


def test_take_or_pay_zero_fraction_and_at_minimum():
    assert settle(FixedPrice(30.0), [1.0], min_delivery_mwh=10.0, take_or_pay_fraction=0.0).penalty_eur == 0.0
    s = settle(FixedPrice(30.0), [10.0], min_delivery_mwh=10.0, penalty_eur_per_mwh=99.0)
    assert s.penalty_eur == 0.0 and s.notes == ()


def test_take_or_pay_without_any_history_is_an_error():
    with pytest.raises(SettlementError, match="no price history"):
        settle(FixedPrice(30.0), [], min_delivery_mwh=10.0)


def test_above_maximum_the_excess_is_unpaid():
    s = settle(FixedPrice(30.0), [4.0, 2.0], max_delivery_mwh=5.0)
    assert s.excess_mwh == pytest.approx(1.0) and s.paid_mwh == 5.0
    assert s.energy_payment_eur == pytest.approx(150.0)


def test_contract_terms_are_checked():
    with pytest.raises(SettlementError):
        terms(FixedPrice(1.0), min_delivery_mwh=10.0, max_delivery_mwh=5.0)
    with pytest.raises(SettlementError):
        terms(FixedPrice(1.0), take_or_pay_fraction=1.5)
    with pytest.raises(SettlementError):
        terms(FixedPrice(1.0), settlement_period="fortnight")
    with pytest.raises(PricingError):
        ShareOfSavings(1.2)


def test_price_rule_from_config():
    assert price_rule_from_config({"rule": "fixed", "eur_per_mwh": 30}) == FixedPrice(30.0)
    assert price_rule_from_config(
        {"rule": "indexed", "a_eur_per_mwh": 5, "b_gas": 1.1, "c_co2": 0.2}
    ) == IndexedPrice(5.0, 1.1, 0.2)
    assert price_rule_from_config({"rule": "cost_plus", "margin": 0.1}) == CostPlus(0.1)
    assert price_rule_from_config({"rule": "share_of_savings", "supplier_share": 0.5}) == ShareOfSavings(0.5)
    for bad in (
        {"rule": "barter"},
        {"rule": "fixed"},
        {"rule": "fixed", "eur_per_mwh": 1, "x": 2},
        {"rule": "fixed", "eur_per_mwh": "30"},
    ):
        with pytest.raises(PricingError):
            price_rule_from_config(bad)
    assert np.all(unit_prices(FixedPrice(3.0), PriceInputs(), 4) == 3.0)


def park_case():
    contracts = [
        ContractTerms("steam", "x_steam", "powerco", "pharma", FixedPrice(30.0)),
        ContractTerms(
            "heat",
            "x_heat",
            "powerco",
            "utility",
            FixedPrice(20.0),
            min_delivery_mwh=100.0,
            penalty_eur_per_mwh=5.0,
        ),
    ]
    t = NOV_START + HOUR * np.arange(3)
    histories = {
        "x_steam": ExchangeHistory("x_steam", t, np.array([10.0, 10.0, 10.0])),  # 30 MWh → 900 €
        "x_heat": ExchangeHistory("x_heat", t, np.array([20.0, 20.0, 20.0])),  # 60 MWh → 1200 € + 40·5
    }
    ledgers = [
        PartyLedger(
            "powerco",
            standalone_cost_eur=5000.0,
            operating_cost_eur=6000.0,
            standalone_co2_t=10.0,
            operating_co2_t=12.0,
        ),
        PartyLedger(
            "pharma",
            standalone_cost_eur=3000.0,
            operating_cost_eur=500.0,
            standalone_co2_t=8.0,
            operating_co2_t=1.0,
        ),
        PartyLedger(
            "utility",
            standalone_cost_eur=4000.0,
            operating_cost_eur=1500.0,
            standalone_co2_t=9.0,
            operating_co2_t=3.0,
        ),
    ]
    return contracts, histories, ledgers


def test_park_settlement_by_hand_and_shares_sum_to_total():
    contracts, histories, ledgers = park_case()
    park = settle_park("2026-11", NOV_START, NOV_END, contracts, histories, ledgers)
    assert park.total_savings_eur == pytest.approx(12000.0 - 8000.0)
    pc, ph, ut = (park.party(p) for p in ("powerco", "pharma", "utility"))
    assert pc.received_eur == pytest.approx(900.0 + 1200.0 + 200.0)
    assert ph.paid_eur == pytest.approx(900.0) and ut.paid_eur == pytest.approx(1400.0)
    assert pc.savings_eur == pytest.approx(5000.0 - (6000.0 - 2300.0))  # 1300
    assert ph.savings_eur == pytest.approx(3000.0 - (500.0 + 900.0))  # 1600
    assert ut.savings_eur == pytest.approx(4000.0 - (1500.0 + 1400.0))  # 1100
    assert sum(p.savings_eur for p in park.parties) == pytest.approx(park.total_savings_eur)
    assert sum(p.shapley_eur for p in park.parties) == pytest.approx(park.total_savings_eur)
    assert park.co2_avoided_t == pytest.approx(-2.0 + 7.0 + 6.0)
    assert park.delivered_mwh == pytest.approx(90.0)
    # exchange game by energy: steam 30 MWh, heat 60 MWh of 4000 € → each split between its two parties
    assert pc.shapley_eur == pytest.approx(4000.0 / 2)
    assert ph.shapley_eur == pytest.approx(4000.0 * 30 / 90 / 2)


def test_park_with_given_coalition_values_and_weekly_periods():
    contracts, histories, ledgers = park_case()
    contracts = [
        ContractTerms(
            "steam",
            "x_steam",
            "powerco",
            "pharma",
            FixedPrice(30.0),
            min_delivery_mwh=1.0,
            penalty_eur_per_mwh=1.0,
            settlement_period="week",
        )
    ]
    v = {
        frozenset(s): w
        for s, w in [
            ((), 0),
            (("powerco",), 0),
            (("pharma",), 0),
            (("utility",), 0),
            (("powerco", "pharma"), 3000),
            (("powerco", "utility"), 1000),
            (("pharma", "utility"), 0),
            (("powerco", "pharma", "utility"), 4000),
        ]
    }
    park = settle_park("2026-11", NOV_START, NOV_END, contracts, histories, ledgers, coalition_value=v)
    assert len(park.exchanges) == 6  # six ISO-week pieces of November 2026
    # no delivery in four full weeks (1 MWh short each) and on Monday 30 November, 1/7 of its week: the
    # minimum of a week the window only partly covers is pro-rated
    assert sum(s.penalty_eur for s in park.exchanges) == pytest.approx(4.0 + 1.0 / 7.0)
    assert sum(p.savings_eur for p in park.parties) == pytest.approx(park.total_savings_eur)
    assert sum(p.shapley_eur for p in park.parties) == pytest.approx(4000.0)
    assert "supplied" in park.shapley_basis
    with pytest.raises(SettlementError, match="no history"):
        settle_park(
            "x",
            NOV_START,
            NOV_END,
            [ContractTerms("c", "nope", "powerco", "pharma", FixedPrice(1.0))],
            histories,
            ledgers,
        )


def test_a_day_of_a_monthly_contract_has_a_pro_rated_minimum():
    contracts = [
        ContractTerms(
            "c",
            "x",
            "a",
            "b",
            FixedPrice(10.0),
            min_delivery_mwh=300.0,
            max_delivery_mwh=600.0,
            penalty_eur_per_mwh=2.0,
        )
    ]
    t = NOV_START + HOUR * np.arange(24)
    histories = {"x": ExchangeHistory("x", t, np.full(24, 1.0))}  # 24 MWh on 1 November
    ledgers = [PartyLedger("a", 0.0, 0.0), PartyLedger("b", 0.0, 0.0)]
    day = settle_park("2026-11-01", NOV_START, NOV_START + 86400.0, contracts, histories, ledgers)
    (s,) = day.exchanges
    assert s.shortfall_mwh == 0.0 and s.penalty_eur == 0.0  # 24 MWh >= 300/30, the day's share
    histories = {"x": ExchangeHistory("x", t, np.full(24, 0.25))}  # 6 MWh: 4 short of 300/30
    (s,) = settle_park("d", NOV_START, NOV_START + 86400.0, contracts, histories, ledgers).exchanges
    assert s.shortfall_mwh == pytest.approx(4.0) and s.penalty_eur == pytest.approx(8.0)
    histories = {"x": ExchangeHistory("x", t, np.full(24, 1.0))}
    (s,) = settle_park("d", NOV_START, NOV_START + 86400.0, contracts, histories, ledgers).exchanges
    assert s.excess_mwh == pytest.approx(24.0 - 600.0 / 30)  # above the day's share of the maximum
    month = settle_park("2026-11", NOV_START, NOV_END, contracts, histories, ledgers)
    assert month.exchanges[0].shortfall_mwh == pytest.approx(300.0 - 24.0)  # a whole month: as written


def test_allocated_savings_always_sum_to_the_park_total():
    rng = np.random.default_rng(7)
    parties = ["a", "b", "c", "d"]
    for _ in range(20):
        contracts = []
        histories = {}
        t = NOV_START + HOUR * np.arange(48)
        for k in range(3):
            sup, rec = rng.choice(parties, 2, replace=False)
            rule = [
                FixedPrice(rng.uniform(10, 60)),
                CostPlus(rng.uniform(0, 0.3)),
                ShareOfSavings(rng.uniform(0, 1)),
            ][k]
            contracts.append(
                ContractTerms(
                    f"c{k}",
                    f"x{k}",
                    str(sup),
                    str(rec),
                    rule,
                    min_delivery_mwh=rng.uniform(0, 500),
                    max_delivery_mwh=600.0,
                    take_or_pay_fraction=rng.uniform(0, 1),
                )
            )
            histories[f"x{k}"] = ExchangeHistory(
                f"x{k}",
                t,
                rng.uniform(0, 20, 48),
                supplier_cost_eur_per_mwh=rng.uniform(0, 40, 48),
                receiver_alt_eur_per_mwh=rng.uniform(20, 80, 48),
            )
        ledgers = [PartyLedger(p, rng.uniform(1e3, 1e4), rng.uniform(1e3, 1e4)) for p in parties]
        park = settle_park("2026-11", NOV_START, NOV_END, contracts, histories, ledgers)
        assert sum(p.savings_eur for p in park.parties) == pytest.approx(
            park.total_savings_eur, rel=1e-9, abs=1e-6
        )
        assert sum(p.shapley_eur for p in park.parties) == pytest.approx(
            park.total_savings_eur, rel=1e-9, abs=1e-6
        )
        assert sum(p.paid_eur for p in park.parties) == pytest.approx(
            sum(p.received_eur for p in park.parties)
        )


def test_quarter_and_year_periods_clip_to_the_settled_range():
    q = split_periods(NOV_START, NOV_END, "quarter")
    assert q == [(NOV_START, NOV_END)]
    y0, _ = period_bounds("2026-01")
    _, y1 = period_bounds("2026-12")
    quarters = split_periods(y0, y1, "quarter")
    assert len(quarters) == 4 and quarters[1][0] == period_bounds("2026-04")[0]
    assert split_periods(y0, y1, "year") == [(y0, y1)]
    s = settle_exchange(
        ContractTerms("c", "x1", "a", "b", FixedPrice(1.0), settlement_period="quarter"), hist([1.0]), *q[0]
    )
    assert s.delivered_mwh == 1.0


def test_energy_per_step_holds_each_sample_up_to_the_gap_limit():
    from symtwin.contracts.settlement import energy_per_step

    t = np.array([0.0, 3600.0, 7200.0, 18000.0])
    p = np.array([1e6, 2e6, 3e6, np.nan])  # W
    e = energy_per_step(t, p, end=21600.0, max_gap_s=3600.0)
    # 1 MW·1 h, 2 MW·1 h, 3 MW held 1 h only (then a 2 h outage), NaN → 0
    assert e == pytest.approx([1.0, 2.0, 3.0, 0.0])
    with pytest.raises(SettlementError):
        energy_per_step(np.array([1.0, 1.0]), np.array([1.0, 1.0]), 2.0, 10.0)
