"""symtwin physics: IF97 steam properties, unit models, park assembly and integration.

``twin.Park`` is imported lazily so that ``import twin.catalog`` (config validation, ``symtwin --help``)
does not pull in numba.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twin.park import Park

__all__ = ["Park"]


def __getattr__(name: str) -> Any:
    if name == "Park":
        from twin.park import Park

        return Park
    raise AttributeError(f"module 'twin' has no attribute {name!r}")
