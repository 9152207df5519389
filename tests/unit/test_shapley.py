from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symtwin.contracts.shapley import ShapleyError, shapley_values


def brute_force(players, v):
    """Average marginal contribution over all n! orders of arrival (the definition)."""
    phi = dict.fromkeys(players, 0.0)
    orders = list(itertools.permutations(players))
    for order in orders:
        before = frozenset()
        for p in order:
            phi[p] += v(before | {p}) - v(before)
            before = before | {p}
    return {p: x / len(orders) for p, x in phi.items()}


def test_three_party_park_by_hand_and_brute_force():
    # A CHP (c), a pharma plant (p) and a DH utility (u): steam c->p is worth 60, heat c->u 30,
    # and the three together find 30 more (storage shared); p and u alone create nothing.
    table = {
        frozenset(): 0.0,
        frozenset("c"): 0.0,
        frozenset("p"): 0.0,
        frozenset("u"): 0.0,
        frozenset("cp"): 60.0,
        frozenset("cu"): 30.0,
        frozenset("pu"): 0.0,
        frozenset("cpu"): 120.0,
    }
    phi = shapley_values(["c", "p", "u"], table)
    # by hand: c = (0 + 60 + 30 + 2·120)/6 ... computed from the formula with weights 1/3, 1/6, 1/6, 1/3
    assert phi["c"] == pytest.approx(0 / 3 + 60 / 6 + 30 / 6 + 120 / 3)
    assert phi["p"] == pytest.approx(0 / 3 + 60 / 6 + 0 / 6 + (120 - 30) / 3)
    assert phi == pytest.approx(brute_force(["c", "p", "u"], table.__getitem__))
    assert sum(phi.values()) == pytest.approx(120.0)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.data())
def test_matches_brute_force_on_random_games(n, data):
    players = [f"p{i}" for i in range(n)]
    coalitions = [frozenset(c) for k in range(n + 1) for c in itertools.combinations(players, k)]
    worth = {c: (0.0 if not c else data.draw(st.floats(-1e4, 1e4, allow_nan=False))) for c in coalitions}
    phi = shapley_values(players, worth)
    want = brute_force(players, worth.__getitem__)
    for p in players:
        assert phi[p] == pytest.approx(want[p], abs=1e-6)
    assert sum(phi.values()) == pytest.approx(worth[frozenset(players)], abs=1e-6)  # efficiency


def test_symmetry_null_player_and_callable_game():
    v = lambda s: 10.0 * len(s & {"a", "b"}) ** 2  # noqa: E731  "z" adds nothing
    phi = shapley_values(["a", "b", "z"], v)
    assert phi["a"] == pytest.approx(phi["b"]) and phi["z"] == pytest.approx(0.0)
    assert phi["a"] == pytest.approx(20.0)


def test_twelve_players_are_fast_and_efficient():
    players = [f"p{i}" for i in range(12)]
    weights = {p: i + 1.0 for i, p in enumerate(players)}
    phi = shapley_values(players, lambda s: math.sqrt(sum(weights[p] for p in s)))
    assert sum(phi.values()) == pytest.approx(math.sqrt(sum(weights.values())))


def test_errors():
    with pytest.raises(ShapleyError, match="no value"):
        shapley_values(["a", "b"], {frozenset("a"): 1.0, frozenset("b"): 1.0})
    with pytest.raises(ShapleyError, match="duplicate"):
        shapley_values(["a", "a"], lambda s: 0.0)
    assert shapley_values([], lambda s: 0.0) == {}
