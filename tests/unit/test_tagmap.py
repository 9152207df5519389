from __future__ import annotations

import math

import pytest

from adapters.base import Quality, Sample
from adapters.tagmap import Refusal, TagBinding, plausible_timestamp

TS = 1_700_000_000.0


def test_affine_conversion_to_si_and_back() -> None:
    degc = TagBinding("t_supply", factor=1.0, offset=273.15)
    assert degc.sample(80.0, TS) == Sample("t_supply", TS, 353.15, Quality.GOOD)
    assert degc.from_si(353.15) == pytest.approx(80.0)
    t_per_h = TagBinding("m_steam", factor=1000.0 / 3600.0)
    s = t_per_h.sample(194.4, TS)
    assert isinstance(s, Sample)
    assert s.value == pytest.approx(54.0)
    assert t_per_h.from_si(54.0) == pytest.approx(194.4)


def test_ints_and_bools_are_numbers_other_types_are_refused() -> None:
    b = TagBinding("x")
    assert isinstance(b.sample(3, TS), Sample)
    on = b.sample(True, TS)
    assert isinstance(on, Sample) and on.value == 1.0
    for bad in ("3.0", None, [1.0], {"v": 1.0}):
        assert b.sample(bad, TS) is Refusal.WRONG_TYPE


@pytest.mark.parametrize("raw", [math.nan, math.inf, -math.inf, 10**400])
def test_non_finite_is_refused(raw: object) -> None:
    assert TagBinding("x").sample(raw, TS) is Refusal.NON_FINITE


def test_conversion_overflow_is_non_finite() -> None:
    assert TagBinding("x", factor=1e300).sample(1e300, TS) is Refusal.NON_FINITE


def test_bounds_apply_in_si() -> None:
    b = TagBinding("p", factor=1e5, lower=0.0, upper=20e5)  # bar in, Pa bounds
    assert isinstance(b.sample(20.0, TS), Sample)
    assert b.sample(20.5, TS) is Refusal.OUT_OF_RANGE
    assert b.sample(-0.1, TS) is Refusal.OUT_OF_RANGE


def test_converter_and_inverse() -> None:
    b = TagBinding("level", converter=lambda raw: raw**2, inverse=math.sqrt)
    s = b.sample(3.0, TS)
    assert isinstance(s, Sample) and s.value == 9.0
    assert b.from_si(9.0) == 3.0
    with pytest.raises(ValueError, match="inverse"):
        TagBinding("level", converter=lambda raw: raw**2).from_si(1.0)


def test_converter_error_is_refused_not_raised() -> None:
    assert TagBinding("x", converter=math.log).sample(-1.0, TS) is Refusal.NON_FINITE


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(tag=""),
        dict(tag="x", factor=0.0),
        dict(tag="x", offset=math.nan),
        dict(tag="x", lower=2.0, upper=1.0),
    ],
)
def test_invalid_bindings_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TagBinding(**kwargs)


def test_plausible_timestamp() -> None:
    assert plausible_timestamp(TS)
    assert not plausible_timestamp(TS * 1000)  # milliseconds read as seconds
    assert not plausible_timestamp(math.nan)
    assert not plausible_timestamp(0.0)


@pytest.mark.parametrize("quality", [Quality.BAD, Quality.UNCERTAIN])
def test_non_finite_with_a_bad_status_is_a_bad_sample_not_a_refusal(quality: Quality) -> None:
    got = TagBinding("x", factor=2.0).sample(math.nan, TS, quality)
    assert isinstance(got, Sample) and got.quality is quality and math.isnan(got.value)
    assert TagBinding("x").sample(math.inf, TS, Quality.GOOD) is Refusal.NON_FINITE  # Good + NaN: malformed
