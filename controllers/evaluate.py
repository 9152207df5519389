"""Closed-loop evaluation of a controller on the twin, with the park's KPIs.

The loop (a simple one, not the service: no adapters, no supervisor modes): every control period the
controller gets the twin's state (outputs and states by ``<unit>.<quantity>``, current setpoints by
park input key) and perfect forecasts from the profiles; the setpoints of a usable result are applied to
the twin as ramps from the current value at the tag's rate limit (what the supervisor does); a failed
solve follows the last good plan where it still covers the time, else ramps to the tags' safe values
(the fallback rule of ``controllers.supervisor``). Profile inputs follow the park's profiles.

KPIs over the run (outputs sampled every minute; each sample stands for the minute after it):

* cost [EUR]: fuel (fuel flow x fuel price) + CO2 (fuel x emission factor x CO2 price) + electricity
  (heat-pump power x price, less CHP power x price);
* CO2 [t]; unmet demand [MWh]: the town's ``unmet`` heat plus steam not delivered (demand - delivered
  flow, x the CHP's steam enthalpy rise);
* constraint violation [K h]: DH supply temperature at the town outside its [min, max] band;
* surplus share (Knudsen et al. 2019, Energies 12:1877, "share of the heat deficit covered by surplus
  heat"): here the heat deficit is the town's heat demand (no must-run producer covers a DH base
  load in this park), and the surplus heat used is the surplus heat that entered the network (heat
  recovered by exchangers fed with surplus heat, surplus heat fed straight in, and the heat-pump heat
  drawn from a surplus source, Q (1 - 1/COP)); share = min(surplus used, heat delivered, demand) / demand.
  Run with and without storage (the tank's charge setpoint forced to zero) to see what storage adds.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controllers.types import ControlResult, FloatArray, SolveStatus

StepFn = Callable[[Mapping[str, float], Mapping[str, FloatArray], float], ControlResult]


@dataclass(frozen=True)
class SetpointSpec:
    """A written setpoint: tag id, park input key, bounds [SI], rate limit [SI/s], safe value [SI]."""

    tag: str
    key: str
    lo: float
    hi: float
    rate: float
    safe: float


@dataclass(frozen=True)
class KpiSpec:
    """What the KPIs need from the park: fuel prices by unit (series name), emission factors [kg/J],
    the CHP units (electricity sold), heat pumps with their surplus sources, surplus units whose heat
    reaches the network directly or through an exchanger, the town, steam consumers."""

    fuel_price: Mapping[str, str]
    co2_per_fuel: Mapping[str, float]
    chps: tuple[str, ...]
    heat_pumps: tuple[tuple[str, bool], ...]  # (unit, fed by surplus heat)
    surplus_hx: tuple[str, ...]  # heat exchangers fed by surplus heat
    surplus_direct: tuple[str, ...]
    town: str | None
    town_design_w: float
    t_band_k: tuple[float, float]
    steam: tuple[tuple[str, float], ...]  # (consumer, design flow [kg/s])
    steam_dh_j_kg: float
    electricity_price: str = "price.electricity"
    co2_price: str = "price.co2"
    unmet_penalty_eur_mwh: float = 2000.0


@dataclass
class Kpis:
    cost_eur: float
    fuel_eur: float
    electricity_eur: float
    co2_eur: float
    co2_t: float
    unmet_heat_mwh: float
    unmet_steam_mwh: float
    band_violation_kh: float
    heat_demand_mwh: float
    heat_delivered_mwh: float
    surplus_used_mwh: float
    surplus_share: float
    unmet_penalty_eur_mwh: float = 2000.0
    solves: dict[str, int] = field(default_factory=dict)
    solve_s_median: float = 0.0
    solve_s_p95: float = 0.0

    @property
    def unmet_mwh(self) -> float:
        return self.unmet_heat_mwh + self.unmet_steam_mwh

    @property
    def cost_with_unmet_eur(self) -> float:
        """Operating cost plus unmet demand valued at the config's penalty [EUR]."""
        return self.cost_eur + self.unmet_mwh * self.unmet_penalty_eur_mwh

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["unmet_mwh"] = self.unmet_mwh
        d["cost_with_unmet_eur"] = self.cost_with_unmet_eur
        return d


def kpi_spec_from_site(site: Any) -> KpiSpec:
    """KpiSpec from a loaded site: fuels from the unit config, the rest from the park spec."""
    from controllers.mpc_model import _enthalpy_rise

    spec = site.park_spec()
    fuel = {u.id: f"price.{u.fuel}" for u in site.units if getattr(u, "fuel", None)}
    co2 = {u.name: float(u.params.get("co2_per_fuel", 0.0)) for u in spec.units if "co2_per_fuel" in u.params}
    models = {u.name: u.model for u in spec.units}
    surplus_hx = tuple(
        sorted(
            {
                c.target
                for c in spec.connections
                if models[c.source] == "surplus_heat" and models[c.target] == "heat_exchanger"
            }
        )
    )
    fed = {
        c.target
        for c in spec.connections
        if models[c.source] == "surplus_heat" and models[c.target] == "heat_pump"
    }
    direct = tuple(
        c.source
        for c in spec.connections
        if models[c.source] == "surplus_heat" and models[c.target] not in ("heat_exchanger", "heat_pump")
    )
    towns = [u for u in spec.units if u.model == "heat_demand"]
    town = towns[0] if towns else None
    chp = [u for u in spec.units if u.model == "chp_boiler"]
    dh = (
        _enthalpy_rise(
            chp[0].params["steam_pressure"],
            chp[0].params["steam_temperature"],
            chp[0].params["feedwater_temperature"],
        )
        if chp
        else 2.4e6
    )
    return KpiSpec(
        fuel_price=fuel,
        co2_per_fuel=co2,
        chps=tuple(u.name for u in chp),
        heat_pumps=tuple((u.name, u.name in fed) for u in spec.units if u.model == "heat_pump"),
        surplus_hx=surplus_hx,
        surplus_direct=direct,
        town=town.name if town else None,
        town_design_w=town.params["design_load"] if town else 0.0,
        t_band_k=(
            (town.params["min_supply_temperature"], town.params["max_supply_temperature"])
            if town
            else (0.0, 1e9)
        ),
        steam=tuple((u.name, u.params["design_flow"]) for u in spec.units if u.model == "steam_consumer"),
        steam_dh_j_kg=dh,
        unmet_penalty_eur_mwh=_penalty(site),
    )


def _penalty(site: Any) -> float:
    from symtwin.units import parse_quantity

    return float(parse_quantity(site.config.controller.unmet_demand_penalty, "EUR/J")) * 3.6e9


def setpoints_from_site(site: Any) -> tuple[SetpointSpec, ...]:
    out = []
    for t in site.tags.values():
        if str(getattr(t.direction, "value", t.direction)) != "setpoint":
            continue
        lo, hi = t.bounds_si
        rate = t.rate_limit_si_per_s if t.rate_limit_si_per_s and t.rate_limit_si_per_s > 0 else math.inf
        out.append(SetpointSpec(t.id, t.key, lo, hi, rate, t.safe_value_si))
    return tuple(out)


def _ramp(v0: float, target: float, rate: float, t0: float) -> Callable[[float], float]:
    def value(t: float) -> float:
        dv = target - v0
        step = rate * max(t - t0, 0.0)
        return target if abs(dv) <= step else v0 + math.copysign(step, dv)

    return value


@dataclass
class Trace:
    """Minute samples of the run: times [s, profile axis] and named columns [SI]."""

    t: list[FloatArray] = field(default_factory=list)
    cols: dict[str, list[FloatArray]] = field(default_factory=dict)
    x_end: FloatArray | None = None  # twin state at the end [park state order]
    current_end: dict[str, float] = field(default_factory=dict)  # setpoints at the end, by input key

    def add(self, t: FloatArray, cols: Mapping[str, FloatArray]) -> None:
        self.t.append(t)
        for k, v in cols.items():
            self.cols.setdefault(k, []).append(v)

    def column(self, name: str) -> FloatArray:
        return np.concatenate(self.cols[name])

    def times(self) -> FloatArray:
        return np.concatenate(self.t)


def closed_loop(
    park: Any,
    step: StepFn,
    forecasts: Callable[[float, FloatArray], Mapping[str, FloatArray]],
    setpoints: tuple[SetpointSpec, ...],
    *,
    t_start: float,
    duration_s: float,
    period_s: float = 900.0,
    horizon_steps: int = 96,
    x0: FloatArray | None = None,
    forced: Mapping[str, float] | None = None,
    current0: Mapping[str, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Trace, list[ControlResult]]:
    """Run ``step`` every ``period_s`` on the twin from profile time ``t_start`` [s] for ``duration_s``.

    forced: park input key -> value always applied (e.g. ``storage.charge_setpoint: 0``: no storage).
    current0: setpoints at the start by input key (default: the safe values).
    Returns the minute trace (outputs, states and inputs of the park) and every controller result.
    """
    forced = dict(forced or {})
    x = park.x0.copy() if x0 is None else np.asarray(x0, dtype=float)
    current = {s.key: float(np.clip(s.safe, s.lo, s.hi)) for s in setpoints}
    current.update({k: float(v) for k, v in (current0 or {}).items() if k in current})
    current.update({k: v for k, v in forced.items() if k in current})
    last_good: ControlResult | None = None
    trace = Trace()
    results: list[ControlResult] = []
    n = round(duration_s / period_s)
    state = _state(park, x, current)
    for i in range(n):
        now = t_start + i * period_s
        times = now + period_s * np.arange(horizon_steps)
        fc = {k: np.asarray(v, dtype=float) for k, v in forecasts(now, times).items()}
        t0 = time.perf_counter()
        try:
            res = step(state, fc, now)
        except Exception as exc:  # a controller error is a failed solve here too
            res = ControlResult.failure(SolveStatus.ERROR, f"{type(exc).__name__}: {exc}")
        if res.solve_time_s == 0.0:
            res = dataclasses.replace(res, solve_time_s=time.perf_counter() - t0)
        results.append(res)
        if res.usable:
            last_good = res
        targets: dict[str, float] = {}
        for s in setpoints:
            if s.key in forced:
                targets[s.key] = forced[s.key]
                continue
            v: float | None = None
            if res.usable:
                v = res.setpoints.get(s.tag)
            elif last_good is not None:
                v = last_good.plan_value(s.tag, now)  # None once the plan has run out
            if v is None:
                v = s.safe if not res.usable else current[s.key]
            targets[s.key] = float(np.clip(v, s.lo, s.hi))
        inputs = {
            s.key: _ramp(current[s.key], targets[s.key], s.rate, now)
            if math.isfinite(s.rate)
            else targets[s.key]
            for s in setpoints
        }
        sim = park.simulate(now + period_s, inputs=inputs, dt_out=60.0, x0=x, t0=now)
        cols = {name: sim.y[:, j] for j, name in enumerate(sim.output_names)}
        cols.update({name: sim.u[:, j] for j, name in enumerate(sim.input_names)})
        # the last sample is the next period's first: keep it once
        trace.add(sim.t[:-1], {k: v[:-1] for k, v in cols.items()})
        x = sim.x[-1]
        current = {s.key: _value(inputs[s.key], now + period_s) for s in setpoints}  # type: ignore[operator, arg-type]
        state = _state(park, x, current, {k: float(v[-1]) for k, v in cols.items()})
        if progress is not None:
            progress(i + 1, n)
    trace.x_end = x
    trace.current_end = dict(current)
    return trace, results


def _value(v: Callable[[float], float] | float, t: float) -> float:
    return float(v(t)) if callable(v) else float(v)


def _state(
    park: Any, x: FloatArray, current: Mapping[str, float], outputs: Mapping[str, float] | None = None
) -> dict[str, float]:
    """What the controller sees: park outputs and (scalar) states by name, current setpoints by key."""
    if outputs is None:
        u = park.u_default.copy()
        y = park.outputs(x, u)
        outputs = {name: float(y[j]) for j, name in enumerate(park.output_names)}
    state = dict(outputs)
    for j, name in enumerate(park.state_names):
        state[name] = float(x[j])
    state.update(current)
    return state


def kpis(
    trace: Trace,
    spec: KpiSpec,
    forecasts: Callable[[float, FloatArray], Mapping[str, FloatArray]],
    results: list[ControlResult] | None = None,
) -> Kpis:
    """The run's KPIs (see the module docstring for the definitions)."""
    t = trace.times()
    # minute samples of a piecewise run: each sample stands for the interval that follows it
    dt = np.full_like(t, float(np.median(np.diff(t))) if t.size > 1 else 60.0)
    prices = {k: np.asarray(v, dtype=float) for k, v in forecasts(float(t[0]), t).items()}

    def integral(v: FloatArray) -> float:
        return float(np.sum(v * dt))

    def col(name: str) -> FloatArray:
        return trace.column(name) if name in trace.cols else np.zeros_like(t)

    zero = np.zeros_like(t)
    fuel_eur = co2_kg = 0.0
    for unit, series in spec.fuel_price.items():
        fuel = col(f"{unit}.fuel_flow")
        fuel_eur += integral(fuel * prices.get(series, zero))
        co2_kg += integral(fuel * spec.co2_per_fuel.get(unit, 0.0))
    for unit, factor in spec.co2_per_fuel.items():
        if unit not in spec.fuel_price:
            co2_kg += integral(col(f"{unit}.fuel_flow") * factor)
    co2_price = prices.get(spec.co2_price, zero)
    co2_eur = 0.0
    for unit, factor in spec.co2_per_fuel.items():
        co2_eur += integral(col(f"{unit}.fuel_flow") * factor * co2_price)
    el = prices.get(spec.electricity_price, zero)
    elec_eur = 0.0
    surplus_w = np.zeros_like(t)
    for unit, fed in spec.heat_pumps:
        p = col(f"{unit}.electric_power")
        elec_eur += integral(p * el)
        if fed:
            surplus_w += np.maximum(col(f"{unit}.heat_flow") - p, 0.0)
    for unit in spec.chps:
        elec_eur -= integral(col(f"{unit}.electric_power") * el)
    for hx in spec.surplus_hx:
        surplus_w += np.maximum(col(f"{hx}.heat_flow"), 0.0)
    for unit in spec.surplus_direct:
        surplus_w += col(f"{unit}.heat_flow")
    band = 0.0
    demand = delivered = unmet_heat = 0.0
    if spec.town is not None:
        ts = col(f"{spec.town}.supply_temperature")
        lo, hi = spec.t_band_k
        band = integral(np.maximum(lo - ts, 0.0) + np.maximum(ts - hi, 0.0)) / 3600.0
        unmet_heat = integral(col(f"{spec.town}.unmet")) / 3.6e9
        delivered = integral(col(f"{spec.town}.delivered")) / 3.6e9
        demand = integral(np.maximum(col(f"{spec.town}.demand"), 0.0) * spec.town_design_w) / 3.6e9
    unmet_steam_kg = 0.0
    for unit, design in spec.steam:
        want = col(f"{unit}.demand") * design
        unmet_steam_kg += integral(np.maximum(want - col(f"{unit}.steam_flow"), 0.0))
    surplus_mwh = integral(surplus_w) / 3.6e9
    share = min(surplus_mwh, delivered, demand) / demand if demand > 0 else 0.0
    solves: dict[str, int] = {}
    times = []
    for r in results or []:
        solves[r.status.value] = solves.get(r.status.value, 0) + 1
        times.append(r.solve_time_s)
    return Kpis(
        cost_eur=fuel_eur + co2_eur + elec_eur,
        fuel_eur=fuel_eur,
        electricity_eur=elec_eur,
        co2_eur=co2_eur,
        co2_t=co2_kg / 1000.0,
        unmet_heat_mwh=unmet_heat,
        unmet_steam_mwh=unmet_steam_kg * spec.steam_dh_j_kg / 3.6e9,
        band_violation_kh=band,
        heat_demand_mwh=demand,
        heat_delivered_mwh=delivered,
        surplus_used_mwh=surplus_mwh,
        surplus_share=share,
        unmet_penalty_eur_mwh=spec.unmet_penalty_eur_mwh,
        solves=solves,
        solve_s_median=float(np.median(times)) if times else 0.0,
        solve_s_p95=float(np.percentile(times, 95)) if times else 0.0,
    )
