"""Exact Shapley value by enumeration of coalitions (a fairness reference for the savings split).

    φ_i = Σ_{S ⊆ N∖{i}} |S|! (n − |S| − 1)! / n! · (v(S ∪ {i}) − v(S))

(Shapley 1953, "A value for n-person games", Contributions to the Theory of Games II, eq. for φ).
``v`` is evaluated once per coalition (2ⁿ calls), so n ≤ 20 is allowed and n ≤ 12 is instant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

__all__ = ["CoalitionValue", "ShapleyError", "shapley_values"]

CoalitionValue = Callable[[frozenset[str]], float] | Mapping[frozenset[str], float]

MAX_PLAYERS = 20


class ShapleyError(ValueError):
    """The game cannot be evaluated (too many players, duplicate names, a coalition without a value)."""


def shapley_values(players: Sequence[str], value: CoalitionValue) -> dict[str, float]:
    """Shapley value of each player; ``value`` maps a coalition (frozenset of players) to its worth.

    A mapping may omit the empty coalition (worth 0); any other missing coalition is an error.
    """
    n = len(players)
    if len(set(players)) != n:
        raise ShapleyError(f"duplicate players in {list(players)}")
    if n > MAX_PLAYERS:
        raise ShapleyError(f"{n} players: exact enumeration is limited to {MAX_PLAYERS}")
    if n == 0:
        return {}

    def v_of(coalition: frozenset[str]) -> float:
        if callable(value):
            return float(value(coalition))
        if coalition in value:
            return float(value[coalition])
        if not coalition:
            return 0.0
        raise ShapleyError(f"no value given for coalition {sorted(coalition)}")

    # worth of every coalition, indexed by bitmask over `players`
    worth = [0.0] * (1 << n)
    for mask in range(1 << n):
        worth[mask] = v_of(frozenset(players[i] for i in range(n) if mask >> i & 1))
    weight = [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    size = [bin(m).count("1") for m in range(1 << n)]
    phi = [0.0] * n
    for i in range(n):
        bit = 1 << i
        total = 0.0
        for mask in range(1 << n):
            if not mask & bit:
                total += weight[size[mask]] * (worth[mask | bit] - worth[mask])
        phi[i] = total
    return dict(zip(players, phi, strict=True))
