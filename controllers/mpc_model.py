"""Reduced-order prediction model of the park for the economic MPC, and the frozen problem it solves.

:func:`problem_from_spec` maps a :class:`twin.spec.ParkSpec` (which units exist, their SI parameters) and
plain controller settings to an immutable :class:`MpcProblemSpec`; :func:`build_model` turns that into
CasADi SX expressions. Both are pure: the worker process receives the frozen spec, never the site config.

Reduced-order model (units in brackets are the scaled units the optimiser sees):

* Boilers, CHP, heat pump: load L [-] lags its setpoint S with the unit's time constant,
  dL/dt = (S - L) / tau (``twin.units.boiler``'s PT1 without the slew limit; the slew limit is kept as
  a bound on the setpoint rate). Minimum stable load is relaxed to [0, 1] in the optimiser and applied
  when the first setpoint is written (below half the minimum: off; else at least the minimum), the rule
  the twin itself applies to a setpoint.
* Every written setpoint S (loads, surplus-heat use, storage flow) is a state driven by its rate
  dS/dt = r, bounded by the tag's rate limit and the unit's ramp rate: this is how the supervisor ramps
  setpoints, and it keeps rate limits expressible on one step (do-mpc has no bounds on input moves).
* CHP: useful heat a L [W] with a = (efficiency - power_ratio) fuel_capacity, electric power
  power_ratio fuel_capacity L; DH heat q_h and process steam m_s are decisions with
  q_h + m_s dh <= a L, q_h <= heat_capacity, m_s <= steam_capacity. The split setpoint written is
  q_h / (a L) (the twin sends that share of its useful heat to DH and the rest to steam).
* Steam header: an instantaneous steam balance, sum of steam produced + unmet >= demand (excess is vented
  by the relief valve); header pressure dynamics (seconds) are not predicted. A steam boiler piped to one
  consumer only (a backup boiler) makes at most that consumer's demand: it cannot carry the others.
* Surplus heat into a heat exchanger: recovered heat = use * available * capacity * eta, where eta is
  the exchanger's epsilon-NTU counter-flow recovery at the forecast cold-side flow and full use
  (Incropera, Fundamentals of Heat and Mass Transfer, eq. 11.29a). Surplus feeding a heat pump's source
  is not a decision; it bounds the heat pump: L cap (1 - 1/COP) <= available heat.
* Heat pump: COP = eta_C T_con / (T_con - T_eva) from the forecast source temperature (twin formula).
* Storage tank: stored energy E = M cp (T_mean - T_min) [MWh]; a flow m (positive charges) moves
  m cp (T_nom - T_r) [W], loss UA (T_mean - T_amb) with T_mean taken at mid charge.
* DH network: the supply line as a cascade of ``cells`` (16) mixed cells sharing the heat capacity C
  of the pipe's water and wall: production Q_in enters the first, (C/n) dT_1/dt = Q_in + G T_r
  - G T_1 - loss_1, (C/n) dT_i/dt = G (T_i-1 - T_i) - loss_i, the town sees the last, T_s; G = m_town cp
  the town's flow (``twin.units.heat_demand``: the flow for the demand at the nominal supply
  temperature), loss_i = UA_pipe / n (T_i - T_ground). The cascade has the pipe's mean residence time
  and a delay-like response (an Erlang-n residence-time distribution in place of plug flow).
  Delivered heat G (T_s - T_r); unmet >= demand - G (T_s - T_r - margin) (soft, penalised: the plan
  keeps the supply ``margin_k`` (2 K) above the nominal temperature for noise and model error); supply band
  [T_min, T_max] soft.

* Contracted exchanges: each contract's minimum and maximum delivery per settlement period [MWh] is
  pro-rated to a mean rate (MWh / mean period length, :data:`PERIOD_HOURS`) and held over the horizon as
  sum_k d_k dt >= min_rate H - short and <= max_rate H + excess, with d [MW] the exchange's delivery in the
  model's variables (:class:`DeliveryKind`). The sum is an accumulator state ``contract.<id>.delivered``
  [MWh] (x_k+1 = x_k + (d_k + short_k - excess_k) dt, starting at 0) bounded at the horizon end only;
  short/excess [MW] are inputs priced at the contract's penalty. An exchange the plan cannot change
  (steam to a consumer without its own boiler) is not constrained: its shortfall is reported.

Everything is linear in the decisions (prices, COP, demand and the flow G enter as parameters), so the
NLP is a convex QP; the MPC tells IPOPT so (constant Jacobians and Hessian).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controllers.types import FloatArray
from twin.spec import ParkSpec, UnitSpec

CP_WATER = 4190.0  # [J/(kg K)], the twin's constant (twin/README.md)
RHO_WATER = 978.0  # [kg/m3], the twin's constant
MW = 1e6  # [W]
HOUR = 3600.0  # [s]
# Mean calendar lengths of a settlement period [h] (Gregorian year 365.2425 d): a horizon does not know which
# month it is in; the settlement pro-rates by the calendar period (at most 8 % apart, February).
PERIOD_HOURS: Mapping[str, float] = {
    "day": 24.0,
    "week": 168.0,
    "month": 365.2425 * 24.0 / 12.0,
    "quarter": 365.2425 * 24.0 / 4.0,
    "year": 365.2425 * 24.0,
}
# A contract without a penalty rate of its own: its shortfall (or excess) priced at this [EUR/MWh], about
# the contract prices of steam and heat in the reference park (32-40 EUR/MWh); see problem_from_site.
DEFAULT_CONTRACT_PENALTY_EUR_MWH = 40.0

log = logging.getLogger(__name__)


class ModelError(ValueError):
    """The park cannot be described by the reduced-order model (e.g. two DH networks)."""


class LoadKind:
    CHP = "chp"
    HOT_WATER = "hot_water_boiler"
    STEAM = "steam_boiler"
    HEAT_PUMP = "heat_pump"


@dataclass(frozen=True)
class Ramped:
    """A written setpoint as a ramped state: bounds [lo, hi] [SI], max rate [SI/s], the tag written."""

    key: str  # "<unit>.<quantity>", the park input
    lo: float
    hi: float
    rate: float
    scale: float = 1.0  # SI value = scale * optimiser value
    tag: str | None = None


@dataclass(frozen=True)
class LoadUnit:
    """A unit with a load state: CHP, gas boiler (hot water or steam), heat pump.

    capacity_w: fuel capacity (CHP) or heat capacity (others) [W]; tau_s: load time constant [s];
    fuel_price: forecast series of its fuel price [EUR/J] (None: electric or unpriced);
    co2_per_fuel [kg/J]; efficiency [-] (boilers: heat / fuel).
    CHP: useful_w_per_load [W], power_w_per_load [W], heat_capacity_w [W], steam_capacity_kg_s, dh_j_kg.
    Steam boiler: dh_j_kg. Heat pump: carnot_efficiency, t_con_k, t_source_k, source_cooling_k,
    sources (surplus units feeding it).
    """

    name: str
    kind: str
    setpoint: Ramped
    capacity_w: float
    min_load: float
    tau_s: float
    fuel_price: str | None = None
    co2_per_fuel: float = 0.0
    efficiency: float = 1.0
    useful_w_per_load: float = 0.0
    power_w_per_load: float = 0.0
    heat_capacity_w: float = 0.0
    steam_capacity_kg_s: float = 0.0
    dh_j_kg: float = 0.0
    split_tag: str | None = None
    serves: str | None = None  # steam boiler piped to one consumer only: its steam goes nowhere else
    carnot_efficiency: float = 0.0
    t_con_k: float = 0.0
    t_source_k: float = 0.0
    source_cooling_k: float = 0.0
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class SurplusUnit:
    """Surplus heat. capacity_w [W]; recovery: HX parameters (None: straight into DH);
    feeds_heat_pump: the stream is a heat pump's source (not a decision then)."""

    name: str
    capacity_w: float
    t_hot_k: float
    setpoint: Ramped | None
    hx_ua_w_k: float | None = None
    feeds_heat_pump: bool = False


@dataclass(frozen=True)
class StorageUnit:
    """Tank: mass [kg], usable energy e_max_j [J] (charged at the nominal supply temperature),
    delta_t_k: temperature span a flow moves [K], loss UA [W/K] at t_mean_k against ambient."""

    name: str
    setpoint: Ramped
    mass_kg: float
    e_max_j: float
    delta_t_k: float
    loss_w_k: float
    t_min_k: float
    t_max_k: float
    t_loss_k: float  # mean tank temperature minus ambient used for the loss [K]


@dataclass(frozen=True)
class DhNetwork:
    """The district-heating network around one heat-demand unit."""

    demand_unit: str
    design_load_w: float
    t_nom_k: float
    t_min_k: float
    t_max_k: float
    t_return_k: float
    min_flow_fraction: float
    heat_capacity_j_k: float
    loss_w_k: float
    t_ground_k: float
    pipe: str | None = None
    margin_k: float = 2.0  # supply held this far above the temperature the demand needs [K]
    cells: int = 16  # mixed cells standing in for the pipe's transport delay (8 let a front arrive early enough to make the closed loop oscillate)


@dataclass(frozen=True)
class SteamDemand:
    name: str
    design_flow_kg_s: float


class DeliveryKind:
    """How an exchange's delivery rate d [MW] is expressed in the model's variables.

    STEAM_NET: steam over the header to a consumer that also has its own steam boilers feeding it
    directly: d = (consumer demand - those boilers' steam) * heat per kg (a decision: boiler vs header).
    STEAM_DEMAND: steam to a consumer without a boiler of its own: d = demand * heat per kg (a forecast,
    not a decision: reported, not constrained). CHP_HEAT: the CHP's heat to DH, its ``dh_heat`` input.
    SURPLUS: surplus heat offered, use * available heat (what the twin's surplus unit meters).
    HP_SOURCE: heat a heat pump draws from its single source, L capacity (1 - 1/COP)."""

    STEAM_NET = "steam_net"
    STEAM_DEMAND = "steam_demand"
    CHP_HEAT = "chp_heat"
    SURPLUS = "surplus"
    HP_SOURCE = "hp_source"


@dataclass(frozen=True)
class ExchangeTerms:
    """A contracted exchange as the site config gives it, in plain values: the connection's ends, the
    contract's delivery bounds per settlement period [MWh], take-or-pay fraction [-] and penalty
    [EUR/MWh] (None: :data:`DEFAULT_CONTRACT_PENALTY_EUR_MWH`), the period (a key of
    :data:`PERIOD_HOURS`)."""

    exchange: str
    contract: str
    source: str
    source_port: str
    target: str
    target_port: str
    min_delivery_mwh: float = 0.0
    max_delivery_mwh: float | None = None
    take_or_pay_fraction: float = 0.0
    penalty_eur_per_mwh: float | None = None
    settlement_period: str = "month"


@dataclass(frozen=True)
class ContractDelivery:
    """A contract held over the horizon: delivery ``kind`` (see :class:`DeliveryKind`) of ``unit`` (the
    consumer, CHP, surplus unit or heat pump); ``boilers``: steam boilers feeding the consumer directly;
    ``mw_per_kg_s``: heat metered per steam flow [MW/(kg/s)]; ``min_mw``/``max_mw``: the rates the
    horizon must average [MW] (0 / None: no bound); ``penalty`` [EUR/MWh] of short or excess energy.
    ``key``: the name in states, slacks and terms (the contract id)."""

    key: str
    exchange: str
    kind: str
    unit: str
    min_mw: float
    max_mw: float | None
    penalty: float
    boilers: tuple[str, ...] = ()
    mw_per_kg_s: float = 0.0

    @property
    def decided(self) -> bool:
        """True when the plan can change the delivery (it then gets a constraint)."""
        return self.kind != DeliveryKind.STEAM_DEMAND


@dataclass(frozen=True)
class MpcProblemSpec:
    """Everything the MPC is built from, immutable and picklable (plain values).

    step_s: control interval [s]; n_horizon: intervals in the horizon; unmet_penalty [EUR/J] of unmet
    heat (steam unmet is charged at its enthalpy rise); band_penalty [EUR/(K s)] of supply-temperature
    band violation; move_penalty [-]: weight of squared setpoint rates relative to full rate
    (times ``move_cost_ref`` [EUR/s]); electricity_price / co2_price: forecast series names.
    max_solve_s: IPOPT wall-time limit [s]; tolerance: IPOPT tol. contracts: the contracted exchanges
    whose minimum / maximum delivery the plan holds or reports (:func:`contract_deliveries`).
    """

    loads: tuple[LoadUnit, ...]
    surplus: tuple[SurplusUnit, ...]
    storage: tuple[StorageUnit, ...]
    dh: DhNetwork | None
    steam: tuple[SteamDemand, ...]
    step_s: float = 900.0
    n_horizon: int = 96
    unmet_penalty: float = 2000.0 / 3.6e9
    band_penalty: float = 500.0 / HOUR
    move_penalty: float = 1e-3
    move_cost_ref: float = 1e6 / HOUR
    electricity_price: str = "price.electricity"
    co2_price: str = "price.co2"
    max_solve_s: float = 10.0
    tolerance: float = 1e-5
    steam_dh_ref_j_kg: float = 2.4e6
    defaults: Mapping[str, float] = field(default_factory=dict)
    headers: tuple[tuple[str, float], ...] = ()  # steam headers: (unit, nominal pressure [Pa])
    contracts: tuple[ContractDelivery, ...] = ()

    @property
    def horizon_h(self) -> float:
        return self.n_horizon * self.step_s / HOUR

    def held_contracts(self) -> tuple[ContractDelivery, ...]:
        """The contracts with a constraint in the NLP (delivery a decision), in state order."""
        return tuple(c for c in self.contracts if c.decided)

    def ramped(self) -> tuple[Ramped, ...]:
        """Every written setpoint, in state order."""
        out = [u.setpoint for u in self.loads]
        out += [s.setpoint for s in self.surplus if s.setpoint is not None]
        out += [s.setpoint for s in self.storage]
        return tuple(out)


# ------------------------------------------------------------------------------------------ from the spec


def _enthalpy_rise(p_pa: float, t_steam_k: float | None, t_feed_k: float) -> float:
    """h(steam) - h(feedwater) [J/kg] from IF97 (plain kernels: no compile)."""
    from twin.if97 import load_plain_kernels

    if97 = load_plain_kernels()
    t_sat = float(if97.t_sat(p_pa))
    t = t_sat + 1e-3 if t_steam_k is None or t_steam_k <= t_sat + 1e-3 else t_steam_k
    return float(if97.h_pt(p_pa, t)) - float(if97.h_pt(p_pa, min(t_feed_k, t_sat - 1.0)))


def _served_consumer(spec: ParkSpec, boiler: str) -> str | None:
    """The one steam consumer a steam boiler is piped to directly (a backup boiler), else None."""
    targets = {c.target for c in spec.connections if c.source == boiler}
    consumers = [t for t in targets if spec.unit(t).model == "steam_consumer"]
    return consumers[0] if len(consumers) == 1 and len(targets) == 1 else None


def problem_from_spec(
    spec: ParkSpec,
    *,
    setpoint_tags: Mapping[str, Any] | None = None,
    fuels: Mapping[str, str] | None = None,
    step_s: float = 900.0,
    n_horizon: int = 96,
    unmet_penalty_eur_j: float = 2000.0 / 3.6e9,
    move_penalty: float = 1e-3,
    max_solve_s: float = 10.0,
    exchanges: Sequence[ExchangeTerms] = (),
) -> MpcProblemSpec:
    """The frozen MPC problem of a park.

    setpoint_tags: ``"<unit>.<quantity>"`` -> an object with ``id``, ``bounds_si`` (lo, hi) and
    ``rate_limit_si_per_s`` (a config TagSpec) for the setpoints that are written; inputs without a tag
    use their physical range and the unit's ramp rate and are not written.
    fuels: unit -> fuel name; its price is the forecast series ``price.<fuel>`` [EUR/J].
    exchanges: contracted exchanges whose minimum / maximum delivery the plan holds (see
    :func:`contract_deliveries`).
    """
    tags = dict(setpoint_tags or {})
    fuels = dict(fuels or {})
    by_model: dict[str, list[UnitSpec]] = {}
    for u in spec.units:
        by_model.setdefault(u.model, []).append(u)

    def ramped(key: str, lo: float, hi: float, rate: float, scale: float = 1.0) -> Ramped:
        t = tags.get(key)
        if t is None:
            return Ramped(key, lo, hi, rate, scale)
        t_lo, t_hi = t.bounds_si
        t_rate = t.rate_limit_si_per_s
        rate = min(rate, t_rate) if t_rate and t_rate > 0 else rate
        return Ramped(key, max(lo, t_lo), min(hi, t_hi), rate, scale, t.id)

    def price(u: UnitSpec) -> str | None:
        f = fuels.get(u.name)
        return f"price.{f}" if f else None

    hp_sources: dict[str, list[str]] = {}
    hx_of: dict[str, UnitSpec] = {}
    for c in spec.connections:
        tgt = spec.unit(c.target)
        if tgt.model == "heat_pump" and c.target_port == "source_in":
            hp_sources.setdefault(tgt.name, []).append(c.source)
        if tgt.model == "heat_exchanger" and spec.unit(c.source).model == "surplus_heat":
            hx_of[c.source] = tgt
    feeding = {s for v in hp_sources.values() for s in v}

    loads: list[LoadUnit] = []
    for u in by_model.get("chp_boiler", []):
        p = u.params
        key = f"{u.name}.load_setpoint"
        split = tags.get(f"{u.name}.heat_split_setpoint")
        loads.append(
            LoadUnit(
                u.name,
                LoadKind.CHP,
                ramped(key, 0.0, 1.0, p["ramp_rate"]),
                p["fuel_capacity"],
                p["min_load"],
                p["time_constant"],
                price(u),
                p["co2_per_fuel"],
                1.0,
                (p["efficiency"] - p["power_ratio"]) * p["fuel_capacity"],
                p["power_ratio"] * p["fuel_capacity"],
                p["heat_capacity"],
                p["steam_capacity"],
                _enthalpy_rise(p["steam_pressure"], p["steam_temperature"], p["feedwater_temperature"]),
                split.id if split is not None else None,
            )
        )
    for u in by_model.get("gas_boiler", []):
        p = u.params
        steam = round(p.get("medium", 0.0)) == 1
        loads.append(
            LoadUnit(
                u.name,
                LoadKind.STEAM if steam else LoadKind.HOT_WATER,
                ramped(f"{u.name}.load_setpoint", 0.0, 1.0, p["ramp_rate"]),
                p["capacity"],
                p["min_load"],
                p["time_constant"],
                price(u),
                p["co2_per_fuel"],
                p["efficiency"],
                dh_j_kg=_enthalpy_rise(p["steam_pressure"], None, p["feedwater_temperature"])
                if steam
                else 0.0,
                serves=_served_consumer(spec, u.name) if steam else None,
            )
        )
    for u in by_model.get("heat_pump", []):
        p = u.params
        loads.append(
            LoadUnit(
                u.name,
                LoadKind.HEAT_PUMP,
                ramped(f"{u.name}.load_setpoint", 0.0, 1.0, p["ramp_rate"]),
                p["capacity"],
                p["min_load"],
                p["time_constant"],
                carnot_efficiency=p["carnot_efficiency"],
                t_con_k=p["condenser_temperature"],
                t_source_k=p["source_temperature"],
                source_cooling_k=p["source_cooling"],
                sources=tuple(hp_sources.get(u.name, ())),
            )
        )
    surplus: list[SurplusUnit] = []
    for u in by_model.get("surplus_heat", []):
        p = u.params
        hx = hx_of.get(u.name)
        fed = u.name in feeding
        surplus.append(
            SurplusUnit(
                u.name,
                p["capacity"],
                p["temperature"],
                None if fed else ramped(f"{u.name}.use_setpoint", 0.0, 1.0, 1.0 / 60.0),
                hx.params["ua"] if hx is not None else None,
                fed,
            )
        )
    demands = by_model.get("heat_demand", [])
    if len(demands) > 1:
        raise ModelError("the reduced-order model handles one district-heating network (one heat_demand)")
    dh = None
    if demands:
        d = demands[0].params
        t_nom = 0.5 * (d["min_supply_temperature"] + d["max_supply_temperature"])
        pipes = by_model.get("dh_pipe", [])
        cap = 0.0
        loss = 0.0
        t_ground = 281.15
        for pipe in pipes:
            pp = pipe.params
            area = math.pi * pp["inner_diameter"] ** 2 / 4.0
            cap += RHO_WATER * area * pp["length"] * CP_WATER + pp["wall_heat_capacity"] * pp["length"]
            loss += pp["loss_coefficient"] * pp["length"]
            t_ground = pp["ground_temperature"]
        for hx in by_model.get("heat_exchanger", []):
            cap += RHO_WATER * hx.params["cold_volume"] * CP_WATER + hx.params["wall_heat_capacity"]
        cap = max(cap, 1e7)  # a network without a pipe still has water in its plant and substations
        dh = DhNetwork(
            demands[0].name,
            d["design_load"],
            t_nom,
            d["min_supply_temperature"],
            d["max_supply_temperature"],
            d["return_temperature"],
            d["min_flow_fraction"],
            cap,
            loss,
            t_ground,
            pipes[0].name if pipes else None,
        )
    storage: list[StorageUnit] = []
    for u in by_model.get("storage_tank", []):
        p = u.params
        if dh is None:
            raise ModelError(f"storage {u.name!r} needs a district-heating network")
        mass = RHO_WATER * p["volume"]
        t_top = min(p["max_temperature"], dh.t_nom_k)
        span = dh.t_nom_k - dh.t_return_k
        storage.append(
            StorageUnit(
                u.name,
                ramped(
                    f"{u.name}.charge_setpoint",
                    -p["max_flow"],
                    p["max_flow"],
                    p["max_flow"] / 60.0,
                    p["max_flow"],
                ),
                mass,
                mass * CP_WATER * max(t_top - p["min_temperature"], 1.0),
                span,
                p["loss_coefficient"],
                p["min_temperature"],
                p["max_temperature"],
                0.5 * (t_top + p["min_temperature"]) - p["ambient_temperature"],
            )
        )
    steam_demands = tuple(
        SteamDemand(u.name, u.params["design_flow"]) for u in by_model.get("steam_consumer", [])
    )
    dh_ref = next((u.dh_j_kg for u in loads if u.dh_j_kg > 0), 2.4e6)
    return MpcProblemSpec(
        loads=tuple(loads),
        surplus=tuple(surplus),
        storage=tuple(storage),
        dh=dh,
        steam=steam_demands,
        step_s=step_s,
        n_horizon=n_horizon,
        unmet_penalty=unmet_penalty_eur_j,
        move_penalty=move_penalty,
        max_solve_s=max_solve_s,
        steam_dh_ref_j_kg=dh_ref,
        headers=tuple((u.name, u.params["nominal_pressure"]) for u in by_model.get("steam_header", [])),
        contracts=contract_deliveries(spec, exchanges, loads, surplus),
    )


def _steam_heat_j_kg(spec: ParkSpec, consumer: UnitSpec) -> float:
    """Heat a consumer meters per kg of steam [J/kg]: h(header steam) - h(condensate), the twin's
    ``steam_consumer`` heat flow (header steam taken as the CHP's extraction, else saturated at the
    header's nominal pressure; condensate at 2 bar as ``twin.park`` evaluates it)."""
    from twin.if97 import load_plain_kernels

    if97 = load_plain_kernels()
    chp = next((u for u in spec.units if u.model == "chp_boiler"), None)
    header = next((u for u in spec.units if u.model == "steam_header"), None)
    if chp is not None:
        p_pa, t_k = chp.params["steam_pressure"], chp.params["steam_temperature"]
    else:
        p_pa = header.params["nominal_pressure"] if header is not None else 10e5
        t_k = None
    t_sat = float(if97.t_sat(p_pa))
    t = t_sat + 1e-3 if t_k is None or t_k <= t_sat + 1e-3 else t_k
    t_cond = min(float(consumer.params.get("condensate_temperature", 363.15)), 393.0)
    return float(if97.h_pt(p_pa, t)) - float(if97.h_pt(2e5, t_cond))


def contract_deliveries(
    spec: ParkSpec,
    exchanges: Sequence[ExchangeTerms],
    loads: Sequence[LoadUnit],
    surplus: Sequence[SurplusUnit],
) -> tuple[ContractDelivery, ...]:
    """The contracts the plan holds: per exchange with a minimum or maximum delivery, its delivery in the
    model's variables (:class:`DeliveryKind`) and the bounds as rates [MW] over the settlement period.

    The minimum owed is ``take_or_pay_fraction x min_delivery_mwh``; a contract with a minimum but no
    take-or-pay fraction (0) is held to its full minimum (the settlement notes any shortfall). An exchange
    the model cannot express is skipped with a logged note."""
    load_by = {lu.name: lu for lu in loads}
    surplus_by = {su.name: su for su in surplus}
    out: list[ContractDelivery] = []
    keys = [e.contract for e in exchanges]
    for e in exchanges:
        lo_mwh = e.min_delivery_mwh * (e.take_or_pay_fraction if e.take_or_pay_fraction > 0 else 1.0)
        if lo_mwh <= 0.0 and e.max_delivery_mwh is None:
            continue
        period_h = PERIOD_HOURS.get(e.settlement_period)
        if period_h is None:
            raise ModelError(f"contract {e.contract!r}: unknown settlement period {e.settlement_period!r}")
        key = e.contract if keys.count(e.contract) == 1 else f"{e.contract}.{e.exchange}"
        bounds: dict[str, Any] = dict(
            key=key,
            exchange=e.exchange,
            min_mw=max(lo_mwh, 0.0) / period_h,
            max_mw=None if e.max_delivery_mwh is None else e.max_delivery_mwh / period_h,
            penalty=DEFAULT_CONTRACT_PENALTY_EUR_MWH
            if e.penalty_eur_per_mwh is None
            else e.penalty_eur_per_mwh,
        )
        src = spec.unit(e.source)
        tgt = spec.unit(e.target)
        if tgt.model == "steam_consumer" and src.model in ("steam_header", "chp_boiler"):
            own = tuple(
                c.source
                for c in spec.connections
                if c.target == tgt.name
                and c.source != e.source
                and c.source in load_by
                and load_by[c.source].kind == LoadKind.STEAM
            )
            out.append(
                ContractDelivery(
                    kind=DeliveryKind.STEAM_NET if own else DeliveryKind.STEAM_DEMAND,
                    unit=tgt.name,
                    boilers=own,
                    mw_per_kg_s=_steam_heat_j_kg(spec, tgt) / MW,
                    **bounds,
                )
            )
        elif src.model == "chp_boiler" and e.source_port == "heat_out":
            out.append(ContractDelivery(kind=DeliveryKind.CHP_HEAT, unit=src.name, **bounds))
        elif src.name in surplus_by and surplus_by[src.name].setpoint is not None:
            out.append(ContractDelivery(kind=DeliveryKind.SURPLUS, unit=src.name, **bounds))
        elif (
            tgt.model == "heat_pump"
            and e.target_port == "source_in"
            and load_by.get(tgt.name) is not None
            and load_by[tgt.name].sources == (src.name,)
        ):
            out.append(ContractDelivery(kind=DeliveryKind.HP_SOURCE, unit=tgt.name, **bounds))
        else:
            log.warning(
                "contract %r: exchange %r (%s.%s -> %s.%s) is not expressed in the MPC model; "
                "its minimum/maximum delivery is not held by the plan",
                e.contract,
                e.exchange,
                e.source,
                e.source_port,
                e.target,
                e.target_port,
            )
    return tuple(out)


# ---------------------------------------------------------------------------------------- the CasADi model


@dataclass(frozen=True)
class Layout:
    """Names of the scaled state, input and parameter (tvp) vectors."""

    states: tuple[str, ...]
    inputs: tuple[str, ...]
    params: tuple[str, ...]
    x_lb: tuple[float, ...]
    x_ub: tuple[float, ...]
    u_lb: tuple[float, ...]
    u_ub: tuple[float, ...]
    terms: tuple[str, ...] = ("fuel", "electricity", "co2", "unmet_heat", "unmet_steam", "band", "move")
    # bounds on the last predicted state only (contract sums; +-inf elsewhere: do-mpc's default)
    x_terminal_lb: tuple[float, ...] = ()
    x_terminal_ub: tuple[float, ...] = ()

    def x_index(self, name: str) -> int:
        return self.states.index(name)

    def u_index(self, name: str) -> int:
        return self.inputs.index(name)

    def p_index(self, name: str) -> int:
        return self.params.index(name)


def layout(spec: MpcProblemSpec) -> Layout:
    """State / input / parameter names and bounds in the optimiser's scaled units.

    States: ``<unit>.load`` [-], ``<key>`` ramped setpoints [SI / scale], ``<tank>.energy`` [MWh],
    ``dh.supply_temperature`` [degC]. Inputs: ``<key>.rate`` [1/h of the scaled setpoint],
    ``<chp>.dh_heat`` [MW], ``<chp>.steam`` [kg/s], slacks ``unmet_heat`` [MW], ``unmet_steam`` [kg/s],
    ``band_low``/``band_high`` [K]. Parameters (per step): ``q_demand`` [MW], ``g_town`` [MW/K],
    ``steam_demand`` [kg/s], ``<surplus>.heat`` [MW] (recoverable at full use), ``<hp>.inv_cop`` [-],
    ``<hp>.source`` [MW], prices ``price.<fuel>`` / ``price.electricity`` [EUR/MWh], ``price.co2``
    [EUR/kg], ``q_bias`` [MW] the estimated heat the model misses (offset-free correction).
    Contracts held (:meth:`MpcProblemSpec.held_contracts`): state ``contract.<key>.delivered`` [MWh],
    inputs ``contract.<key>.short`` / ``.excess`` [MW] (for a minimum / maximum), parameters
    ``<consumer>.steam_demand`` [kg/s] and ``<surplus>.available`` [MW] where a delivery needs them."""
    xs: list[str] = []
    xl: list[float] = []
    xu: list[float] = []
    us: list[str] = []
    ul: list[float] = []
    uu: list[float] = []
    for u in spec.loads:
        xs.append(f"{u.name}.load")
        xl.append(0.0)
        xu.append(1.0)
    for r in spec.ramped():
        xs.append(r.key)
        xl.append(r.lo / r.scale)
        xu.append(r.hi / r.scale)
        us.append(f"{r.key}.rate")
        ul.append(-r.rate / r.scale * HOUR)
        uu.append(r.rate / r.scale * HOUR)
    for s in spec.storage:
        xs.append(f"{s.name}.energy")
        xl.append(0.0)
        xu.append(s.e_max_j / 3.6e9)
    if spec.dh is not None:
        for i in range(1, spec.dh.cells):
            xs.append(f"dh.pipe_temperature[{i - 1}]")
            xl.append(-math.inf)
            xu.append(math.inf)
        xs.append("dh.supply_temperature")
        xl.append(-math.inf)
        xu.append(math.inf)
    for u in spec.loads:
        if u.kind == LoadKind.CHP:
            us += [f"{u.name}.dh_heat", f"{u.name}.steam"]
            ul += [0.0, 0.0]
            uu += [u.heat_capacity_w / MW, u.steam_capacity_kg_s]
    if spec.dh is not None:
        us += ["unmet_heat", "band_low", "band_high"]
        ul += [0.0, 0.0, 0.0]
        uu += [math.inf, math.inf, math.inf]
    if spec.steam:
        us.append("unmet_steam")
        ul.append(0.0)
        uu.append(math.inf)
    ps = ["q_demand", "g_town", "steam_demand", "q_bias"]
    ps += [f"{s.name}.heat" for s in spec.surplus]
    for u in spec.loads:
        if u.kind == LoadKind.HEAT_PUMP:
            ps += [f"{u.name}.inv_cop", f"{u.name}.source"]
    ps += [
        *sorted({u.fuel_price for u in spec.loads if u.fuel_price}),
        spec.electricity_price,
        spec.co2_price,
    ]
    if spec.storage:
        ps.append("storage_value")
    tl = [-math.inf] * len(xs)
    tu = [math.inf] * len(xs)
    for c in spec.held_contracts():
        xs.append(f"contract.{c.key}.delivered")
        xl.append(-math.inf)
        xu.append(math.inf)
        tl.append(c.min_mw * spec.horizon_h if c.min_mw > 0 else -math.inf)
        tu.append(c.max_mw * spec.horizon_h if c.max_mw is not None else math.inf)
        if c.min_mw > 0:
            us.append(f"contract.{c.key}.short")
            ul.append(0.0)
            uu.append(math.inf)
        if c.max_mw is not None:
            us.append(f"contract.{c.key}.excess")
            ul.append(0.0)
            uu.append(math.inf)
    for u in spec.loads:
        if u.serves is not None and f"{u.serves}.steam_demand" not in ps:
            ps.append(f"{u.serves}.steam_demand")
    for c in spec.contracts:
        extra = {
            DeliveryKind.STEAM_NET: f"{c.unit}.steam_demand",
            DeliveryKind.STEAM_DEMAND: f"{c.unit}.steam_demand",
            DeliveryKind.SURPLUS: f"{c.unit}.available",
        }.get(c.kind)
        if extra is not None and extra not in ps:
            ps.append(extra)
    terms = Layout.terms + (("contract",) if spec.contracts else ())
    return Layout(
        tuple(xs),
        tuple(us),
        tuple(ps),
        tuple(xl),
        tuple(xu),
        tuple(ul),
        tuple(uu),
        terms,
        tuple(tl),
        tuple(tu),
    )


@dataclass(frozen=True)
class SxModel:
    """The reduced model in CasADi SX: ``rhs`` (continuous, d/dt per second), ``cost`` (terms per
    second [EUR/s]), ``g`` (constraints, all <= 0), ``outputs`` (named physical outputs [SI])."""

    x: Any
    u: Any
    p: Any
    rhs: Any
    cost: Any
    g: Any
    outputs: Any
    output_names: tuple[str, ...]
    sums: tuple[int, ...] = ()  # states that sum their rhs over an interval (x_k+1 = x_k + rhs(x_k, u_k) dt)


class Hold:
    """How a planned setpoint reaches the plant within an interval.

    STEP: the value S_k+1 is written at the start of interval k (the supervisor ramps to it at the
    tag's rate, which the rate bound keeps within the interval); the discrete-time model.
    RAMP: the setpoint moves linearly from S_k to S_k+1 over the interval (dS/dt = r); the
    continuous-time model (do-mpc's default collocation set-up)."""

    STEP = "step"
    RAMP = "ramp"


def build_sx(spec: MpcProblemSpec, lay: Layout | None = None, hold: str = Hold.STEP) -> SxModel:
    import casadi as ca

    lay = lay or layout(spec)
    x = ca.SX.sym("x", len(lay.states))
    u = ca.SX.sym("u", len(lay.inputs))
    p = ca.SX.sym("p", len(lay.params))

    def X(n: str) -> Any:
        return x[lay.x_index(n)]

    def U(n: str) -> Any:
        return u[lay.u_index(n)]

    def P(n: str) -> Any:
        return p[lay.p_index(n)]

    def A(key: str) -> Any:
        """The setpoint the plant follows during the interval (see Hold)."""
        if hold == Hold.STEP:
            return X(key) + U(f"{key}.rate") * spec.step_s / HOUR
        return X(key)

    rhs: list[Any] = [0.0] * len(lay.states)
    g: list[Any] = []
    fuel_cost: Any = 0.0
    elec_cost: Any = 0.0
    co2_cost: Any = 0.0
    q_dh: Any = 0.0  # heat into the DH supply [MW]
    steam_made: Any = 0.0  # [kg/s]
    outs: dict[str, Any] = {}
    for r in spec.ramped():
        # STEP: frozen while the interval is integrated; ``discretise`` sets S_k+1 = S_k + r dt
        rhs[lay.x_index(r.key)] = U(f"{r.key}.rate") / HOUR if hold == Hold.RAMP else 0.0
    for lu in spec.loads:
        load = X(f"{lu.name}.load")
        rhs[lay.x_index(f"{lu.name}.load")] = (A(lu.setpoint.key) - load) / lu.tau_s
        fuel_w: Any = 0.0
        if lu.kind == LoadKind.CHP:
            fuel_w = load * lu.capacity_w
            qh, ms = U(f"{lu.name}.dh_heat"), U(f"{lu.name}.steam")
            g.append(qh + ms * lu.dh_j_kg / MW - load * lu.useful_w_per_load / MW)
            q_dh += qh
            steam_made += ms
            elec_cost -= load * lu.power_w_per_load / MW * P(spec.electricity_price)
            outs[f"{lu.name}.heat_flow"] = qh * MW
            outs[f"{lu.name}.steam_flow"] = ms
        elif lu.kind == LoadKind.HEAT_PUMP:
            heat = load * lu.capacity_w / MW
            q_dh += heat
            power = heat * P(f"{lu.name}.inv_cop")
            elec_cost += power * P(spec.electricity_price)
            # source limit on the setpoint written (the lagged load at k = 0 is fixed: always feasible)
            heat_sp = A(lu.setpoint.key) * lu.capacity_w / MW
            g.append(heat_sp * (1.0 - P(f"{lu.name}.inv_cop")) - P(f"{lu.name}.source"))
            outs[f"{lu.name}.heat_flow"] = heat * MW
            outs[f"{lu.name}.electric_power"] = power * MW
        else:
            fuel_w = load * lu.capacity_w / lu.efficiency
            if lu.kind == LoadKind.STEAM:
                steam_made += load * lu.capacity_w / lu.dh_j_kg
                outs[f"{lu.name}.steam_flow"] = load * lu.capacity_w / lu.dh_j_kg
                if lu.serves is not None:
                    # a backup boiler piped to one consumer cannot cover the others' steam (on the setpoint
                    # written, as for the heat pump's source: the lagged load at k = 0 is fixed); soft through
                    # the unmet-steam slack so a boiler that cannot ramp down in one step leaves it feasible
                    g.append(
                        A(lu.setpoint.key) * lu.capacity_w / lu.dh_j_kg
                        - P(f"{lu.serves}.steam_demand")
                        - U("unmet_steam")
                    )
            else:
                q_dh += load * lu.capacity_w / MW
                outs[f"{lu.name}.heat_flow"] = load * lu.capacity_w
        if lu.fuel_price is not None:
            fuel_cost += fuel_w / MW * P(lu.fuel_price)
        co2_cost += fuel_w * lu.co2_per_fuel * P(spec.co2_price)  # [kg/s * EUR/kg]
        outs[f"{lu.name}.load"] = load
    for s in spec.surplus:
        if s.setpoint is not None:
            heat = A(s.setpoint.key) * P(f"{s.name}.heat")
            q_dh += heat
            outs[f"{s.name}.recovered"] = heat * MW
    for st in spec.storage:
        flow = A(st.setpoint.key) * st.setpoint.scale  # [kg/s], > 0 charges
        power = flow * CP_WATER * st.delta_t_k / MW
        loss = st.loss_w_k * st.t_loss_k / MW
        rhs[lay.x_index(f"{st.name}.energy")] = (power - loss) / HOUR  # [MWh/s]
        q_dh -= power
        outs[f"{st.name}.energy"] = X(f"{st.name}.energy") * 3.6e9
    unmet_heat: Any = 0.0
    band: Any = 0.0
    if spec.dh is not None:
        d = spec.dh
        ts = X("dh.supply_temperature")
        t_r = d.t_return_k - 273.15
        t_g = d.t_ground_k - 273.15
        delivered = P("g_town") * (ts - t_r)
        # the pipe as a cascade of mixed cells: plant heat enters the first, the town draws on the last
        cells = [X(f"dh.pipe_temperature[{i}]") for i in range(d.cells - 1)] + [ts]
        names = [f"dh.pipe_temperature[{i}]" for i in range(d.cells - 1)] + ["dh.supply_temperature"]
        c_cell = d.heat_capacity_j_k / MW / d.cells
        upstream: Any = None
        for name, tc in zip(names, cells, strict=True):
            loss = d.loss_w_k / MW / d.cells * (tc - t_g)
            # the plant cell takes the return water plus the production; the others their upstream cell
            # the plant cell takes the return water, the production and the estimated model error
            inflow = q_dh + P("q_bias") + P("g_town") * t_r if upstream is None else P("g_town") * upstream
            rhs[lay.x_index(name)] = (inflow - P("g_town") * tc - loss) / c_cell
            upstream = tc
        # demand covered with the supply d.margin_k above what the substations need (noise, model error)
        g.append(P("q_demand") - P("g_town") * (ts - t_r - d.margin_k) - U("unmet_heat"))
        g.append(ts - (d.t_max_k - 273.15) - U("band_high"))
        # water leaving the plant is held in the band too (a pulse of heat would travel to the town)
        g.append(q_dh - P("g_town") * (d.t_max_k - d.t_return_k) - P("g_town") * U("band_high"))
        g.append((d.t_min_k - 273.15) - ts - U("band_low"))
        unmet_heat = U("unmet_heat") * spec.unmet_penalty * MW
        band = (U("band_low") + U("band_high")) * spec.band_penalty
        outs["dh.delivered"] = delivered * MW
        outs["dh.production"] = q_dh * MW
    unmet_steam: Any = 0.0
    if spec.steam:
        g.append(P("steam_demand") - steam_made - U("unmet_steam"))
        unmet_steam = U("unmet_steam") * spec.steam_dh_ref_j_kg * spec.unmet_penalty
    contract: Any = 0.0  # [EUR/h]
    sums: list[int] = []
    for c in spec.contracts:
        d = _delivery(spec, c, X, U, P, A)
        outs[f"contract.{c.key}.delivery"] = d * MW
        if not c.decided:
            continue  # a forecast, not a decision: its shortfall is reported, not constrained
        flow = d
        if c.min_mw > 0:
            flow = flow + U(f"contract.{c.key}.short")
            contract += U(f"contract.{c.key}.short") * c.penalty
        if c.max_mw is not None:
            flow = flow - U(f"contract.{c.key}.excess")
            contract += U(f"contract.{c.key}.excess") * c.penalty
        i = lay.x_index(f"contract.{c.key}.delivered")
        rhs[i] = flow / HOUR  # [MWh/s]
        sums.append(i)
    move: Any = 0.0
    for r in spec.ramped():
        move += (U(f"{r.key}.rate") / (r.rate / r.scale * HOUR)) ** 2
    for st in spec.storage:
        move += A(st.setpoint.key) ** 2  # throughput: no free charge/discharge cycling (mixing losses)
    move = move * spec.move_penalty * spec.move_cost_ref
    cost = ca.vertcat(
        fuel_cost * MW / 3.6e9,  # [MW * EUR/MWh] -> EUR/s
        elec_cost * MW / 3.6e9,
        co2_cost,
        unmet_heat,
        unmet_steam,
        band,
        move,
        *([contract / HOUR] if spec.contracts else []),  # [EUR/h] -> EUR/s
    )
    out_names = tuple(outs)
    return SxModel(
        x,
        u,
        p,
        ca.vertcat(*rhs),
        cost,
        ca.vertcat(*g) if g else ca.SX(0, 1),
        ca.vertcat(*outs.values()),
        out_names,
        tuple(sums),
    )


def _delivery(spec: MpcProblemSpec, c: ContractDelivery, X: Any, U: Any, P: Any, A: Any) -> Any:
    """An exchange's delivery rate [MW] (see :class:`DeliveryKind`); X, U, P, A as in :func:`build_sx`."""
    if c.kind in (DeliveryKind.STEAM_NET, DeliveryKind.STEAM_DEMAND):
        kg: Any = P(f"{c.unit}.steam_demand")
        for b in c.boilers:
            lu = next(u for u in spec.loads if u.name == b)
            kg = kg - X(f"{b}.load") * lu.capacity_w / lu.dh_j_kg
        return kg * c.mw_per_kg_s
    if c.kind == DeliveryKind.CHP_HEAT:
        return U(f"{c.unit}.dh_heat")
    if c.kind == DeliveryKind.SURPLUS:
        su = next(s for s in spec.surplus if s.name == c.unit)
        if su.setpoint is None:
            raise ModelError(f"contract {c.key!r}: surplus {c.unit!r} has no use setpoint")
        return A(su.setpoint.key) * P(f"{c.unit}.available")
    if c.kind == DeliveryKind.HP_SOURCE:
        lu = next(u for u in spec.loads if u.name == c.unit)
        return X(f"{lu.name}.load") * lu.capacity_w / MW * (1.0 - P(f"{lu.name}.inv_cop"))
    raise ModelError(f"contract {c.key!r}: unknown delivery kind {c.kind!r}")


def discretise(model: SxModel, dt: float, substeps: int, ramped: Sequence[tuple[int, int]] = ()) -> Any:
    """x(t + dt) for inputs held over the interval: ``substeps`` classical RK4 steps (SX expression).

    ramped: (state index, rate input index) of setpoints built with ``Hold.STEP``: S_k+1 = S_k + r dt
    (rates in 1/h)."""
    import casadi as ca

    f = ca.Function("f", [model.x, model.u, model.p], [model.rhs])
    h = dt / substeps
    xk = model.x
    for _ in range(substeps):
        k1 = f(xk, model.u, model.p)
        k2 = f(xk + 0.5 * h * k1, model.u, model.p)
        k3 = f(xk + 0.5 * h * k2, model.u, model.p)
        k4 = f(xk + h * k3, model.u, model.p)
        xk = xk + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    if ramped or model.sums:
        parts = [xk[i] for i in range(xk.shape[0])]
        for xi, ui in ramped:
            parts[xi] = model.x[xi] + model.u[ui] * dt / HOUR
        for xi in model.sums:  # contract sums: the rate at the interval start times dt, as the cost terms
            parts[xi] = model.x[xi] + model.rhs[xi] * dt
        xk = ca.vertcat(*parts)
    return xk


@dataclass(frozen=True)
class LinearStep:
    """One control interval of the discretised model as an affine map x+ = A(p) x + B(p) u + c(p), with
    A and B kept to their structural non-zeros. The reduced model is affine in (x, u) for given
    parameters (prices, flows, COP, ... multiply states and inputs, never each other), so the map is
    exact, not a linearisation.

    ``values(params)`` gives per row of parameters the ``n_values`` numbers (A's non-zeros, B's, c) that
    ``apply`` takes as symbols in the NLP."""

    nx: int
    nu: int
    fn: Any  # casadi Function p -> (A non-zeros, B non-zeros, c)
    a_sparsity: Any  # casadi Sparsity of A (nx x nx) and of B (nx x nu)
    b_sparsity: Any

    @property
    def n_values(self) -> int:
        return int(self.a_sparsity.nnz()) + int(self.b_sparsity.nnz()) + self.nx

    def values(self, params: FloatArray) -> FloatArray:
        """(rows, n_values): the map of each row of ``params`` (rows x n_params)."""
        rows = params.shape[0]
        a, b, c = self.fn.map(rows)(params.T)
        return np.vstack([np.asarray(a), np.asarray(b), np.asarray(c)]).T

    def apply(self, x: Any, u: Any, v: Any) -> Any:
        """A x + B u + c with the non-zeros and offset taken from the symbols ``v`` (n_values x 1)."""
        import casadi as ca

        na, nb = int(self.a_sparsity.nnz()), int(self.b_sparsity.nnz())
        a = ca.SX(self.a_sparsity, v[:na])
        b = ca.SX(self.b_sparsity, v[na : na + nb])
        return ca.mtimes(a, x) + ca.mtimes(b, u) + v[na + nb :]


def linear_step(
    model: SxModel, dt: float, substeps: int, ramped: Sequence[tuple[int, int]] = ()
) -> LinearStep:
    """The :func:`discretise` map of ``model`` as a :class:`LinearStep`. Raises ModelError if the model is
    not affine in (x, u) (a new unit kernel that multiplies two decisions needs the RK4 path)."""
    import casadi as ca

    nxt = discretise(model, dt, substeps, ramped)
    jx = ca.jacobian(nxt, model.x)
    ju = ca.jacobian(nxt, model.u)
    xu = ca.vertcat(model.x, model.u)
    if ca.depends_on(ca.vertcat(ca.vec(jx), ca.vec(ju)), xu):
        raise ModelError("the MPC model is not affine in its states and inputs")
    c = ca.substitute(nxt, xu, ca.DM.zeros(xu.shape[0]))
    fn = ca.Function(
        "linear_step",
        [model.p],
        [ca.vertcat(*jx.nonzeros()), ca.vertcat(*ju.nonzeros()), c],
    )
    return LinearStep(
        nx=int(model.x.shape[0]),
        nu=int(model.u.shape[0]),
        fn=fn,
        a_sparsity=jx.sparsity(),
        b_sparsity=ju.sparsity(),
    )


def ramped_indices(spec: MpcProblemSpec, lay: Layout) -> list[tuple[int, int]]:
    return [(lay.x_index(r.key), lay.u_index(f"{r.key}.rate")) for r in spec.ramped()]


def rk4_substeps(spec: MpcProblemSpec) -> int:
    """RK4 substeps that keep the fastest lag stable and accurate enough: h <= 2 tau (RK4 is stable to
    2.78 tau; at 2 tau a step still damps the mode, by 0.33 against the exact 0.14, and the slow
    dynamics the plan is about are resolved well)."""
    taus = [u.tau_s for u in spec.loads]
    if spec.dh is not None:
        g_max = spec.dh.design_load_w / (CP_WATER * max(spec.dh.t_min_k - spec.dh.t_return_k, 5.0)) * CP_WATER
        taus.append(spec.dh.heat_capacity_j_k / spec.dh.cells / g_max)
    return max(1, math.ceil(spec.step_s / (2.0 * max(min(taus, default=spec.step_s), 1.0))))


# ------------------------------------------------------------------------------------- parameters per step


def _series(forecasts: Mapping[str, FloatArray], name: str, n: int, default: float) -> FloatArray:
    """``n`` values of a forecast series (held at its end; ``default`` when absent). Non-finite values
    stay non-finite: the controller refuses to plan on them."""
    s = forecasts.get(name)
    if s is None or len(s) == 0:
        return np.full(n, default)
    a = np.asarray(s, dtype=float)[:n]
    if a.size < n:
        a = np.concatenate([a, np.full(n - a.size, a[-1])])
    return a


def hx_recovery(ua: float, m_hot: FloatArray, t_hot: float, m_cold: FloatArray, t_cold: float) -> FloatArray:
    """Heat a counter-flow exchanger recovers [W]: eps C_min (T_h,in - T_c,in), eps from NTU and
    C_r = C_min / C_max (Incropera eq. 11.29a; C_r -> 1 limit NTU / (1 + NTU))."""
    c_h = np.maximum(m_hot * CP_WATER, 1e-9)
    c_c = np.maximum(m_cold * CP_WATER, 1e-9)
    c_min = np.minimum(c_h, c_c)
    cr = c_min / np.maximum(c_h, c_c)
    ntu = ua / c_min
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        e = np.exp(-ntu * (1.0 - cr))
        eps = np.where(np.abs(1.0 - cr) < 1e-6, ntu / (1.0 + ntu), (1.0 - e) / (1.0 - cr * e))
    return np.asarray(eps * c_min * max(t_hot - t_cold, 0.0))


def parameters(
    spec: MpcProblemSpec,
    lay: Layout,
    forecasts: Mapping[str, FloatArray],
    n: int,
    q_bias: float = 0.0,
    steam_bias: float = 0.0,
) -> FloatArray:
    """The per-step parameter matrix (n x n_params) from forecasts [SI] by series name (see
    ``symtwin.runtime.wiring.ProfileForecasts``): ``<unit>.demand``, ``<unit>.available``,
    ``<hp>.source_temperature``, ``price.<name>`` [EUR/J], ``price.co2`` [EUR/kg]; q_bias [W] the
    offset-free correction of the DH heat balance; steam_bias [kg/s] the steam the consumers draw beyond
    their forecast demand (or the producers miss), from the header pressure error."""
    cols: dict[str, FloatArray] = {}
    m_town = np.zeros(n)
    if spec.dh is not None:
        d = spec.dh
        frac = np.maximum(_series(forecasts, f"{d.demand_unit}.demand", n, 0.5), 0.0)
        q = frac * d.design_load_w
        t_r = _series(forecasts, f"{d.demand_unit}.return_temperature", n, d.t_return_k)
        m_max = d.design_load_w / (CP_WATER * (d.t_min_k - t_r))
        m_town = np.clip(
            q / (CP_WATER * np.maximum(d.t_nom_k - t_r, 5.0)), d.min_flow_fraction * m_max, m_max
        )
        cols["q_demand"] = q / MW
        cols["g_town"] = m_town * CP_WATER / MW
        cols["q_bias"] = np.full(n, q_bias / MW)
    else:
        cols["q_demand"] = np.zeros(n)
        cols["g_town"] = np.zeros(n)
        cols["q_bias"] = np.zeros(n)
    steam = np.zeros(n)
    for s in spec.steam:
        steam += np.maximum(_series(forecasts, f"{s.name}.demand", n, 0.5), 0.0) * s.design_flow_kg_s
    cols["steam_demand"] = np.maximum(steam + steam_bias, 0.0) if spec.steam else steam
    avail: dict[str, FloatArray] = {}
    for su in spec.surplus:
        a = np.clip(_series(forecasts, f"{su.name}.available", n, 1.0), 0.0, 1.0) * su.capacity_w
        avail[su.name] = a
        heat = a
        if su.hx_ua_w_k is not None and spec.dh is not None:
            t_cold = spec.dh.t_return_k
            m_hot = a / (CP_WATER * max(su.t_hot_k - (t_cold - 5.0), 1.0))
            heat = np.minimum(hx_recovery(su.hx_ua_w_k, m_hot, su.t_hot_k, m_town, t_cold), a)
        cols[f"{su.name}.heat"] = heat / MW
    for lu in spec.loads:
        if lu.kind == LoadKind.HEAT_PUMP:
            t_src = _series(forecasts, f"{lu.name}.source_temperature", n, lu.t_source_k)
            cop = (
                lu.carnot_efficiency
                * lu.t_con_k
                / np.maximum(lu.t_con_k - (t_src - lu.source_cooling_k), 5.0)
            )
            cols[f"{lu.name}.inv_cop"] = 1.0 / cop
            src = sum((avail[s] for s in lu.sources if s in avail), np.zeros(n)) if lu.sources else None
            cols[f"{lu.name}.source"] = (src if src is not None else np.full(n, 1e12)) / MW
    for name in lay.params:
        if name.startswith("price."):
            v = _series(forecasts, name, n, 0.0)
            cols[name] = v if name == spec.co2_price else v * 3.6e9  # EUR/J -> EUR/MWh
    if spec.storage:
        cols["storage_value"] = np.full(n, storage_value(spec, cols))
    for u in spec.loads:
        if u.serves is not None:
            flow = next(st.design_flow_kg_s for st in spec.steam if st.name == u.serves)
            cols[f"{u.serves}.steam_demand"] = (
                np.maximum(_series(forecasts, f"{u.serves}.demand", n, 0.5), 0.0) * flow
            )
    for c in spec.contracts:
        if c.kind in (DeliveryKind.STEAM_NET, DeliveryKind.STEAM_DEMAND):
            flow = next(s.design_flow_kg_s for s in spec.steam if s.name == c.unit)
            cols[f"{c.unit}.steam_demand"] = (
                np.maximum(_series(forecasts, f"{c.unit}.demand", n, 0.5), 0.0) * flow
            )
        elif c.kind == DeliveryKind.SURPLUS:
            cols[f"{c.unit}.available"] = avail[c.unit] / MW
    return np.column_stack([cols[name] for name in lay.params])


def storage_value(spec: MpcProblemSpec, cols: Mapping[str, FloatArray]) -> float:
    """Value of heat left in storage at the horizon end [EUR/MWh]: 90 % (tank losses, return
    temperature) of the horizon mean of the cheapest dispatchable DH heat (heat pump, CHP heat at its
    marginal fuel less power revenue, hot-water boilers). Without it the optimiser empties the tank at
    the end of every horizon."""
    el = cols[spec.electricity_price]
    co2 = cols[spec.co2_price]
    best: FloatArray | None = None
    for lu in spec.loads:
        fuel = cols[lu.fuel_price] if lu.fuel_price else np.zeros_like(el)
        fuel_co2 = fuel + lu.co2_per_fuel * 3.6e9 * co2  # EUR per MWh of fuel
        if lu.kind == LoadKind.HEAT_PUMP:
            c = el * cols[f"{lu.name}.inv_cop"]
        elif lu.kind == LoadKind.CHP:
            per_useful = lu.capacity_w / max(lu.useful_w_per_load, 1.0)
            c = per_useful * fuel_co2 - lu.power_w_per_load / max(lu.useful_w_per_load, 1.0) * el
        elif lu.kind == LoadKind.HOT_WATER:
            c = fuel_co2 / lu.efficiency
        else:
            continue
        best = c if best is None else np.minimum(best, c)
    return 0.0 if best is None else float(0.9 * max(float(np.mean(best)), 0.0))


def initial_state(
    spec: MpcProblemSpec,
    lay: Layout,
    state: Mapping[str, float],
    current: Mapping[str, float],
) -> FloatArray:
    """Scaled x0 from twin estimates (``<unit>.<quantity>`` [SI]) and current setpoints (by key).

    Loads: ``<unit>.load``, else the current setpoint. Setpoints: current value, else the load / 0.
    Storage: ``<tank>.state_of_charge`` (twin: mean (T - T_min)/(T_max - T_min)), else top/bottom
    temperatures. Supply temperature: ``<pipe>.outlet_temperature``, ``<demand>.supply_temperature``,
    else nominal. Values are clipped into the state bounds.
    """

    def get(*names: str) -> float | None:
        for nm in names:
            v = state.get(nm)
            if v is not None and math.isfinite(float(v)):
                return float(v)
        return None

    x = np.zeros(len(lay.states))
    for r in spec.ramped():
        v = current.get(r.key)
        if v is None or not math.isfinite(v):
            unit = r.key.split(".")[0]
            v = get(r.key) if get(r.key) is not None else (get(f"{unit}.load") if "load" in r.key else 0.0)
        x[lay.x_index(r.key)] = float(v if v is not None else 0.0) / r.scale
    for lu in spec.loads:
        v = get(f"{lu.name}.load")
        x[lay.x_index(f"{lu.name}.load")] = v if v is not None else x[lay.x_index(lu.setpoint.key)]
    for st in spec.storage:
        soc = get(f"{st.name}.state_of_charge")
        span_max = st.e_max_j / (st.mass_kg * CP_WATER)
        if soc is not None:
            # twin's soc is relative to (T_max - T_min); convert to energy above T_min
            e = soc * st.mass_kg * CP_WATER * (st.t_max_k - st.t_min_k)
        else:
            top, bot = get(f"{st.name}.top_temperature"), get(f"{st.name}.bottom_temperature")
            mean = 0.5 * (top + bot) if top is not None and bot is not None else st.t_min_k + 0.5 * span_max
            e = st.mass_kg * CP_WATER * (mean - st.t_min_k)
        x[lay.x_index(f"{st.name}.energy")] = e / 3.6e9
    if spec.dh is not None:
        d = spec.dh
        names = [f"{d.pipe}.outlet_temperature"] if d.pipe else []
        v = get(*names, f"{d.demand_unit}.supply_temperature")
        t_out = (v if v is not None else d.t_nom_k) - 273.15
        x[lay.x_index("dh.supply_temperature")] = t_out
        # pipe cells from the twin's segment temperatures when given, else the outlet temperature
        segs = sorted(
            (int(k[k.index("[") + 1 : -1]), float(val))
            for k, val in state.items()
            if d.pipe is not None and k.startswith(f"{d.pipe}.water_temperature[")
        )
        for i in range(d.cells - 1):
            if segs:
                n_seg = len(segs)
                part = [t for j, t in segs if i * n_seg // d.cells <= j < (i + 1) * n_seg // d.cells]
                x[lay.x_index(f"dh.pipe_temperature[{i}]")] = (
                    np.mean(part) if part else t_out + 273.15
                ) - 273.15
            else:
                x[lay.x_index(f"dh.pipe_temperature[{i}]")] = t_out
    lo = np.array(lay.x_lb)
    hi = np.array(lay.x_ub)
    return np.clip(x, lo, hi)


def plan_keys(spec: MpcProblemSpec) -> dict[str, str]:
    """Park input key -> setpoint tag for every written setpoint (CHP split included)."""
    out = {r.key: r.tag for r in spec.ramped() if r.tag is not None}
    for lu in spec.loads:
        if lu.kind == LoadKind.CHP and lu.split_tag is not None:
            out[f"{lu.name}.heat_split_setpoint"] = lu.split_tag
    return out


def as_sequence(values: Sequence[float] | FloatArray) -> FloatArray:
    return np.asarray(values, dtype=float)
