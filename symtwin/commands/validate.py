"""Check a site config and print a summary of the park (parties, units, exchanges, tags)."""

from __future__ import annotations

import argparse
from collections import Counter

from symtwin.commands._common import add_config_argument, load_or_exit
from symtwin.config import LoadedSite
from symtwin.units import from_si


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def _fmt(value: float, unit: str) -> str:
    display = {"W": "MW", "kg/s": "kg/s", "Pa": "bar", "K": "degC", "m3": "m3", "1": "1"}.get(unit)
    if display is None:
        return f"{value:g} {unit}"
    return f"{from_si(value, display):.4g} {display}"


def summary(site: LoadedSite) -> str:
    cfg = site.config
    lines = [f"Park {cfg.site.name!r}: {len(cfg.parties)} parties, {len(cfg.units)} units, "
             f"{len(cfg.connections)} connections, {len(cfg.exchanges)} exchanges, {len(cfg.tags)} tags, "
             f"{len(cfg.profiles)} profiles, {len(cfg.contracts)} contracts"]
    lines.append("")
    lines.append("Parties and their units:")
    for party in cfg.parties:
        lines.append(f"  {party.id:<10} {party.name}")
        for u in cfg.units:
            if u.owner == party.id:
                p = site.unit_params[u.id]
                main = next((k for k in ("capacity", "steam_capacity", "fuel_capacity", "design_load", "design_flow",
                                         "volume", "ua", "length") if k in p), None)
                size = f"  ({main} {_fmt(p[main], _unit_of(u.model, main))})" if main else ""
                lines.append(f"    - {u.id:<18} {u.model}{size}")
    if cfg.exchanges:
        lines.append("")
        lines.append("Exchanges (supplier -> receiver, medium, contract):")
        for e in cfg.exchanges:
            conn = site.connection_by_id[e.connection]
            supplier, receiver = site.exchange_parties(e)
            medium = site.park_spec().connections[cfg.connections.index(conn)].medium
            price = next(c.price.rule for c in cfg.contracts if c.id == e.contract)
            lines.append(f"  {e.id:<24} {supplier} -> {receiver}  {conn.source} -> {conn.target}  "
                         f"[{medium}]  contract {e.contract} ({price})")
    lines.append("")
    by_dir = Counter(t.direction.value for t in site.tags.values())
    by_proto = Counter(("opcua" if t.binding.opcua else "mqtt" if t.binding.mqtt else "sim") for t in site.tags.values())
    lines.append(f"Tags: {by_dir.get('measurement', 0)} measurements, {by_dir.get('setpoint', 0)} setpoints "
                 f"({', '.join(f'{n} {k}' for k, n in sorted(by_proto.items()))})")
    for t in site.tags.values():
        if t.bounds_si is not None:
            lines.append(f"  setpoint {t.id:<28} {t.key:<32} bounds [{t.from_si(t.bounds_si[0]):g}, "
                         f"{t.from_si(t.bounds_si[1]):g}] {t.eng_unit}, safe {t.from_si(t.safe_value_si or 0):g}")
    c = cfg.controller
    lines.append("")
    lines.append(f"Controller: {c.kind}, mode {c.mode.value}, period {c.period}, horizon {c.horizon} "
                 f"in steps of {c.step}")
    return "\n".join(lines)


def _unit_of(model: str, param: str) -> str:
    from twin.catalog import UNIT_MODELS

    p = UNIT_MODELS[model].param(param)
    return p.unit if p else "1"


def run(args: argparse.Namespace) -> int:
    site = load_or_exit(args.config)
    print(summary(site))
    print(f"\n{args.config}: OK")
    return 0
