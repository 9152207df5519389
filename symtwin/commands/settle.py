"""Settle the contracts for a period and write a report per party (filtered by the sharing policy) and a park summary.

  symtwin settle CONFIG --period 2026-11 [--inputs FILE] [--coalitions] [--store local|influx]
                 [--history FILE] [--out DIR]

Delivered energy comes from the history: the local store (``adapters.history.path`` in the config, or
``--history``) or, with ``--store influx``, the configured InfluxDB (Flux) or victoria-metrics (export
API) — the series ``exchange.<exchange id>.heat_flow`` [W] of each exchange, each sample held until the
next (at most ``--max-gap``). Gas and CO2 prices for indexed contracts come from
``controller.prices.<--gas-price>`` and ``controller.co2_price``.

Each party's stand-alone counterfactual and its operating cost are computed with the twin and the
baseline controller over the period (``symtwin.contracts.counterfactual``: the party's own units
only, exchanges removed, a notional gas boiler where its own boilers cannot meet its demand; the
operating cost is the whole park run by the baseline). So are the supplier's cost and the receiver's
avoided cost per exchange (averages) for cost-plus and share-of-savings contracts. ``--coalitions``
also runs every coalition of parties (2^n - n - 1 more runs) so the Shapley reference uses real
coalition savings instead of the exchange game. Progress goes to stderr.

``--inputs`` is an optional JSON file whose values override the computed ones (e.g. metered operating
costs); if it gives both costs of every party, no twin run is made::

  {"parties": {"<party>": {"standalone_cost_eur": 0, "operating_cost_eur": 0,
                           "standalone_co2_t": 0, "operating_co2_t": 0,
                           "standalone_fuel_mwh": 0, "operating_fuel_mwh": 0}},
   "exchanges": {"<exchange>": {"supplier_cost_eur_per_mwh": 0, "receiver_alt_eur_per_mwh": 0}},
   "coalitions": [{"parties": ["<party>", ...], "savings_eur": 0}]}
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from symtwin.commands._common import add_config_argument, load_or_exit
from symtwin.config import LoadedSite

if TYPE_CHECKING:
    from symtwin.contracts.settlement import ContractTerms, PartyLedger

EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (__doc__ or "").split("\n", 1)[1].strip()
    add_config_argument(parser)
    parser.add_argument("--period", required=True, help="YYYY-MM (a month), YYYY-MM-DD or YYYY-Www")
    parser.add_argument(
        "--inputs", type=Path, default=None, help="values overriding the computed ones (JSON, see below)"
    )
    parser.add_argument(
        "--coalitions",
        action="store_true",
        help="run every coalition on the twin for the Shapley reference (slow: 2^n - n - 1 more runs)",
    )
    parser.add_argument(
        "--store",
        choices=("local", "influx"),
        default="local",
        help="history source: the local store (default) or adapters.influx (InfluxDB or victoria-metrics)",
    )
    parser.add_argument(
        "--notional-fuel",
        default="natural_gas",
        help="fuel of the notional boiler (a controller.prices name)",
    )
    parser.add_argument(
        "--notional-efficiency",
        type=float,
        default=0.9,
        help="efficiency of the notional boiler (default 0.9)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
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
    """A controller price [€/MWh] at ``times`` [s since epoch]: ``controller.prices.<name>``, a constant
    (``"40 EUR/MWh"``) or a profile id (profile time 0 = ``site.start``); None if there is no such price."""
    import numpy as np

    from symtwin.runtime.twin_tracker import site_epoch
    from symtwin.units import parse_quantity

    value = site.config.controller.prices.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value in site.profiles:
        t0 = site_epoch(site.config.site.start, 0.0)
        return site.profiles[value].at(np.asarray(times, dtype=float) - t0) * 3.6e9  # EUR/J -> EUR/MWh
    return np.full(len(times), parse_quantity(value, "EUR/J") * 3.6e9)


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


def _open_store(site: LoadedSite, args: argparse.Namespace) -> Any:
    """The history to settle from: the local store, or the configured InfluxDB / victoria-metrics."""
    cfg = site.config
    if args.store == "influx":
        from adapters.influx.reader import InfluxReader, QueryApi, ReaderParams
        from symtwin.secrets import resolve

        ic = cfg.adapters.influx
        if ic is None:
            raise InputError("--store influx: the config has no adapters.influx section")
        token = resolve(ic.token, "InfluxDB token", None) or ""
        return InfluxReader(ReaderParams(ic.url, ic.org, ic.bucket, token, QueryApi(ic.query_api)))
    from adapters.store.history import HistoryParams, LocalHistory

    history_path = args.history or Path(cfg.adapters.history.path)
    if not history_path.is_absolute() and args.history is None:
        history_path = site.path.parent / history_path
    if not history_path.exists():
        raise InputError(f"history store {history_path} does not exist (give --history)")
    return LocalHistory(HistoryParams(history_path, retention_s=math.inf))


def _needs_twin(inputs: dict[str, Any], parties: list[str], coalitions: bool) -> bool:
    """False when the inputs give both costs of every party (and coalition savings if asked for)."""
    given = inputs.get("parties", {})
    for p in parties:
        entry = given.get(p)
        if not isinstance(entry, dict) or not {"standalone_cost_eur", "operating_cost_eur"} <= set(entry):
            return True
    return coalitions and "coalitions" not in inputs


def _ledgers(parties: list[str], inputs: dict[str, Any], computed: Any | None) -> list[PartyLedger]:
    from symtwin.contracts.settlement import PartyLedger

    party_inputs = inputs.get("parties", {})
    base = {lg.party: lg for lg in computed.ledgers(parties)} if computed is not None else {}
    out = []
    for party in parties:
        entry = party_inputs.get(party, {})
        if not isinstance(entry, dict):
            raise InputError(f"parties.{party}: expected an object")
        w = f"parties.{party}"
        lg = base.get(party)

        def val(key: str, fallback: float | None, entry: dict[str, Any] = entry, w: str = w) -> float:
            if key in entry or fallback is None:
                return _num(entry, key, w, None if fallback is None else fallback)
            return fallback

        zero_or = (lambda x: x) if lg is not None else (lambda x: 0.0)
        out.append(
            PartyLedger(
                party,
                val("standalone_cost_eur", lg.standalone_cost_eur if lg else None),
                val("operating_cost_eur", lg.operating_cost_eur if lg else None),
                val("standalone_co2_t", zero_or(lg.standalone_co2_t if lg else 0.0)),
                val("operating_co2_t", zero_or(lg.operating_co2_t if lg else 0.0)),
                val("standalone_fuel_mwh", zero_or(lg.standalone_fuel_mwh if lg else 0.0)),
                val("operating_fuel_mwh", zero_or(lg.operating_fuel_mwh if lg else 0.0)),
            )
        )
    return out


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from adapters.base import AdapterError
    from controllers.baseline import BaselineError
    from symtwin.commands.governance import load_policy_or_exit
    from symtwin.contracts.counterfactual import CounterfactualError, NotionalBoiler, compute_counterfactual
    from symtwin.contracts.pricing import PricingError
    from symtwin.contracts.report import write_reports
    from symtwin.contracts.settlement import (
        ExchangeHistory,
        SettlementError,
        energy_per_step,
        period_bounds,
        settle_park,
    )
    from symtwin.contracts.shapley import ShapleyError
    from symtwin.governance.audit import AuditLog
    from symtwin.runtime.twin_tracker import site_epoch
    from symtwin.units import parse_quantity
    from twin.park import ParkBuildError

    site = load_or_exit(args.config)
    policy = load_policy_or_exit(site)
    cfg = site.config
    parties = [p.id for p in cfg.parties]

    def progress(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    try:
        start, end = period_bounds(args.period)
        max_gap = parse_quantity(args.max_gap, "s")
        inputs: dict[str, Any] = {}
        if args.inputs is not None:
            loaded = json.loads(args.inputs.read_text())
            if not isinstance(loaded, dict):
                raise InputError("the top level must be an object")
            inputs = loaded
        if not 0.0 < args.notional_efficiency <= 1.0:
            raise InputError(f"--notional-efficiency {args.notional_efficiency}: must be within (0, 1]")
        for who, entry in inputs.get("parties", {}).items():  # fail on a bad value before any twin run
            if who not in parties or not isinstance(entry, dict):
                raise InputError(f"parties.{who}: expected an object for a party of the site")
            for key in entry:
                _num(entry, key, f"parties.{who}")
        computed = None
        if _needs_twin(inputs, parties, args.coalitions):
            t0 = time.perf_counter()
            offset = start - site_epoch(cfg.site.start, start)  # profile time of the period's start
            progress(
                f"computing the counterfactual on the twin with the baseline over {args.period} "
                f"({(end - start) / 86400:.0f} d{', every coalition' if args.coalitions else ''}) ..."
            )
            computed = compute_counterfactual(
                site,
                offset,
                end - start,
                coalitions=args.coalitions and "coalitions" not in inputs,
                boiler=NotionalBoiler(efficiency=args.notional_efficiency, fuel=args.notional_fuel),
                progress=progress,
            )
            progress(f"counterfactual: {computed.runs} runs in {time.perf_counter() - t0:.1f} s")
            for note in computed.notes:
                progress(f"  {note}")
        ledgers = _ledgers(parties, inputs, computed)
        coalitions = None
        if "coalitions" in inputs:
            coalitions = {
                frozenset(c["parties"]): _num(c, "savings_eur", "coalitions[]") for c in inputs["coalitions"]
            }
        elif computed is not None and computed.coalition_savings is not None:
            # the ledgers may be overridden: keep v(all) = the settled total, as the Shapley value needs
            v = dict(computed.coalition_savings)
            v[frozenset(parties)] = sum(lg.standalone_cost_eur - lg.operating_cost_eur for lg in ledgers)
            coalitions = v

        store = _open_store(site, args)
        try:
            contracts = contract_terms_from_site(site)
            histories: dict[str, ExchangeHistory] = {}
            co2 = parse_quantity(cfg.controller.co2_price, "EUR/kg") * 1000.0
            for e in cfg.exchanges:
                samples = store.query(f"exchange.{e.id}.heat_flow", start, end, max_points=10**9)
                t = np.array([s.timestamp for s in samples], dtype=float)
                p = np.array([s.value if s.is_usable() else math.nan for s in samples], dtype=float)
                x = dict(inputs.get("exchanges", {}).get(e.id, {}))
                if computed is not None:
                    x.setdefault("supplier_cost_eur_per_mwh", computed.supplier_cost_eur_per_mwh[e.id])
                    x.setdefault("receiver_alt_eur_per_mwh", computed.receiver_alt_eur_per_mwh[e.id])
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
        notes: dict[str, list[str]] = {}
        for note in computed.notes if computed is not None else ():
            who, _, text = note.partition(": ")
            notes.setdefault(who, []).append(text)
        files = write_reports(park, policy, series, out, site_name=site.name, audit=audit, notes=notes)
    except (
        InputError,
        SettlementError,
        PricingError,
        ShapleyError,
        CounterfactualError,
        BaselineError,
        ParkBuildError,
        AdapterError,
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
    if computed is not None:
        for who in parties:
            a, b = computed.standalone[who], computed.operating[who]
            print(
                f"  {who:<12} stand-alone {a.cost_eur:>12,.0f} EUR (unmet {a.unmet_mwh:,.1f} MWh), "
                f"operated {b.cost_eur:>12,.0f} EUR (unmet {b.unmet_mwh:,.1f} MWh)"
            )
    for name, paths in files.parties.items():
        print(f"  {name:<12} {paths[0]}")
    print(f"  park summary {files.park[0]}")
    return 0
