"""Small park specs for unit tests: a unit with its catalogue defaults filled in."""

from __future__ import annotations

from twin.catalog import UNIT_MODELS
from twin.spec import UnitSpec


def unit(name: str, model: str, profiles: dict[str, str] | None = None, **params: float) -> UnitSpec:
    """``UnitSpec`` of catalogue ``model`` owned by "owner": its parameter defaults, then ``params`` [SI]."""
    full = {p.name: p.default for p in UNIT_MODELS[model].params if p.default is not None}
    full.update(params)
    return UnitSpec(name, model, "owner", full, profiles or {})  # type: ignore[arg-type]
