"""Rule-based baseline controller: how heat and steam plants are dispatched today, for comparison.

District heating is dispatched by a fixed merit order, cheapest and cleanest first:

1. surplus heat (taken up to the demand: it is free and carbon-free),
2. heat pumps (limited by their heat source and capacity; off below the minimum load),
3. CHP heat (what the CHP can give after its process steam),
4. storage discharge (only while the tank top is hot enough to supply the network),
5. peak boilers (the rest; whatever they cannot cover is reported as unmet demand).

Process steam is met by the CHP first and the backup steam boiler after; the steam target is the
measured demand trimmed by the header pressure error (proportional feedback, as a boiler master does). The storage tank follows a
thermostat on its top temperature with hysteresis: below ``charge_on_k`` it charges from the spare
capacity of sources 1-3 until the top passes ``charge_off_k``; peak boilers never charge it.

Energy relations follow the twin (``twin.units.boiler``, ``twin.units.heat_pump``): CHP useful heat
Q = (efficiency - power_ratio) * load * fuel_capacity [W], split between DH (share s, at most
heat_capacity) and steam ((1 - s) Q / dh [kg/s], at most steam_capacity); heat pump COP
= eta_C T_con / (T_con - T_eva) with T_eva = T_source - dT_source, heat from its source Q (1 - 1/COP);
storage power = m_dot * cp * (T_max - T_min) [W] with cp = 4186 J/(kg K) (liquid water near 60 °C,
IAPWS-95 gives 4.18-4.19 kJ/(kg K) between 40 and 90 °C).

``step`` returns the same :class:`~controllers.types.ControlResult` as the MPC, with the dispatch in
``objective_terms`` (heat per source [W], steam per source [kg/s]) and unmet demand in ``slack``.
Values are read from ``state`` by name (``"<unit>.<quantity>"``), falling back to a forecast series of
the same name or of the unit's profile (``twin.spec.UnitSpec.profiles``). The plan covers the longest
forecast, on a grid of ``step_s``; inputs without a forecast are held at their current value.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controllers.types import ControlResult, FloatArray, SolveStatus
from twin.spec import ParkSpec, UnitSpec

CP_WATER = 4186.0  # [J/(kg K)], liquid water 40-90 °C (IAPWS-95: 4.179-4.205)
HEADER_MARGIN_PA = 0.1e5  # steam header held this far above its nominal pressure [Pa]


class BaselineError(ValueError):
    """The park cannot be dispatched by the baseline rules (e.g. no heat demand, bad parameters)."""


class SourceKind(enum.StrEnum):
    SURPLUS = "surplus"
    HEAT_PUMP = "heat_pump"
    CHP = "chp"
    STORAGE = "storage"
    PEAK_BOILER = "peak_boiler"


MERIT_ORDER = (
    SourceKind.SURPLUS,
    SourceKind.HEAT_PUMP,
    SourceKind.CHP,
    SourceKind.STORAGE,
    SourceKind.PEAK_BOILER,
)


@dataclass(frozen=True)
class Reading:
    """Where a value comes from: the first of ``names`` found (state, then forecasts), times ``scale``.

    E.g. a town's heat demand [W]: ``(("town.heat_flow", 1.0), ("town.demand", 60e6),
    ("town_heat_demand", 60e6))`` – measured heat flow, else the demand fraction times the design load.
    """

    names: tuple[tuple[str, float], ...]

    def value(self, state: Mapping[str, float], forecasts: Mapping[str, FloatArray], k: int) -> float | None:
        """Value at plan step ``k``: the first name, in order, that has a finite value. Step 0: a name's
        state value, else its forecast's first entry. Later steps: forecast entry k (held at the end),
        else the step-0 value (persistence)."""
        if k > 0:
            for name, scale in self.names:
                v = _series_at(forecasts.get(name), k)
                if v is not None:
                    return v * scale
        for name, scale in self.names:
            x = state.get(name)
            if x is not None and math.isfinite(x):
                return float(x) * scale
            v = _series_at(forecasts.get(name), 0)
            if v is not None:
                return v * scale
        return None

    def forecast(self, forecasts: Mapping[str, FloatArray], k: int) -> float | None:
        """Forecast entry ``k`` of the first name that has a forecast (held at its end), else None."""
        for name, scale in self.names:
            v = _series_at(forecasts.get(name), k)
            if v is not None:
                return v * scale
        return None

    def ahead(
        self, state: Mapping[str, float], forecasts: Mapping[str, FloatArray], k: int, lead: int
    ) -> float | None:
        """Value ``lead`` steps after plan step ``k``: the forecast there, scaled by how far the measured
        value is from the forecast now (a demand step the forecast does not know about persists)."""
        if lead <= 0:
            return self.value(state, forecasts, k)
        now, f_now, f_then = (
            self.value(state, forecasts, 0),
            self.forecast(forecasts, 0),
            self.forecast(forecasts, k + lead),
        )
        if f_then is None or now is None:
            return self.value(state, forecasts, k)
        ratio = now / f_now if f_now is not None and f_now > 0.0 else 1.0
        return f_then * min(max(ratio, 0.5), 2.0)


def _series_at(series: FloatArray | None, k: int) -> float | None:
    if series is None or len(series) == 0:
        return None
    v = float(series[min(k, len(series) - 1)])
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class SurplusSource:
    """Surplus heat offered to DH. capacity_w [W]; ``available`` gives the available fraction [-]."""

    unit: str
    capacity_w: float
    available: Reading
    use_setpoint: str  # fraction of the available heat taken [-]


@dataclass(frozen=True)
class HeatPump:
    """capacity_w [W]; cop [-]; min_load [-]; source: surplus units feeding its evaporator, whose
    available heat limits the output to Q_source / (1 - 1/COP). No source: only capacity limits."""

    unit: str
    capacity_w: float
    cop: float
    min_load: float
    load_setpoint: str
    sources: tuple[SurplusSource, ...] = ()


@dataclass(frozen=True)
class Chp:
    """useful_heat_w: useful heat at full load [W]; heat_capacity_w: largest DH heat [W];
    steam_capacity_kg_s [kg/s]; steam_dh_j_kg: enthalpy rise feedwater → steam [J/kg]; min_load [-]."""

    unit: str
    useful_heat_w: float
    heat_capacity_w: float
    steam_capacity_kg_s: float
    steam_dh_j_kg: float
    min_load: float
    load_setpoint: str
    split_setpoint: str


@dataclass(frozen=True)
class Boiler:
    """A gas boiler: capacity_w [W]; for a steam boiler steam_dh_j_kg [J/kg] converts heat to steam."""

    unit: str
    capacity_w: float
    min_load: float
    load_setpoint: str
    steam_dh_j_kg: float = math.nan


@dataclass(frozen=True)
class StorageThermostat:
    """Charge below ``charge_on_k`` until above ``charge_off_k`` [K] (top temperature); discharge only
    while the top is at least ``discharge_min_k`` [K]. max_flow_kg_s [kg/s]; delta_t_k: temperature
    difference between charged and discharged water [K]."""

    unit: str
    top_temperature: Reading
    charge_on_k: float
    charge_off_k: float
    discharge_min_k: float
    max_flow_kg_s: float
    delta_t_k: float
    charge_setpoint: str

    @property
    def max_power_w(self) -> float:
        return self.max_flow_kg_s * CP_WATER * self.delta_t_k


@dataclass(frozen=True)
class PressureTrim:
    """Steam header pressure feedback, as a boiler master controller does: the steam target is the
        steam demand plus ``gain_kg_s_per_pa`` [kg/s per Pa] times (nominal - measured) pressure, plus its
    integral over ``integral_time_s`` (proportional-integral, bounded by ``integral_limit_kg_s``).
        Without it a falling header pressure lowers the consumers' draw, the measured demand, and so the
        production: the pressure collapses."""

    pressure: Reading
    nominal_pa: float
    gain_kg_s_per_pa: float
    integral_time_s: float | None = None  # PI when given: removes the offset of pure P [s]
    integral_limit_kg_s: float = 10.0  # anti-windup: largest integral correction [kg/s]


@dataclass(frozen=True)
class SupplyTrim:
    """District-heating supply feedback, as a plant operator trims the dispatch: the heat target gets the
    integral of G (``target_k`` - measured supply temperature at the consumers) over ``integral_time_s``,
    G = heat demand / (``target_k`` - ``return_k``) [W/K] the network's flow times cp, bounded by
    ``limit_w`` [W]. It makes up for what the rules cannot see (pipe losses, an exchanger recovering less
    than its rating); the integral time is a few times the pipe's transport delay so the loop stays calm."""

    supply: Reading
    target_k: float
    return_k: float
    integral_time_s: float
    limit_w: float


@dataclass(frozen=True)
class BaselineParams:
    """Everything the rules need. Setpoint names are ``"<unit>.<quantity>"``; ``setpoint_tags`` maps
    them to the tag ids the supervisor knows (setpoints without a tag are then not proposed).
    step_s: plan step [s]; the plan covers as many steps as the longest forecast (at least one)."""

    heat_demand: tuple[Reading, ...]
    steam_demand: tuple[Reading, ...] = ()
    surplus: tuple[SurplusSource, ...] = ()
    heat_pumps: tuple[HeatPump, ...] = ()
    chps: tuple[Chp, ...] = ()
    storage: tuple[StorageThermostat, ...] = ()
    peak_boilers: tuple[Boiler, ...] = ()
    steam_boilers: tuple[Boiler, ...] = ()
    pressure_trim: tuple[PressureTrim, ...] = ()
    supply_trim: tuple[SupplyTrim, ...] = ()
    heat_lead_steps: int = 0  # plan steps between making heat and its arrival at the consumers [-]
    heat_margin: float = 0.0  # share added to the heat demand for network losses the rules do not model [-]
    setpoint_tags: Mapping[str, str] | None = None
    step_s: float = 900.0

    def __post_init__(self) -> None:
        if not self.heat_demand and not self.steam_demand:
            raise BaselineError("the baseline needs at least one heat or steam demand")
        if not self.step_s > 0:
            raise BaselineError(f"step_s must be > 0, got {self.step_s}")


@dataclass
class _Dispatch:
    setpoints: dict[str, float] = field(default_factory=dict)
    heat: dict[SourceKind, float] = field(default_factory=lambda: dict.fromkeys(MERIT_ORDER, 0.0))
    steam_chp: float = 0.0
    steam_boiler: float = 0.0
    unmet_heat: float = 0.0
    unmet_steam: float = 0.0
    charge_w: float = 0.0


def _load_for(need_w: float, capacity_w: float, min_load: float, cover: bool) -> float:
    """Load [-] for a need [W]. Below the minimum stable load the unit stays off, or, if it must
    ``cover`` the need (peak and backup boilers: nothing comes after them), runs at minimum load."""
    if capacity_w <= 0.0 or need_w <= 0.0:
        return 0.0
    load = need_w / capacity_w
    if load < min_load:
        return min_load if cover else 0.0
    return min(load, 1.0)


class BaselineController:
    """The rule-based controller; ``step(state, forecasts, now) -> ControlResult``."""

    def __init__(self, params: BaselineParams) -> None:
        self.params = params
        self._charging = {s.unit: False for s in params.storage}
        self._integral = [0.0 for _ in params.pressure_trim]  # pressure PI integrals [kg/s]
        self._heat_integral = [0.0 for _ in params.supply_trim]  # supply-temperature integrals [W]
        self._last_now: float | None = None

    def reset_warm_start(self) -> None:
        """Forget the thermostat and pressure-controller memory (the baseline's only state)."""
        self._charging = dict.fromkeys(self._charging, False)
        self._integral = [0.0 for _ in self._integral]
        self._heat_integral = [0.0 for _ in self._heat_integral]
        self._last_now = None

    def _elapsed(self, now: float) -> float:
        """Time the integrators advance by this step [s]: since the last step, at most one plan step (a
        pause such as a comms loss must not integrate its whole length at once)."""
        dt = 0.0 if self._last_now is None else min(max(now - self._last_now, 0.0), self.params.step_s)
        self._last_now = now
        return dt

    def _trim(self, state: Mapping[str, float], forecasts: Mapping[str, FloatArray], dt: float) -> float:
        """Steam correction from the header pressure controllers [kg/s]; updates their integrals."""
        total = 0.0
        for i, trim in enumerate(self.params.pressure_trim):
            pressure = trim.pressure.value(state, forecasts, 0)
            if pressure is None:
                continue  # no measurement: hold the integral, no correction from it
            error = trim.nominal_pa - pressure
            if trim.integral_time_s:
                step = trim.gain_kg_s_per_pa * error * dt / trim.integral_time_s
                lim = trim.integral_limit_kg_s
                self._integral[i] = min(max(self._integral[i] + step, -lim), lim)
            total += trim.gain_kg_s_per_pa * error + self._integral[i]
        return total

    def _heat_trim(
        self, heat_w: float, state: Mapping[str, float], forecasts: Mapping[str, FloatArray], dt: float
    ) -> float:
        """Heat correction from the supply-temperature integrals [W]; updates them."""
        total = 0.0
        for i, trim in enumerate(self.params.supply_trim):
            supply = trim.supply.value(state, forecasts, 0)
            if supply is not None:  # no measurement: hold the integral
                g = max(heat_w, 0.0) / max(trim.target_k - trim.return_k, 5.0)
                step = g * (trim.target_k - supply) * dt / trim.integral_time_s
                self._heat_integral[i] = min(max(self._heat_integral[i] + step, -trim.limit_w), trim.limit_w)
            total += self._heat_integral[i]
        return total

    def step(
        self, state: Mapping[str, float], forecasts: Mapping[str, FloatArray], now: float
    ) -> ControlResult:
        t0 = time.perf_counter()
        p = self.params
        n = max([1, *(len(v) for v in forecasts.values())])
        charging = dict(self._charging)
        plans: list[_Dispatch] = []
        readings = (*p.heat_demand, *p.steam_demand)
        dt = self._elapsed(now)
        trim = self._trim(state, forecasts, dt)
        heat_now = [r.value(state, forecasts, 0) for r in p.heat_demand]
        heat_trim = self._heat_trim(sum(v for v in heat_now if v is not None), state, forecasts, dt)
        for k in range(n):
            # Heat made now reaches the consumers a transport delay later: dispatch for the demand then.
            values = [r.ahead(state, forecasts, k, p.heat_lead_steps) for r in p.heat_demand]
            values += [r.value(state, forecasts, k) for r in p.steam_demand]
            if any(v is None for v in values):
                if k == 0:
                    missing = [r.names[0][0] for r, v in zip(readings, values, strict=True) if v is None]
                    return ControlResult.failure(
                        SolveStatus.ERROR,
                        f"no finite value for {', '.join(missing)}",
                        time.perf_counter() - t0,
                    )
                break  # the forecasts end here, and so does the plan
            heat = sum(v for v in values[: len(p.heat_demand)] if v is not None)
            steam = sum(v for v in values[len(p.heat_demand) :] if v is not None) + trim
            heat = heat * (1.0 + p.heat_margin) + heat_trim
            plans.append(self._dispatch(max(heat, 0.0), max(steam, 0.0), state, forecasts, k, charging))
            if k == 0:
                self._charging = dict(charging)  # later steps are look-ahead: remember only the first
        first = plans[0]
        keys = list(first.setpoints)
        times = now + p.step_s * np.arange(len(plans))
        plan = {key: np.array([d.setpoints[key] for d in plans]) for key in keys}
        terms = {f"heat_{kind.value}_w": first.heat[kind] for kind in MERIT_ORDER}
        terms.update(steam_chp_kg_s=first.steam_chp, steam_boiler_kg_s=first.steam_boiler)
        slack = {"unmet_heat_w": first.unmet_heat, "unmet_steam_kg_s": first.unmet_steam}
        status = (
            SolveStatus.OPTIMAL
            if first.unmet_heat <= 1.0 and first.unmet_steam <= 1e-6
            else SolveStatus.SUBOPTIMAL
        )
        return ControlResult(
            status=status,
            setpoints=self._tagged({key: first.setpoints[key] for key in keys}),
            plan=self._tagged(plan),
            plan_times=times,
            objective_terms=terms,
            slack=slack,
            solve_time_s=time.perf_counter() - t0,
            message="rule-based baseline" + ("" if status is SolveStatus.OPTIMAL else ": demand not met"),
        )

    def _tagged(self, values: Mapping[str, Any]) -> dict[str, Any]:
        tags = self.params.setpoint_tags
        if tags is None:
            return dict(values)
        return {tags[key]: v for key, v in values.items() if key in tags}

    def _dispatch(
        self,
        heat_w: float,
        steam_kg_s: float,
        state: Mapping[str, float],
        forecasts: Mapping[str, FloatArray],
        k: int,
        charging: dict[str, bool],
    ) -> _Dispatch:
        p, d = self.params, _Dispatch()
        # Thermostats first: how much the tanks want to take, and how much they could give.
        want_charge, can_give = 0.0, {}
        for tank in p.storage:
            top = tank.top_temperature.value(state, forecasts, k)
            if top is not None:
                if top < tank.charge_on_k:
                    charging[tank.unit] = True
                elif top > tank.charge_off_k:
                    charging[tank.unit] = False
            if charging[tank.unit]:
                want_charge += tank.max_power_w
            can_give[tank.unit] = tank.max_power_w if top is not None and top >= tank.discharge_min_k else 0.0

        # Sources 1-3 cover demand plus whatever the tanks want; steam goes to the CHP first.
        need = heat_w + want_charge
        for src in p.surplus:
            avail = src.available.value(state, forecasts, k)
            avail_w = max(0.0, min(avail if avail is not None else 0.0, 1.0)) * src.capacity_w
            take = min(avail_w, need)
            d.setpoints[src.use_setpoint] = take / avail_w if avail_w > 0.0 else 0.0
            d.heat[SourceKind.SURPLUS] += take
            need -= take
        for hp in p.heat_pumps:
            limit = hp.capacity_w
            if hp.sources:
                source_w = 0.0
                for feed in hp.sources:
                    a = feed.available.value(state, forecasts, k)
                    source_w += max(0.0, min(a if a is not None else 0.0, 1.0)) * feed.capacity_w
                limit = min(limit, source_w / max(1.0 - 1.0 / hp.cop, 1e-9))
            load = _load_for(min(need, limit), hp.capacity_w, hp.min_load, cover=False)
            for feed in hp.sources:
                d.setpoints[feed.use_setpoint] = 1.0 if load > 0.0 else 0.0
            d.setpoints[hp.load_setpoint] = load
            d.heat[SourceKind.HEAT_PUMP] += load * hp.capacity_w
            need -= load * hp.capacity_w
        steam_left = steam_kg_s
        for c in p.chps:
            q_steam = min(steam_left, c.steam_capacity_kg_s) * c.steam_dh_j_kg
            q_heat = min(max(need, 0.0), c.heat_capacity_w)
            q_full = c.useful_heat_w
            if q_steam + q_heat > q_full:  # steam has priority over heat
                q_steam = min(q_steam, q_full)
                q_heat = q_full - q_steam
            load = max((q_steam + q_heat) / q_full, c.min_load) if q_full > 0 else 0.0
            useful = load * q_full
            # at minimum load the extra heat goes to DH (up to its capacity), the rest to steam
            q_heat = min(useful - q_steam, c.heat_capacity_w)
            split = q_heat / useful if useful > 0 else 0.0
            d.setpoints[c.load_setpoint] = load
            d.setpoints[c.split_setpoint] = split
            steam = min((useful - q_heat) / c.steam_dh_j_kg, c.steam_capacity_kg_s)
            d.steam_chp += min(steam, steam_left)
            steam_left = max(steam_left - steam, 0.0)
            d.heat[SourceKind.CHP] += q_heat
            need -= q_heat
        for b in p.steam_boilers:
            load = _load_for(steam_left * b.steam_dh_j_kg, b.capacity_w, b.min_load, cover=True)
            d.setpoints[b.load_setpoint] = load
            made = load * b.capacity_w / b.steam_dh_j_kg
            d.steam_boiler += min(made, steam_left)
            steam_left = max(steam_left - made, 0.0)
        d.unmet_steam = steam_left

        # Whatever of the tank's wish was covered charges it; a shortfall is met by discharge, then peak.
        produced = sum(d.heat[kind] for kind in (SourceKind.SURPLUS, SourceKind.HEAT_PUMP, SourceKind.CHP))
        short = heat_w - produced
        spare = max(-short, 0.0)
        for tank in p.storage:
            flow = 0.0
            if charging[tank.unit] and spare > 0.0:
                put = min(spare, tank.max_power_w)
                flow, spare = put / (CP_WATER * tank.delta_t_k), spare - put
                d.charge_w += put
            elif short > 0.0 and can_give[tank.unit] > 0.0:
                give = min(short, can_give[tank.unit])
                flow, short = -give / (CP_WATER * tank.delta_t_k), short - give
                d.heat[SourceKind.STORAGE] += give
            d.setpoints[tank.charge_setpoint] = flow
        for b in p.peak_boilers:
            load = _load_for(short, b.capacity_w, b.min_load, cover=True)
            d.setpoints[b.load_setpoint] = load
            d.heat[SourceKind.PEAK_BOILER] += load * b.capacity_w
            short -= load * b.capacity_w
        d.unmet_heat = max(short, 0.0)
        return d


# ---------------------------------------------------------------------------------------- from a ParkSpec


def _profile_reading(
    u: UnitSpec, quantity: str, scale: float, measured: tuple[tuple[str, float], ...] = ()
) -> Reading:
    names = [*measured, (f"{u.name}.{quantity}", scale)]
    profile = u.profiles.get(quantity)
    if profile is not None:
        names.append((profile, scale))
    return Reading(tuple(names))


def _enthalpy_rise(p_pa: float, t_steam_k: float | None, t_feed_k: float) -> float:
    """h(steam) - h(feedwater) [J/kg] by IAPWS-IF97; saturated steam when ``t_steam_k`` is None."""
    from twin import steam  # lazy: compiles/loads the IF97 kernels

    t = steam.t_sat(p_pa) + 0.01 if t_steam_k is None else t_steam_k
    return float(steam.h_pt(p_pa, t)) - float(steam.h_pt(p_pa, t_feed_k))


def from_park_spec(
    spec: ParkSpec,
    setpoint_tags: Mapping[str, str] | None = None,
    step_s: float = 900.0,
    heat_margin: float = 0.05,
) -> BaselineController:
    """A baseline for a park: merit order chosen by unit model (surplus heat, heat pump, CHP heat,
    storage discharge, peak boiler; steam from the CHP, then steam boilers)."""
    by_model: dict[str, list[UnitSpec]] = {}
    for u in spec.units:
        by_model.setdefault(u.model, []).append(u)
    feeds_hp = {
        c.source
        for c in spec.connections
        if c.target_port == "source_in" and spec.unit(c.target).model == "heat_pump"
    }

    def surplus(u: UnitSpec) -> SurplusSource:
        return SurplusSource(
            u.name, u.params["capacity"], _profile_reading(u, "available", 1.0), f"{u.name}.use_setpoint"
        )

    direct = tuple(surplus(u) for u in by_model.get("surplus_heat", []) if u.name not in feeds_hp)
    pumps = []
    for u in by_model.get("heat_pump", []):
        pr = u.params
        t_con = pr["condenser_temperature"]
        t_eva = pr["source_temperature"] - pr["source_cooling"]
        cop = pr["carnot_efficiency"] * t_con / max(t_con - t_eva, 5.0)
        sources = tuple(
            surplus(spec.unit(c.source))
            for c in spec.connections
            if c.target == u.name
            and c.target_port == "source_in"
            and spec.unit(c.source).model == "surplus_heat"
        )
        pumps.append(
            HeatPump(u.name, pr["capacity"], cop, pr["min_load"], f"{u.name}.load_setpoint", sources)
        )
    chps = []
    for u in by_model.get("chp_boiler", []):
        pr = u.params
        dh = _enthalpy_rise(pr["steam_pressure"], pr["steam_temperature"], pr["feedwater_temperature"])
        chps.append(
            Chp(
                u.name,
                (pr["efficiency"] - pr["power_ratio"]) * pr["fuel_capacity"],
                pr["heat_capacity"],
                pr["steam_capacity"],
                dh,
                pr["min_load"],
                f"{u.name}.load_setpoint",
                f"{u.name}.heat_split_setpoint",
            )
        )
    peak, backup = [], []
    for u in by_model.get("gas_boiler", []):
        pr = u.params
        if round(pr.get("medium", 0.0)) == 1:
            dh = _enthalpy_rise(pr["steam_pressure"], None, pr.get("feedwater_temperature", 378.15))
            backup.append(Boiler(u.name, pr["capacity"], pr["min_load"], f"{u.name}.load_setpoint", dh))
        else:
            peak.append(Boiler(u.name, pr["capacity"], pr["min_load"], f"{u.name}.load_setpoint"))
    demands = by_model.get("heat_demand", [])
    supply_min = min((u.params["min_supply_temperature"] for u in demands), default=None)
    tanks = []
    for u in by_model.get("storage_tank", []):
        pr = u.params
        t_max, t_min = pr["max_temperature"], pr["min_temperature"]
        span = t_max - t_min
        tanks.append(
            StorageThermostat(
                u.name,
                Reading(((f"{u.name}.top_temperature", 1.0),)),
                charge_on_k=t_max - 0.25 * span,
                charge_off_k=t_max - 0.05 * span,
                discharge_min_k=supply_min if supply_min is not None else t_min + 0.5 * span,
                max_flow_kg_s=pr["max_flow"],
                delta_t_k=span,
                charge_setpoint=f"{u.name}.charge_setpoint",
            )
        )
    heat = tuple(
        _profile_reading(u, "demand", u.params["design_load"], ((f"{u.name}.heat_flow", 1.0),))
        for u in demands
    )
    # Steam: the consumers' demand (forecast) before the measured flow, which sags with the header
    # pressure and would pull production down with it.
    steam_demand = tuple(
        Reading(
            (
                *_profile_reading(u, "demand", u.params["design_flow"]).names,
                (f"{u.name}.steam_flow", 1.0),
            )
        )
        for u in by_model.get("steam_consumer", [])
    )
    # PI on the header pressure: 2 kg/s more steam per bar missing, integral time 30 min (twice the control
    # period it runs at: 10 min overshot after a comms loss into a pressure swing of 12 -> 7.5 bar); a gentle
    # trim on top of the demand forecast (10 kg/s per bar oscillates against the CHP's 10-minute lag). It holds
    # the header HEADER_MARGIN_PA above nominal: the consumers' valves are sized for the nominal pressure,
    # so every dip below it (sensor noise, a load step) leaves them short of steam.
    trims = tuple(
        PressureTrim(
            Reading(((f"{u.name}.pressure", 1.0),)),
            u.params["nominal_pressure"] + HEADER_MARGIN_PA,
            2e-5,
            1800.0,
        )
        for u in by_model.get("steam_header", [])
    )
    # Supply feedback at the consumers, integral time 2 h (the transmission line delays a change by an
    # hour or more), aiming 3 K above the nominal supply temperature the substations are sized for.
    pipes = {c.source for c in spec.connections if c.target in {u.name for u in demands}}
    supply_trims = tuple(
        SupplyTrim(
            Reading(
                (
                    *((f"{pipe}.outlet_temperature", 1.0) for pipe in pipes),
                    (f"{u.name}.supply_temperature", 1.0),
                )
            ),
            target_k=0.5 * (u.params["min_supply_temperature"] + u.params["max_supply_temperature"]) + 3.0,
            return_k=u.params["return_temperature"],
            integral_time_s=2 * 3600.0,
            limit_w=0.2 * u.params["design_load"],
        )
        for u in demands
    )
    # The transmission line's transport delay at half the design flow, in plan steps.
    lead = 0
    for u in demands:
        m_half = (
            0.5
            * u.params["design_load"]
            / (CP_WATER * max(u.params["min_supply_temperature"] - u.params["return_temperature"], 5.0))
        )
        for pipe in pipes:
            pp = spec.unit(pipe).params
            if spec.unit(pipe).model == "dh_pipe" and m_half > 0:
                mass = 1000.0 * math.pi / 4 * pp["inner_diameter"] ** 2 * pp["length"]
                lead = max(lead, round(mass / m_half / step_s))
    params = BaselineParams(
        heat_demand=heat,
        steam_demand=steam_demand,
        surplus=direct,
        heat_pumps=tuple(pumps),
        chps=tuple(chps),
        storage=tuple(tanks),
        peak_boilers=tuple(peak),
        steam_boilers=tuple(backup),
        pressure_trim=trims,
        supply_trim=supply_trims,
        heat_lead_steps=lead,
        heat_margin=heat_margin,
        setpoint_tags=setpoint_tags,
        step_s=step_s,
    )
    return BaselineController(params)


def from_site(site: Any, step_s: float = 900.0) -> BaselineController:
    """Convenience for the application: reads only ``site.park_spec()`` and the setpoint tags'
    ``id``/``key`` (``"<unit>.<quantity>"``) from a loaded site; everything else is plain parameters."""
    tags: Sequence[Any] = list(site.tags.values())
    setpoints = {t.key: t.id for t in tags if str(getattr(t.direction, "value", t.direction)) == "setpoint"}
    return from_park_spec(site.park_spec(), setpoints, step_s)
