"""Price rules of an exchange contract: what the receiver pays the supplier per MWh delivered.

Money and energy are in the units contracts are written in: € and MWh (1 MWh = 3.6e9 J); the
series are per settlement step (one value per step of the delivered-energy series).

- :class:`FixedPrice`: ``p = eur_per_mwh``.
- :class:`IndexedPrice`: ``p = a + b·gas + c·co2`` with gas [€/MWh fuel], co2 [€/t]; so ``b`` is in
  MWh fuel per MWh delivered (≈ 1/boiler efficiency) and ``c`` in t CO2 per MWh delivered.
- :class:`CostPlus`: ``p = (1 + margin)·cost`` where ``cost`` is the supplier's cost of supply [€/MWh].
- :class:`ShareOfSavings`: the joint saving per MWh is ``s = alt − cost`` (the receiver's avoided
  stand-alone cost minus the supplier's cost of supply); ``p = cost + supplier_share·s`` when
  ``s ≥ 0``, so the supplier keeps its cost plus its share of the saving and the receiver keeps the
  rest. When ``s < 0`` there is nothing to share and ``p = alt`` (the receiver never pays more than
  its own alternative). With surplus heat at zero cost this is ``supplier_share·alt``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CostPlus",
    "FixedPrice",
    "IndexedPrice",
    "PriceInputs",
    "PriceRule",
    "PricingError",
    "ShareOfSavings",
    "price_rule_from_config",
    "unit_prices",
]


class PricingError(ValueError):
    """A price rule is invalid or lacks the series it needs."""


def _finite(name: str, x: float) -> float:
    if not math.isfinite(x):
        raise PricingError(f"{name} must be a finite number, got {x!r}")
    return float(x)


@dataclass(frozen=True, slots=True)
class FixedPrice:
    eur_per_mwh: float

    def __post_init__(self) -> None:
        _finite("eur_per_mwh", self.eur_per_mwh)


@dataclass(frozen=True, slots=True)
class IndexedPrice:
    a_eur_per_mwh: float
    b_gas: float  # [MWh fuel / MWh delivered]
    c_co2: float  # [t CO2 / MWh delivered]

    def __post_init__(self) -> None:
        for name in ("a_eur_per_mwh", "b_gas", "c_co2"):
            _finite(name, getattr(self, name))


@dataclass(frozen=True, slots=True)
class CostPlus:
    margin: float  # 0.1 = cost + 10 %

    def __post_init__(self) -> None:
        if _finite("margin", self.margin) <= -1:
            raise PricingError(f"margin must be > -1, got {self.margin}")


@dataclass(frozen=True, slots=True)
class ShareOfSavings:
    supplier_share: float  # in [0, 1]

    def __post_init__(self) -> None:
        if not 0.0 <= _finite("supplier_share", self.supplier_share) <= 1.0:
            raise PricingError(f"supplier_share must be within [0, 1], got {self.supplier_share}")


PriceRule = FixedPrice | IndexedPrice | CostPlus | ShareOfSavings


@dataclass(frozen=True)
class PriceInputs:
    """Per-step series a rule may need (each as long as the energy series; None if not available)."""

    gas_eur_per_mwh: np.ndarray | None = None
    co2_eur_per_t: np.ndarray | None = None
    supplier_cost_eur_per_mwh: np.ndarray | None = None
    receiver_alt_eur_per_mwh: np.ndarray | None = None


def _need(series: np.ndarray | None, name: str, rule: str, n: int) -> np.ndarray:
    if series is None:
        raise PricingError(f"the {rule} price rule needs the {name} series")
    arr = np.asarray(series, dtype=float)
    if arr.shape != (n,):
        raise PricingError(f"{name} has {arr.shape} values, expected {n}")
    if not np.all(np.isfinite(arr)):
        raise PricingError(f"{name} has missing (non-finite) values; fill the gaps before settling")
    return arr


def unit_prices(rule: PriceRule, inputs: PriceInputs, n: int) -> np.ndarray:
    """The contract price of each of ``n`` steps [€/MWh]."""
    if isinstance(rule, FixedPrice):
        return np.full(n, rule.eur_per_mwh)
    if isinstance(rule, IndexedPrice):
        gas = _need(inputs.gas_eur_per_mwh, "gas price", "indexed", n)
        co2 = _need(inputs.co2_eur_per_t, "CO2 price", "indexed", n)
        return rule.a_eur_per_mwh + rule.b_gas * gas + rule.c_co2 * co2
    if isinstance(rule, CostPlus):
        cost = _need(inputs.supplier_cost_eur_per_mwh, "supplier cost", "cost-plus", n)
        return (1.0 + rule.margin) * cost
    if isinstance(rule, ShareOfSavings):
        alt = _need(inputs.receiver_alt_eur_per_mwh, "receiver's avoided cost", "share-of-savings", n)
        cost = (
            np.zeros(n)
            if inputs.supplier_cost_eur_per_mwh is None
            else _need(inputs.supplier_cost_eur_per_mwh, "supplier cost", "share-of-savings", n)
        )
        saving = alt - cost
        return np.where(saving >= 0.0, cost + rule.supplier_share * saving, alt)
    raise PricingError(f"unknown price rule {rule!r}")


def price_rule_from_config(cfg: Mapping[str, object]) -> PriceRule:
    """Config form → rule: ``{rule: fixed, eur_per_mwh: 30}``, ``{rule: indexed, a_eur_per_mwh, b_gas,
    c_co2}``, ``{rule: cost_plus, margin: 0.1}``, ``{rule: share_of_savings, supplier_share: 0.5}``."""
    kinds: dict[str, tuple[type, tuple[str, ...]]] = {
        "fixed": (FixedPrice, ("eur_per_mwh",)),
        "indexed": (IndexedPrice, ("a_eur_per_mwh", "b_gas", "c_co2")),
        "cost_plus": (CostPlus, ("margin",)),
        "share_of_savings": (ShareOfSavings, ("supplier_share",)),
    }
    rule = cfg.get("rule")
    if rule not in kinds:
        raise PricingError(f"price rule must be one of {sorted(kinds)}, got {rule!r}")
    cls, fields = kinds[str(rule)]
    extra = set(cfg) - {"rule", *fields}
    missing = [f for f in fields if f not in cfg]
    if missing or extra:
        raise PricingError(
            f"price rule {rule!r} takes {list(fields)}; missing {missing}, unknown {sorted(extra)}"
        )
    values = {}
    for f in fields:
        v = cfg[f]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise PricingError(f"{f} must be a number, got {v!r}")
        values[f] = float(v)
    result: PriceRule = cls(**values)
    return result
