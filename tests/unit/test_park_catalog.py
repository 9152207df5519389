"""The kernels implement exactly what twin.catalog declares: parameters, outputs, states, inputs."""

from __future__ import annotations

import re

import pytest

from tests.unit.park_fixtures import small_park
from twin.catalog import UNIT_MODELS, QuantityKind
from twin.park import _OUTPUTS, _PARAMS, Park


@pytest.mark.parametrize("model", sorted(UNIT_MODELS))
def test_kernel_parameters_are_the_catalog_parameters(model: str) -> None:
    declared = [p.name for p in UNIT_MODELS[model].params]
    used = [p for p in _PARAMS[model] if not p.startswith("_")]
    assert sorted(used) == sorted(declared)


@pytest.mark.parametrize("model", sorted(UNIT_MODELS))
def test_kernel_outputs_are_catalog_outputs(model: str) -> None:
    cat = UNIT_MODELS[model]
    outputs = {q.name for q in cat.quantities if q.kind is QuantityKind.OUTPUT}
    assert set(_OUTPUTS[model]) == outputs


def test_park_names_are_catalog_quantities() -> None:
    park = Park.from_spec(small_park())
    spec = small_park()
    model_of = {u.name: u.model for u in spec.units}
    for signals, kinds in (
        (park.state_signals, {QuantityKind.STATE}),
        (park.input_signals, {QuantityKind.INPUT, QuantityKind.SETPOINT}),
        (park.output_signals, {QuantityKind.OUTPUT}),
    ):
        for s in signals:
            unit, qty = s.name.split(".", 1)
            qty = re.sub(r"\[\d+\]$", "", qty)
            q = UNIT_MODELS[model_of[unit]].quantity(qty)
            assert q is not None, s.name
            assert q.kind in kinds, s.name
            assert q.unit == s.unit, s.name
