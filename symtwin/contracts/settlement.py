"""Settlement of exchange contracts over a period, and of the park against its stand-alone counterfactual.

Per exchange and period (:func:`settle_exchange`):

- delivered energy ``E = Σ e_k`` [MWh] from the per-step delivered-energy series;
- energy payment ``Σ e_k·p_k`` with ``p_k`` from the price rule (:mod:`symtwin.contracts.pricing`);
- above ``max_delivery_mwh`` the excess is delivered at the supplier's risk and not paid: the
  payment is scaled by ``max/E`` (so each step keeps its own price weight);
- a settlement window that covers only part of a contract period (a day of a monthly contract) gets
  the minimum and maximum pro-rated by the share of the period it covers (:func:`settle_park`);
- take-or-pay: the receiver owes ``penalty·max(0, f·min_delivery − E)`` with ``f`` the
  take-or-pay fraction and ``penalty`` the penalty rate [€/MWh], or, without one, the period's
  energy-weighted average contract price (the plain mean of the step prices if nothing was
  delivered). Deliveries below ``min_delivery_mwh`` are noted even inside the take-or-pay tolerance.

Per park and period (:func:`settle_park`), with each party's stand-alone cost (meeting its own
demand with its own boilers, computed elsewhere with the twin and the baseline controller) and its
operating cost in the symbiosis (its own fuel, electricity and CO2 cost, contract payments
excluded): a party's saving is ``standalone − (operating + paid − received)``. Payments cancel in
the sum, so the savings allocated by the contracts always add up to the park's total saving
``Σ standalone − Σ operating``. The Shapley value of the same total is reported beside it as a
fairness reference.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from symtwin.contracts.pricing import PriceInputs, PriceRule, ShareOfSavings, unit_prices
from symtwin.contracts.shapley import CoalitionValue, shapley_values

__all__ = [
    "ContractTerms",
    "ExchangeHistory",
    "ExchangeSettlement",
    "ParkSettlement",
    "PartyLedger",
    "PartyResult",
    "SettlementError",
    "energy_per_step",
    "exchange_game",
    "period_bounds",
    "settle_exchange",
    "settle_park",
    "split_periods",
]

PERIODS = ("day", "week", "month", "quarter", "year")


class SettlementError(ValueError):
    """Settlement inputs are inconsistent (unknown exchange, series of different lengths, ...)."""


@dataclass(frozen=True)
class ContractTerms:
    id: str
    exchange: str
    supplier: str
    receiver: str
    price: PriceRule
    min_delivery_mwh: float | None = None  # per settlement period
    max_delivery_mwh: float | None = None  # per settlement period
    take_or_pay_fraction: float = 1.0  # share of the minimum the receiver pays for even if not taken
    penalty_eur_per_mwh: float | None = None  # None: the period's average contract price
    settlement_period: str = "month"

    def __post_init__(self) -> None:
        if self.settlement_period not in PERIODS:
            raise SettlementError(f"contract {self.id}: settlement_period must be one of {PERIODS}")
        if not 0.0 <= self.take_or_pay_fraction <= 1.0:
            raise SettlementError(f"contract {self.id}: take_or_pay_fraction must be within [0, 1]")
        lo, hi = self.min_delivery_mwh, self.max_delivery_mwh
        if (lo is not None and lo < 0) or (hi is not None and hi < 0):
            raise SettlementError(f"contract {self.id}: delivery bounds must be >= 0")
        if lo is not None and hi is not None and lo > hi:
            raise SettlementError(f"contract {self.id}: min_delivery_mwh {lo} > max_delivery_mwh {hi}")
        if self.penalty_eur_per_mwh is not None and self.penalty_eur_per_mwh < 0:
            raise SettlementError(f"contract {self.id}: penalty_eur_per_mwh must be >= 0")
        if self.supplier == self.receiver:
            raise SettlementError(f"contract {self.id}: supplier and receiver are the same party")


@dataclass(frozen=True)
class ExchangeHistory:
    """Per-step history of one exchange: step start times [s since epoch], energy per step [MWh],
    and the price inputs its contract needs (same length; None if not recorded)."""

    exchange: str
    t_s: np.ndarray
    energy_mwh: np.ndarray
    gas_eur_per_mwh: np.ndarray | None = None
    co2_eur_per_t: np.ndarray | None = None
    supplier_cost_eur_per_mwh: np.ndarray | None = None
    receiver_alt_eur_per_mwh: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = np.shape(self.t_s)
        for name in (
            "energy_mwh",
            "gas_eur_per_mwh",
            "co2_eur_per_t",
            "supplier_cost_eur_per_mwh",
            "receiver_alt_eur_per_mwh",
        ):
            arr = getattr(self, name)
            if arr is not None and np.shape(arr) != n:
                raise SettlementError(
                    f"exchange {self.exchange}: {name} has shape {np.shape(arr)}, t_s has {n}"
                )

    def window(self, start: float, end: float) -> ExchangeHistory:
        """The steps starting within [start, end)."""
        t = np.asarray(self.t_s, dtype=float)
        sel = (t >= start) & (t < end)

        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.asarray(a, dtype=float)[sel]

        e = np.asarray(self.energy_mwh, dtype=float)[sel]
        return ExchangeHistory(
            self.exchange,
            t[sel],
            e,
            cut(self.gas_eur_per_mwh),
            cut(self.co2_eur_per_t),
            cut(self.supplier_cost_eur_per_mwh),
            cut(self.receiver_alt_eur_per_mwh),
        )


@dataclass(frozen=True)
class ExchangeSettlement:
    contract: str
    exchange: str
    supplier: str
    receiver: str
    start: float
    end: float
    delivered_mwh: float
    paid_mwh: float  # delivered, less the unpaid excess above the maximum
    excess_mwh: float
    energy_payment_eur: float
    avg_price_eur_per_mwh: float
    shortfall_mwh: float  # below the take-or-pay quantity
    penalty_eur: float
    joint_saving_eur: float | None  # Σ e·(alt − cost), when both series are known
    notes: tuple[str, ...]

    @property
    def total_eur(self) -> float:
        """What the receiver pays the supplier for the period."""
        return self.energy_payment_eur + self.penalty_eur


def settle_exchange(
    terms: ContractTerms, history: ExchangeHistory, start: float, end: float
) -> ExchangeSettlement:
    """Settle one contract over one period [start, end) [s since epoch] (see the module docstring)."""
    h = history.window(start, end)
    e = np.asarray(h.energy_mwh, dtype=float)
    if not np.all(np.isfinite(e)):
        raise SettlementError(
            f"exchange {h.exchange}: delivered energy has gaps (non-finite values) in the period"
        )
    if np.any(e < 0):
        raise SettlementError(f"exchange {h.exchange}: delivered energy is negative in some steps")
    n = e.size
    inputs = PriceInputs(
        h.gas_eur_per_mwh, h.co2_eur_per_t, h.supplier_cost_eur_per_mwh, h.receiver_alt_eur_per_mwh
    )
    prices = unit_prices(terms.price, inputs, n) if n else np.empty(0)
    delivered = float(e.sum())
    payment = float(e @ prices) if n else 0.0
    notes: list[str] = []
    if n == 0:
        notes.append("no history in the period")

    excess = 0.0
    paid = delivered
    if terms.max_delivery_mwh is not None and delivered > terms.max_delivery_mwh:
        excess = delivered - terms.max_delivery_mwh
        paid = terms.max_delivery_mwh
        payment *= paid / delivered
        notes.append(
            f"delivered {delivered:.3f} MWh, above the maximum {terms.max_delivery_mwh:.3f} MWh: excess unpaid"
        )

    if delivered > 0:
        avg_price = float(e @ prices) / delivered
    elif n:
        avg_price = float(prices.mean())
    else:
        avg_price = math.nan

    shortfall = 0.0
    penalty = 0.0
    if terms.min_delivery_mwh is not None:
        if delivered < terms.min_delivery_mwh:
            notes.append(f"delivered {delivered:.3f} MWh, below the minimum {terms.min_delivery_mwh:.3f} MWh")
        shortfall = max(0.0, terms.take_or_pay_fraction * terms.min_delivery_mwh - delivered)
        if shortfall > 0:
            rate = terms.penalty_eur_per_mwh if terms.penalty_eur_per_mwh is not None else avg_price
            if not math.isfinite(rate):
                raise SettlementError(
                    f"contract {terms.id}: no price history to value the take-or-pay shortfall"
                )
            penalty = shortfall * rate
            notes.append(f"take-or-pay: {shortfall:.3f} MWh short at {rate:.2f} EUR/MWh")

    joint: float | None = None
    if h.receiver_alt_eur_per_mwh is not None and (
        h.supplier_cost_eur_per_mwh is not None or isinstance(terms.price, ShareOfSavings)
    ):
        cost = (
            np.zeros(n)
            if h.supplier_cost_eur_per_mwh is None
            else np.asarray(h.supplier_cost_eur_per_mwh, dtype=float)
        )
        joint = float(e @ (np.asarray(h.receiver_alt_eur_per_mwh, dtype=float) - cost)) if n else 0.0

    return ExchangeSettlement(
        contract=terms.id,
        exchange=terms.exchange,
        supplier=terms.supplier,
        receiver=terms.receiver,
        start=start,
        end=end,
        delivered_mwh=delivered,
        paid_mwh=paid,
        excess_mwh=excess,
        energy_payment_eur=payment,
        avg_price_eur_per_mwh=avg_price,
        shortfall_mwh=shortfall,
        penalty_eur=penalty,
        joint_saving_eur=joint,
        notes=tuple(notes),
    )


def energy_per_step(t_s: np.ndarray, power_w: np.ndarray, end: float, max_gap_s: float) -> np.ndarray:
    """Energy of each power sample held until the next one [MWh] (left rectangle rule).

    t_s: sample times [s], increasing; power_w: delivered power [W]; end: end of the period [s];
    max_gap_s: a sample is held at most this long [s], so a metering outage counts as no
    delivery instead of extrapolating the last value across it. Non-finite power counts as 0.
    """
    t = np.asarray(t_s, dtype=float)
    p = np.asarray(power_w, dtype=float)
    if t.shape != p.shape:
        raise SettlementError(f"times and power differ in shape: {t.shape} vs {p.shape}")
    if t.size == 0:
        return np.empty(0)
    if np.any(np.diff(t) <= 0):
        raise SettlementError("sample times must increase strictly")
    dt_s = np.diff(np.r_[t, max(end, t[-1])])
    dt_s = np.minimum(dt_s, max_gap_s)
    e_j = np.where(np.isfinite(p), p, 0.0) * dt_s
    return e_j / 3.6e9  # J -> MWh


# --------------------------------------------------------------------------- periods


def period_bounds(label: str) -> tuple[float, float]:
    """``"2026-11"`` (a month), ``"2026-11-05"`` (a day) or ``"2026-W45"`` (an ISO week) → [start, end) [s, UTC]."""
    try:
        if "-W" in label:
            iso_year, iso_week = label.split("-W")
            d0 = dt.date.fromisocalendar(int(iso_year), int(iso_week), 1)
            d1 = d0 + dt.timedelta(days=7)
        elif label.count("-") == 1:
            year, month = (int(x) for x in label.split("-", 1))
            d0 = dt.date(year, month, 1)
            d1 = d0 + dt.timedelta(days=calendar.monthrange(year, month)[1])
        else:
            d0 = dt.date.fromisoformat(label)
            d1 = d0 + dt.timedelta(days=1)
    except ValueError as exc:
        raise SettlementError(f"period {label!r}: write YYYY-MM, YYYY-MM-DD or YYYY-Www ({exc})") from None

    def ts(d: dt.date) -> float:
        return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()

    return ts(d0), ts(d1)


def _next_start(d: dt.date, period: str) -> dt.date:
    if period == "day":
        return d + dt.timedelta(days=1)
    if period == "week":
        return d + dt.timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    m = d.month - 1 + months
    return dt.date(d.year + m // 12, m % 12 + 1, 1)


def _period_start(d: dt.date, period: str) -> dt.date:
    if period == "day":
        return d
    if period == "week":
        return d - dt.timedelta(days=d.weekday())
    if period == "month":
        return d.replace(day=1)
    if period == "quarter":
        return dt.date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)
    return dt.date(d.year, 1, 1)


def split_periods(start: float, end: float, period: str) -> list[tuple[float, float]]:
    """Calendar periods (UTC; ISO weeks from Monday) of kind ``period`` covering [start, end), clipped to it."""
    if period not in PERIODS:
        raise SettlementError(f"period must be one of {PERIODS}, got {period!r}")

    def ts(d: dt.date) -> float:
        return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()

    out: list[tuple[float, float]] = []
    cursor = _period_start(dt.datetime.fromtimestamp(start, dt.UTC).date(), period)
    while ts(cursor) < end:
        nxt = _next_start(cursor, period)
        out.append((max(ts(cursor), start), min(ts(nxt), end)))
        cursor = nxt
    return out


# --------------------------------------------------------------------------- park


@dataclass(frozen=True)
class PartyLedger:
    """One party's figures for the period. Costs [€] exclude contract payments; CO2 [t]; fuel [MWh]."""

    party: str
    standalone_cost_eur: float
    operating_cost_eur: float
    standalone_co2_t: float = 0.0
    operating_co2_t: float = 0.0
    standalone_fuel_mwh: float = 0.0
    operating_fuel_mwh: float = 0.0


@dataclass(frozen=True)
class PartyResult:
    party: str
    standalone_cost_eur: float
    operating_cost_eur: float
    paid_eur: float
    received_eur: float
    net_cost_eur: float
    savings_eur: float  # allocated by the contracts
    shapley_eur: float  # fairness reference
    co2_avoided_t: float
    fuel_avoided_mwh: float


@dataclass(frozen=True)
class ParkSettlement:
    label: str
    start: float
    end: float
    exchanges: tuple[ExchangeSettlement, ...]
    parties: tuple[PartyResult, ...]
    total_savings_eur: float
    co2_avoided_t: float
    fuel_avoided_mwh: float
    delivered_mwh: float
    shapley_basis: str  # how the coalition values were obtained

    def party(self, party: str) -> PartyResult:
        for p in self.parties:
            if p.party == party:
                return p
        raise KeyError(f"unknown party {party!r}")


def _pro_rated(terms: ContractTerms, a: float, b: float) -> ContractTerms:
    """The terms for [a, b) when it is only part of a contract period (the settlement window starts or ends
    inside it): minimum and maximum delivery scaled by the share of the period covered, so that settling a
    month day by day, or a week split by two monthly runs, adds up to the contract's own quantities."""
    d = dt.datetime.fromtimestamp(a, dt.UTC).date()
    p0 = _period_start(d, terms.settlement_period)
    p1 = _next_start(p0, terms.settlement_period)

    def ts(x: dt.date) -> float:
        return dt.datetime(x.year, x.month, x.day, tzinfo=dt.UTC).timestamp()

    share = (b - a) / (ts(p1) - ts(p0))
    if share >= 1.0 - 1e-12:
        return terms
    lo, hi = terms.min_delivery_mwh, terms.max_delivery_mwh
    return dataclasses.replace(
        terms,
        min_delivery_mwh=None if lo is None else lo * share,
        max_delivery_mwh=None if hi is None else hi * share,
    )


def exchange_game(
    parties: Sequence[str], settlements: Sequence[ExchangeSettlement], total_savings_eur: float
) -> Callable[[frozenset[str]], float]:
    """Coalition values when no twin runs per coalition are available: an exchange creates value only
    if both its parties are in the coalition, in proportion to its joint saving (or, if unknown, its
    delivered energy), scaled so that the grand coalition is worth the park's total saving."""
    weights = []
    for s in settlements:
        w = s.joint_saving_eur if s.joint_saving_eur is not None else s.delivered_mwh
        weights.append((s.supplier, s.receiver, max(w, 0.0)))
    total_w = sum(w for _, _, w in weights)
    grand = frozenset(parties)

    def v(coalition: frozenset[str]) -> float:
        if coalition == grand:
            return total_savings_eur
        if total_w <= 0:
            return 0.0
        inside = sum(w for a, b, w in weights if a in coalition and b in coalition)
        return total_savings_eur * inside / total_w

    return v


def settle_park(
    label: str,
    start: float,
    end: float,
    contracts: Sequence[ContractTerms],
    histories: Mapping[str, ExchangeHistory],
    ledgers: Sequence[PartyLedger],
    coalition_value: CoalitionValue | None = None,
) -> ParkSettlement:
    """Settle every contract in [start, end) and allocate the park's saving (see the module docstring).

    histories: exchange id → history. coalition_value: worth (saving [€]) of each coalition of
    parties for the Shapley reference; without it :func:`exchange_game` is used.
    """
    parties = [lg.party for lg in ledgers]
    if len(set(parties)) != len(parties):
        raise SettlementError("a party has two ledgers")
    known = set(parties)
    settlements: list[ExchangeSettlement] = []
    for c in contracts:
        if c.exchange not in histories:
            raise SettlementError(f"contract {c.id}: no history for exchange {c.exchange!r}")
        for who in (c.supplier, c.receiver):
            if who not in known:
                raise SettlementError(f"contract {c.id}: party {who!r} has no ledger")
        for a, b in split_periods(start, end, c.settlement_period):
            settlements.append(settle_exchange(_pro_rated(c, a, b), histories[c.exchange], a, b))

    paid = dict.fromkeys(parties, 0.0)
    received = dict.fromkeys(parties, 0.0)
    for s in settlements:
        paid[s.receiver] += s.total_eur
        received[s.supplier] += s.total_eur
    total = sum(lg.standalone_cost_eur - lg.operating_cost_eur for lg in ledgers)

    if coalition_value is None:
        value: CoalitionValue = exchange_game(parties, settlements, total)
        basis = "exchange game: each exchange's joint saving (or energy) needs both its parties"
    else:
        value = coalition_value
        basis = "coalition values supplied (twin + baseline per coalition)"
    phi = shapley_values(parties, value)

    results = []
    for lg in ledgers:
        net = lg.operating_cost_eur + paid[lg.party] - received[lg.party]
        results.append(
            PartyResult(
                party=lg.party,
                standalone_cost_eur=lg.standalone_cost_eur,
                operating_cost_eur=lg.operating_cost_eur,
                paid_eur=paid[lg.party],
                received_eur=received[lg.party],
                net_cost_eur=net,
                savings_eur=lg.standalone_cost_eur - net,
                shapley_eur=phi[lg.party],
                co2_avoided_t=lg.standalone_co2_t - lg.operating_co2_t,
                fuel_avoided_mwh=lg.standalone_fuel_mwh - lg.operating_fuel_mwh,
            )
        )
    return ParkSettlement(
        label=label,
        start=start,
        end=end,
        exchanges=tuple(settlements),
        parties=tuple(results),
        total_savings_eur=total,
        co2_avoided_t=sum(r.co2_avoided_t for r in results),
        fuel_avoided_mwh=sum(r.fuel_avoided_mwh for r in results),
        delivered_mwh=sum(s.delivered_mwh for s in settlements),
        shapley_basis=basis,
    )
