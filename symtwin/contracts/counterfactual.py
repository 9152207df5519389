"""Each party's stand-alone counterfactual, its operating cost and every coalition's saving, computed
with the twin and the baseline controller.

A **coalition park** (:func:`coalition_park`) is the site restricted to the units of a set of parties:

- only those parties' units, and only the connections among them (an exchange with a party outside
  is removed: neither the heat nor the steam crosses);
- a heat pump whose heat source, or a heat exchanger whose hot side, was connected and came only from
  outside parties cannot run and is left out (the twin would feed it a default stream: free heat); one
  with no such connection at all keeps its own source (e.g. ambient or wastewater);
- a steam consumer that lost its header gets a **notional header** of its own party (the parameters
  of the header it was on), so its own boilers can supply it;
- a network cut off that way whose own boilers (firm capacity: gas boilers, CHP; not heat pumps,
  surplus heat or storage) fall short of its design demand gets a **notional gas boiler** of its party
  for the difference, up to 1.25 x the design demand (steam at 2.8 MJ/kg for sizing): efficiency
  ``NotionalBoiler.efficiency`` (0.9), fuel at the controller price ``NotionalBoiler.fuel`` (natural
  gas), 202 kg CO2/MWh fuel (IPCC default for natural gas), minimum load 5 %, no capital cost. This is the explicit answer to "a party with demand but no (or too small a) boiler of its own": stand-alone
  it would have to burn gas itself, and the twin and the baseline dispatch that boiler like any other
  (after the party's own). The park as operated (all parties) is never changed.
- demand still unmet in a run (the baseline lets the header pressure sag a few per cent below
  nominal, ramps, a short supply in the park as operated) is priced at what the notional boiler's gas
  would have cost to cover it: ``(fuel price + 202 kg/MWh x CO2 price) / efficiency`` (period means),
  in every run alike. Not at ``controller.unmet_demand_penalty``: that is a weight for the MPC (2000
  €/MWh), and a few per cent of unmet steam at it would outweigh every real cost in the comparison.
- heat a storage tank gives up over a run (stored at the start less at the end) is charged to its owner
  at the same price, and heat it gains credited: every run starts from the same settled state, so
  without this a tank full at the start would be free energy (over a day it can cover the whole load).

Each park runs in closed loop with the baseline (``controllers.baseline``) on the twin over the
settlement period, through :func:`controllers.evaluate.closed_loop` (perfect forecasts from the
config's profiles and prices), after the same warm-up as ``symtwin evaluate`` (6 h settled at the safe
setpoints, then 6 h of the baseline). A party's cost is :func:`controllers.evaluate.kpis` over its own
units only: fuel + CO2 + electricity (heat pumps bought, CHP power sold) + its unmet demand as
above; contract payments are not in it (the settlement adds them).

- stand-alone cost of party i: the park of {i} alone;
- operating cost of party i: the full park operated by the baseline (so the measured saving is the
  symbiosis's, not the controller's); metered figures can override it (``settle --inputs``);
- coalition saving ``v(S) = Σ_{i∈S} standalone_i − Σ_{i∈S} cost_i(park of S)``; ``v({i}) = 0`` and
  ``v(all) = the park's total saving`` by construction. 2^n − n − 1 extra runs (11 for 4 parties).

For cost-plus and share-of-savings contracts the settlement also needs each exchange's supplier cost
and the receiver's avoided cost [€/MWh]; derived here as averages over the period: the supplier's
operating cost (without penalty, at least 0) per MWh it delivered through its exchanges in the
operated run, and the receiver's stand-alone cost per MWh of its demand.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controllers import evaluate as ev
from symtwin.contracts.settlement import PartyLedger
from twin.spec import ConnectionSpec, ParkSpec, UnitSpec

log = logging.getLogger(__name__)

__all__ = [
    "CoalitionPark",
    "Counterfactual",
    "CounterfactualError",
    "NotionalBoiler",
    "PartyFigures",
    "coalition_park",
    "compute_counterfactual",
]

WARMUP_S = 6 * 3600.0  # [s] as `symtwin evaluate`: settled, then 6 h of the baseline before every run
STEAM_DH_J_KG = 2.8e6  # [J/kg] sizing only: saturated steam at ~10 bar less feedwater, rounded up
_DEMANDS = ("heat_demand", "steam_consumer")


class CounterfactualError(ValueError):
    """The counterfactual cannot be computed (e.g. the notional boiler's fuel has no price)."""


@dataclass(frozen=True)
class NotionalBoiler:
    """The gas boiler a party without its own producer would run stand-alone (see the module docstring).

    efficiency [-]; co2_kg_per_mwh: per MWh of fuel [kg/MWh]; fuel: a name in ``controller.prices``;
    oversize: capacity / design demand served [-]; min_load [-].
    """

    efficiency: float = 0.9
    co2_kg_per_mwh: float = 202.0
    fuel: str = "natural_gas"
    oversize: float = 1.25
    min_load: float = 0.05


@dataclass(frozen=True)
class CoalitionPark:
    """The park of a set of parties: its spec, the notional units added (unit → party) and the units
    left out, with a sentence each for the report."""

    parties: frozenset[str]
    spec: ParkSpec
    notional: Mapping[str, str]
    dropped: tuple[str, ...]
    notes: tuple[str, ...]


def _component(
    conns: Sequence[ConnectionSpec], models: Mapping[str, str], start: str, steam: bool
) -> set[str]:
    """Units joined to ``start`` by steam connections, or by hot-water ones (not across an exchanger's hot
    side or a heat pump's source, as the twin's network rule)."""
    seen, todo = {start}, [start]
    while todo:
        cur = todo.pop()
        for c in conns:
            if (c.medium == "steam") != steam:
                continue
            for a, ap, z, zp in (
                (c.source, c.source_port, c.target, c.target_port),
                (c.target, c.target_port, c.source, c.source_port),
            ):
                if a != cur or z in seen:
                    continue
                if not steam and any(
                    (models[u] == "heat_exchanger" and p in ("hot_in", "hot_out"))
                    or (models[u] == "heat_pump" and p == "source_in")
                    for u, p in ((a, ap), (z, zp))
                ):
                    continue
                seen.add(z)
                todo.append(z)
    return seen


def coalition_park(
    spec: ParkSpec, parties: Iterable[str], boiler: NotionalBoiler = NotionalBoiler()
) -> CoalitionPark:
    """The park of ``parties`` (see the module docstring); raises if a party owns no unit."""
    members = frozenset(parties)
    by_name = {u.name: u for u in spec.units}
    models = {u.name: u.model for u in spec.units}
    kept = {u.name for u in spec.units if u.owner in members}
    notes: list[str] = []
    dropped = []
    # the twin gives a heat pump or an exchanger with nothing on its source / hot side a default stream
    # (free heat): one whose source belonged to another party cannot run and is left out
    feed_port = {"heat_pump": ("source_in", "heat source"), "heat_exchanger": ("hot_in", "hot side")}
    for u in spec.units:
        if u.name in kept and u.model in feed_port:
            port, what = feed_port[u.model]
            sources = [c.source for c in spec.connections if c.target == u.name and c.target_port == port]
            if sources and not any(s in kept for s in sources):
                dropped.append(u.name)
                notes.append(
                    f"{u.owner}: {u.model.replace('_', ' ')} {u.name} left out "
                    f"(its {what} {', '.join(sources)} is another party's)"
                )
    kept -= set(dropped)
    units: list[UnitSpec] = [u for u in spec.units if u.name in kept]
    conns: list[ConnectionSpec] = [c for c in spec.connections if c.source in kept and c.target in kept]
    notional: dict[str, str] = {}

    def add(unit: UnitSpec) -> None:
        units.append(unit)
        models[unit.name] = unit.model
        notional[unit.name] = unit.owner

    # Steam: a consumer cut from its header gets a header of its own party; no producer there: a notional boiler.
    for u in list(units):
        if u.model != "steam_consumer":
            continue
        comp = _component(conns, models, u.name, steam=True)
        if any(models[n] == "steam_header" for n in comp):
            continue
        old = next(
            (
                c.source
                for c in spec.connections
                if c.target == u.name and c.medium == "steam" and models[c.source] == "steam_header"
            ),
            None,
        )
        header = f"standalone_header_{u.owner}"
        if header not in models:
            params = dict(by_name[old].params) if old else {"volume": 10.0}
            add(UnitSpec(header, "steam_header", u.owner, params))
            notes.append(f"{u.owner}: notional steam header {header} (parameters of {old or 'the default'})")
        conns.append(ConnectionSpec(header, "steam_out", u.name, "steam_in", "steam"))
    for u in list(units):
        if u.model != "steam_header" or u.name not in notional:
            continue
        comp = _component(conns, models, u.name, steam=True)
        firm = sum(_firm_capacity_w(by_name[n], steam=True) for n in comp if n in by_name)
        need = (
            boiler.oversize
            * STEAM_DH_J_KG
            * sum(by_name[n].params["design_flow"] for n in comp if models[n] == "steam_consumer")
        )
        if firm >= need / boiler.oversize:
            continue
        name = f"notional_steam_boiler_{u.owner}"
        add(
            UnitSpec(
                name,
                "gas_boiler",
                u.owner,
                {
                    "capacity": need - firm,
                    "medium": 1.0,
                    "steam_pressure": u.params.get("nominal_pressure", 1e6),
                    "min_load": boiler.min_load,
                    "efficiency": boiler.efficiency,
                    "co2_per_fuel": boiler.co2_kg_per_mwh / 3.6e9,
                },
            )
        )
        conns.append(ConnectionSpec(name, "steam_out", u.name, "steam_in", "steam"))
        notes.append(
            f"{u.owner}: notional gas steam boiler {name}, {(need - firm) / 1e6:.0f} MW "
            f"(its own steam boilers: {firm / 1e6:.0f} MW)"
        )

    # Heat: a demand network that lost a feeder and whose boilers fall short of the design load gets a
    # notional hot-water boiler for the difference.
    for u in list(units):
        if u.model != "heat_demand":
            continue
        comp = _component(conns, models, u.name, steam=False)
        entries = [
            (c.target, c.target_port)
            for c in spec.connections
            if c.source not in kept
            and c.target in comp
            and c.medium != "steam"
            and not (models.get(c.target) == "heat_exchanger" and c.target_port == "hot_in")
        ]
        if not entries:
            continue
        firm = sum(_firm_capacity_w(by_name[n], steam=False) for n in comp if n in by_name)
        need = boiler.oversize * u.params["design_load"]
        if firm >= need / boiler.oversize:
            continue
        name = f"notional_heat_boiler_{u.name}"
        add(
            UnitSpec(
                name,
                "gas_boiler",
                u.owner,
                {
                    "capacity": need - firm,
                    "medium": 0.0,
                    "supply_temperature": u.params.get("max_supply_temperature", 360.15),
                    "min_load": boiler.min_load,
                    "efficiency": boiler.efficiency,
                    "co2_per_fuel": boiler.co2_kg_per_mwh / 3.6e9,
                },
            )
        )
        conns.append(ConnectionSpec(name, "heat_out", entries[0][0], entries[0][1], "hot_water"))
        notes.append(
            f"{u.owner}: notional gas boiler {name}, {(need - firm) / 1e6:.0f} MW, for {u.name} "
            f"(its own boilers: {firm / 1e6:.0f} MW)"
        )
    label = "+".join(sorted(members))
    return CoalitionPark(
        members,
        ParkSpec(f"{spec.name}_{label}", tuple(units), tuple(conns), spec.profiles),
        notional,
        tuple(dropped),
        tuple(notes),
    )


def _firm_capacity_w(u: UnitSpec, steam: bool) -> float:
    """Dispatchable capacity of a unit for steam or hot water [W]: boilers only (heat pumps and surplus heat
    depend on a source, storage only shifts heat)."""
    if u.model == "gas_boiler" and (round(u.params.get("medium", 0.0)) == 1) == steam:
        return float(u.params["capacity"])
    if u.model == "chp_boiler":
        return (
            float(u.params["steam_capacity"]) * STEAM_DH_J_KG if steam else float(u.params["heat_capacity"])
        )
    return 0.0


@dataclass(frozen=True)
class PartyFigures:
    """One party's figures over a run: cost [€] (fuel + CO2 + electricity + unmet demand at the notional
    boiler's cost), the same without the unmet demand, CO2 [t], fuel [MWh], unmet demand [MWh] and demand [MWh]."""

    cost_eur: float
    cost_no_penalty_eur: float
    co2_t: float
    fuel_mwh: float
    unmet_mwh: float
    demand_mwh: float


@dataclass
class Counterfactual:
    """What ``symtwin settle`` needs that history cannot give (see the module docstring)."""

    standalone: dict[str, PartyFigures]
    operating: dict[str, PartyFigures]
    coalition_savings: dict[frozenset[str], float] | None
    exchange_mwh: dict[str, float]  # delivered in the operated run
    supplier_cost_eur_per_mwh: dict[str, float]  # by exchange
    receiver_alt_eur_per_mwh: dict[str, float]  # by exchange
    notes: list[str] = field(default_factory=list)
    runs: int = 0
    wall_s: float = 0.0

    def ledgers(self, parties: Sequence[str]) -> list[PartyLedger]:
        return [
            PartyLedger(
                p,
                self.standalone[p].cost_eur,
                self.operating[p].cost_eur,
                self.standalone[p].co2_t,
                self.operating[p].co2_t,
                self.standalone[p].fuel_mwh,
                self.operating[p].fuel_mwh,
            )
            for p in parties
        ]


def _restrict(spec: ev.KpiSpec, units: set[str], extra_fuel: Mapping[str, tuple[str, float]]) -> ev.KpiSpec:
    fuel = {u: s for u, s in spec.fuel_price.items() if u in units}
    co2 = {u: f for u, f in spec.co2_per_fuel.items() if u in units}
    for u, (series, factor) in extra_fuel.items():
        if u in units:
            fuel[u], co2[u] = series, factor
    town = spec.town if spec.town in units else None
    return dataclasses.replace(
        spec,
        fuel_price=fuel,
        co2_per_fuel=co2,
        chps=tuple(u for u in spec.chps if u in units),
        heat_pumps=tuple(h for h in spec.heat_pumps if h[0] in units),
        surplus_hx=tuple(u for u in spec.surplus_hx if u in units),
        surplus_direct=tuple(u for u in spec.surplus_direct if u in units),
        town=town,
        town_design_w=spec.town_design_w if town else 0.0,
        steam=tuple(s for s in spec.steam if s[0] in units),
    )


class _Runner:
    """Closed-loop baseline runs of coalition parks over one period, sharing forecasts and KPI specs."""

    def __init__(
        self,
        site: Any,
        t_start: float,
        duration_s: float,
        boiler: NotionalBoiler,
        progress: Callable[[str], None] | None,
    ) -> None:
        from symtwin.runtime.wiring import ProfileForecasts
        from symtwin.units import parse_duration

        c = site.config.controller
        self.site = site
        self.t_start, self.duration_s, self.boiler = t_start, duration_s, boiler
        self.step_s = parse_duration(c.step)
        self.period_s = parse_duration(c.period)
        self.horizon = max(1, round(parse_duration(c.horizon) / self.step_s))
        self.spec = site.park_spec()
        self.kspec = ev.kpi_spec_from_site(site)
        self.setpoints = ev.setpoints_from_site(site)
        self.owner = {u.name: u.owner for u in self.spec.units}
        pf = ProfileForecasts(site, 0.0)
        self.series = set(pf.series)

        def forecasts(now: float, times: Any) -> dict[str, Any]:
            return {k: np.asarray(v, dtype=float) for k, v in pf(now, list(times)).items()}

        self.forecasts = forecasts
        self.progress = progress

    def run(
        self, parties: frozenset[str], label: str
    ) -> tuple[CoalitionPark, dict[str, PartyFigures], ev.Trace | None]:
        from controllers import baseline
        from twin.park import Park

        cp = coalition_park(self.spec, parties, self.boiler)
        fuel_series = f"price.{self.boiler.fuel}"
        if (
            cp.notional
            and any(m == "gas_boiler" for m in (u.model for u in cp.spec.units if u.name in cp.notional))
            and fuel_series not in self.series
        ):
            raise CounterfactualError(
                f"{label}: a notional gas boiler is needed but controller.prices has no {self.boiler.fuel!r}; "
                "add its price or name another fuel (--notional-fuel)"
            )
        names = {u.name for u in cp.spec.units}
        if not any(u.model in _DEMANDS for u in cp.spec.units):
            # no demand to meet: stand-alone, its boilers and surplus-heat sources would stand idle
            zero = PartyFigures(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
            return cp, dict.fromkeys(sorted(parties), zero), None
        park = Park.from_spec(cp.spec)
        sps = [s for s in self.setpoints if s.key.split(".", 1)[0] in names]
        for u in cp.spec.units:
            if u.name in cp.notional and u.model == "gas_boiler":
                key = f"{u.name}.load_setpoint"
                sps.append(ev.SetpointSpec(key, key, 0.0, 1.0, math.inf, 0.0))
        setpoints = tuple(sps)
        ctl = baseline.from_park_spec(cp.spec, {s.key: s.tag for s in setpoints}, self.step_s)
        x_settled = park.settle(
            np.asarray(
                park.input_schedule({s.key: s.safe for s in setpoints})(self.t_start - WARMUP_S), dtype=float
            ),
            WARMUP_S,
        )
        common: dict[str, Any] = dict(period_s=self.period_s, horizon_steps=self.horizon)
        warm, _ = ev.closed_loop(
            park,
            ctl.step,
            self.forecasts,
            setpoints,
            t_start=self.t_start - WARMUP_S,
            duration_s=WARMUP_S,
            x0=x_settled,
            **common,
        )
        ctl = baseline.from_park_spec(cp.spec, {s.key: s.tag for s in setpoints}, self.step_s)
        n_days = max(1, round(self.duration_s / 86400.0))

        def step_progress(i: int, total: int) -> None:
            if self.progress is not None and n_days > 1 and i % max(1, total // n_days * 7) == 0:
                self.progress(f"  {label}: {i}/{total} control periods")

        trace, results = ev.closed_loop(
            park,
            ctl.step,
            self.forecasts,
            setpoints,
            t_start=self.t_start,
            duration_s=self.duration_s,
            x0=warm.x_end,
            current0=warm.current_end,
            progress=step_progress,
            **common,
        )
        extra = {u: (fuel_series, self.boiler.co2_kg_per_mwh / 3.6e9) for u in cp.notional}
        owner = dict(self.owner) | dict(cp.notional)
        unmet_eur_mwh = self._unmet_price(trace)
        assert warm.x_end is not None and trace.x_end is not None
        drawn = _storage_drawn_mwh(cp.spec, park.state_names, warm.x_end, trace.x_end)
        figures = {}
        for p in sorted(parties):
            mine = {n for n in names if owner[n] == p}
            k = ev.kpis(trace, _restrict(self.kspec, mine, extra), self.forecasts, results)
            figures[p] = PartyFigures(
                k.cost_eur + (k.unmet_mwh + sum(drawn.get(n, 0.0) for n in mine)) * unmet_eur_mwh,
                k.cost_eur,
                k.co2_t,
                _fuel_mwh(trace, mine),
                k.unmet_mwh,
                k.heat_demand_mwh + _steam_demand_mwh(trace, self.kspec, mine),
            )
        return cp, figures, trace

    def _unmet_price(self, trace: ev.Trace) -> float:
        """[€/MWh] of unmet demand: the notional boiler's fuel and CO2 per MWh of heat, period means."""
        t = trace.times()
        fc = self.forecasts(float(t[0]), t)
        series = f"price.{self.boiler.fuel}"
        if series not in fc:
            raise CounterfactualError(
                f"controller.prices has no {self.boiler.fuel!r} to price unmet demand; add it or name "
                "another fuel (--notional-fuel)"
            )
        fuel = float(np.mean(fc[series])) * 3.6e9  # EUR/J -> EUR/MWh
        co2 = float(np.mean(fc.get("price.co2", np.zeros(1))))  # EUR/kg
        return (fuel + self.boiler.co2_kg_per_mwh * co2) / self.boiler.efficiency


def _storage_drawn_mwh(
    spec: ParkSpec, state_names: Sequence[str], x_start: np.ndarray, x_end: np.ndarray
) -> dict[str, float]:
    """Heat each storage tank gave up over a run [MWh] (negative: it ended fuller): layers of V/n of water
    at ρ = 975 kg/m3 and cp = 4186 J/(kg K) (liquid water near 70 °C, IAPWS-95 within 1 %)."""
    index = {n: i for i, n in enumerate(state_names)}
    out = {}
    for u in spec.units:
        if u.model != "storage_tank":
            continue
        layers = [i for n, i in index.items() if n.startswith(f"{u.name}.layer_temperature[")]
        m_layer = 975.0 * float(u.params["volume"]) / max(len(layers), 1)
        dt_k = float(np.sum(np.asarray(x_start)[layers]) - np.sum(np.asarray(x_end)[layers]))
        out[u.name] = m_layer * 4186.0 * dt_k / 3.6e9
    return out


def _minute_integral(trace: ev.Trace, name: str) -> float:
    """∫ column dt [column unit · s]; each minute sample stands for the minute after it (as ``kpis``)."""
    if name not in trace.cols:
        return 0.0
    t = trace.times()
    dt = float(np.median(np.diff(t))) if t.size > 1 else 60.0
    return float(np.sum(trace.column(name)) * dt)


def _fuel_mwh(trace: ev.Trace, units: set[str]) -> float:
    return sum(_minute_integral(trace, f"{u}.fuel_flow") for u in units) / 3.6e9


def _steam_demand_mwh(trace: ev.Trace, kspec: ev.KpiSpec, units: set[str]) -> float:
    kg = sum(_minute_integral(trace, f"{u}.demand") * design for u, design in kspec.steam if u in units)
    return kg * kspec.steam_dh_j_kg / 3.6e9


def _exchange_mwh(site: Any, trace: ev.Trace) -> dict[str, float]:
    """Heat delivered by each exchange in a run [MWh]: the source's heat output, or the target's where the
    source has none (a steam header), as the runtime reads exchange flows."""
    out = {}
    for e in site.config.exchanges:
        conn = site.connection_by_id[e.connection]
        source, target = conn.source.split(".")[0], conn.target.split(".")[0]
        side = source if f"{source}.heat_flow" in trace.cols else target
        out[e.id] = _minute_integral(trace, f"{side}.heat_flow") / 3.6e9
    return out


def compute_counterfactual(
    site: Any,
    t_start: float,
    duration_s: float,
    *,
    coalitions: bool = True,
    boiler: NotionalBoiler = NotionalBoiler(),
    progress: Callable[[str], None] | None = None,
) -> Counterfactual:
    """Stand-alone and operated runs (and, if ``coalitions``, every coalition of two or more parties short
    of the park) from profile time ``t_start`` [s] for ``duration_s`` [s]; see the module docstring."""
    wall0 = time.perf_counter()
    runner = _Runner(site, t_start, duration_s, boiler, progress)
    parties = [p.id for p in site.parties]
    everyone = frozenset(parties)
    subsets = (
        [frozenset(s) for r in range(2, len(parties)) for s in itertools.combinations(parties, r)]
        if coalitions
        else []
    )
    total = len(parties) + 1 + len(subsets)
    done = 0
    notes: list[str] = []

    def one(members: frozenset[str], label: str) -> tuple[dict[str, PartyFigures], ev.Trace | None]:
        nonlocal done
        t0 = time.perf_counter()
        cp, figures, trace = runner.run(members, label)
        done += 1
        if progress is not None:
            progress(f"counterfactual [{done}/{total}] {label}: {time.perf_counter() - t0:.1f} s")
        for n in cp.notes:
            if n not in notes and len(members) == 1:
                notes.append(n)
        return figures, trace

    standalone: dict[str, PartyFigures] = {}
    for p in parties:
        standalone[p] = one(frozenset([p]), f"stand-alone {p}")[0][p]
    operating, trace = one(everyone, "park as operated (baseline)")
    savings: dict[frozenset[str], float] | None = None
    if coalitions:
        savings = {
            frozenset(): 0.0,
            everyone: sum(standalone[p].cost_eur - operating[p].cost_eur for p in parties),
        }
        savings.update({frozenset([p]): 0.0 for p in parties})
        for s in subsets:
            figures = one(s, "coalition " + "+".join(sorted(s)))[0]
            savings[s] = sum(standalone[p].cost_eur - figures[p].cost_eur for p in s)
    delivered = (
        _exchange_mwh(site, trace) if trace is not None else {e.id: 0.0 for e in site.config.exchanges}
    )
    supplier_cost: dict[str, float] = {}
    receiver_alt: dict[str, float] = {}
    out_mwh: dict[str, float] = {}
    pairs = {e.id: site.exchange_parties(e) for e in site.config.exchanges}
    for eid, (supplier, _) in pairs.items():
        out_mwh[supplier] = out_mwh.get(supplier, 0.0) + delivered[eid]
    for eid, (supplier, receiver) in pairs.items():
        sent = out_mwh[supplier]
        supplier_cost[eid] = max(operating[supplier].cost_no_penalty_eur, 0.0) / sent if sent > 0 else 0.0
        own = standalone[receiver]
        receiver_alt[eid] = own.cost_eur / own.demand_mwh if own.demand_mwh > 0 else 0.0
    return Counterfactual(
        standalone,
        operating,
        savings,
        delivered,
        supplier_cost,
        receiver_alt,
        notes,
        done,
        time.perf_counter() - wall0,
    )
