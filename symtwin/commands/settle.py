"""Settle the contracts for a period and write a report per party (filtered by the sharing policy) and a park summary.

  symtwin settle CONFIG --period 2026-11 --inputs counterfactual.json [--history FILE] [--out DIR]

Delivered energy comes from the history store (``adapters.history.path`` in the config, or
``--history``): the series ``exchange.<exchange id>.heat_flow`` [W] of each exchange, each sample held
until the next (at most ``--max-gap``). Gas and CO2 prices for indexed contracts come from
``controller.prices.<--gas-price>`` and ``controller.co2_price``.

``--inputs`` is a JSON file with what the history cannot give: each party's stand-alone
counterfactual and its operating cost, the supplier's cost and the receiver's avoided cost per
exchange (for cost-plus and share-of-savings contracts), and optionally the saving of every
coalition for the Shapley reference::

  {"parties": {"<party>": {"standalone_cost_eur": 0, "operating_cost_eur": 0,
                           "standalone_co2_t": 0, "operating_co2_t": 0,
                           "standalone_fuel_mwh": 0, "operating_fuel_mwh": 0}},
   "exchanges": {"<exchange>": {"supplier_cost_eur_per_mwh": 0, "receiver_alt_eur_per_mwh": 0}},
   "coalitions": [{"parties": ["<party>", ...], "savings_eur": 0}]}
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from symtwin.commands._common import add_config_argument, load_or_exit
from symtwin.config import LoadedSite

if TYPE_CHECKING:
    from symtwin.contracts.settlement import ContractTerms

EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (__doc__ or "").split("\n", 1)[1].strip()
    add_config_argument(parser)
    parser.add_argument("--period", required=True, help="YYYY-MM (a month), YYYY-MM-DD or YYYY-Www")
    parser.add_argument(
        "--inputs", type=Path, required=True, help="counterfactual and cost inputs (JSON, see above)"
    )
    parser.add_argument(
        "--history", type=Path, default=None, help="history store file (default: adapters.history.path)"
    )
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: reports/<period>)")
    parser.add_argument(
        "--audit", type=Path, default=None, help="append each report to this audit log (JSON lines)"
    )
    parser.add_argument(
        "--gas-price", default="natural_gas", help="name of the gas price in controller.prices"
    )
    parser.add_argument("--max-gap", default="1 h", help="longest a power sample is held (default 1 h)")


class InputError(ValueError):
    pass


def _num(obj: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{where}.{key}: expected a number, got {value!r}")
    return float(value)


def _price_series(site: Any, name: str, times: Any) -> Any:
    """A controller price [€/MWh] at ``times`` [s since epoch]: a constant or a profile (site start = t 0)."""
    import numpy as np

    value = site.prices.get(name)
    if value is None:
        return None
    if isinstance(value, int | float):
        return np.full(len(times), float(value) * 3.6e9)  # EUR/J -> EUR/MWh
    start = site.config.site.start
    t0 = dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC).timestamp() if start else 0.0
    return site.profiles[value].at(np.asarray(times, dtype=float) - t0) * 3.6e9


def contract_terms_from_site(site: LoadedSite) -> list[ContractTerms]:
    """One :class:`ContractTerms` per exchange of the site config (supplier and receiver from its connection)."""
    from symtwin.contracts.pricing import price_rule_from_config
    from symtwin.contracts.settlement import ContractTerms

    by_id = {c.id: c for c in site.config.contracts}
    out = []
    for e in site.config.exchanges:
        c = by_id[e.contract]
        supplier, receiver = site.exchange_parties(e)
        # The schema's penalty defaults to 0; only an explicit rate is one. Unset: the contract price.
        penalty = c.penalty_eur_per_mwh if "penalty_eur_per_mwh" in c.model_fields_set else None
        out.append(
            ContractTerms(
                c.id,
                e.id,
                supplier,
                receiver,
                price_rule_from_config(c.price.model_dump()),
                c.min_delivery_mwh or None,
                c.max_delivery_mwh,
                c.take_or_pay_fraction,
                penalty,
                c.settlement_period,
            )
        )
    return out


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from adapters.store.history import HistoryParams, LocalHistory
    from symtwin.commands.governance import load_policy_or_exit
    from symtwin.contracts.pricing import PricingError
    from symtwin.contracts.report import write_reports
    from symtwin.contracts.settlement import (
        ExchangeHistory,
        PartyLedger,
        SettlementError,
        energy_per_step,
        period_bounds,
        settle_park,
    )
    from symtwin.contracts.shapley import ShapleyError
    from symtwin.governance.audit import AuditLog
    from symtwin.units import parse_quantity

    site = load_or_exit(args.config)
    policy = load_policy_or_exit(site)
    cfg = site.config
    try:
        start, end = period_bounds(args.period)
        max_gap = parse_quantity(args.max_gap, "s")
        inputs = json.loads(args.inputs.read_text())
        if not isinstance(inputs, dict):
            raise InputError("the top level must be an object")
        party_inputs = inputs.get("parties", {})
        ledgers = []
        for party in cfg.parties:
            entry = party_inputs.get(party.id)
            if not isinstance(entry, dict):
                raise InputError(
                    f"parties.{party.id}: missing (stand-alone and operating cost are needed for every party)"
                )
            w = f"parties.{party.id}"
            ledgers.append(
                PartyLedger(
                    party.id,
                    _num(entry, "standalone_cost_eur", w),
                    _num(entry, "operating_cost_eur", w),
                    _num(entry, "standalone_co2_t", w, 0.0),
                    _num(entry, "operating_co2_t", w, 0.0),
                    _num(entry, "standalone_fuel_mwh", w, 0.0),
                    _num(entry, "operating_fuel_mwh", w, 0.0),
                )
            )
        coalitions = None
        if "coalitions" in inputs:
            coalitions = {
                frozenset(c["parties"]): _num(c, "savings_eur", "coalitions[]") for c in inputs["coalitions"]
            }

        history_path = args.history or Path(cfg.adapters.history.path)
        if not history_path.is_absolute() and args.history is None:
            history_path = site.path.parent / history_path
        if not history_path.exists():
            raise InputError(f"history store {history_path} does not exist (give --history)")
        store = LocalHistory(HistoryParams(history_path, retention_s=math.inf))
        try:
            contracts = contract_terms_from_site(site)
            histories: dict[str, ExchangeHistory] = {}
            co2 = parse_quantity(cfg.controller.co2_price, "EUR/kg") * 1000.0
            for e in cfg.exchanges:
                samples = store.query(f"exchange.{e.id}.heat_flow", start, end, max_points=10**9)
                t = np.array([s.timestamp for s in samples], dtype=float)
                p = np.array([s.value if s.is_usable() else math.nan for s in samples], dtype=float)
                x = inputs.get("exchanges", {}).get(e.id, {})
                n = t.size

                def const(key: str, x: dict[str, Any] = x, n: int = n, eid: str = e.id) -> Any:
                    return np.full(n, _num(x, key, f"exchanges.{eid}")) if key in x else None

                histories[e.id] = ExchangeHistory(
                    e.id,
                    t,
                    energy_per_step(t, p, end, max_gap),
                    _price_series(site, args.gas_price, t),
                    np.full(n, co2),
                    const("supplier_cost_eur_per_mwh"),
                    const("receiver_alt_eur_per_mwh"),
                )
            park = settle_park(args.period, start, end, contracts, histories, ledgers, coalitions)
            series = []
            for tag in site.tags:
                series.extend(store.query(tag, start, end, max_points=5000))
        finally:
            store.close()
        out = args.out or Path("reports") / args.period
        audit = AuditLog(args.audit) if args.audit else None
        files = write_reports(park, policy, series, out, site_name=site.name, audit=audit)
    except (
        InputError,
        SettlementError,
        PricingError,
        ShapleyError,
        OSError,
        json.JSONDecodeError,
        KeyError,
    ) as exc:
        print(f"symtwin settle: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"settled {len(park.exchanges)} contract periods for {args.period}: park saving {park.total_savings_eur:,.0f} EUR, "
        f"CO2 avoided {park.co2_avoided_t:,.1f} t, {park.delivered_mwh:,.1f} MWh exchanged"
    )
    for name, paths in files.parties.items():
        print(f"  {name:<12} {paths[0]}")
    print(f"  park summary {files.park[0]}")
    return 0
