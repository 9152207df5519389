"""IAPWS-IF97 water and steam properties (regions 1, 2, 4, B23, backward T(p, h)); see ``twin.steam``.

``kernels`` holds the scalar numba kernels; ``load_plain_kernels()`` gives an uncompiled copy of the
same source for testing the plain-Python path side by side with the compiled one.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from twin.if97 import kernels
from twin.if97.kernels import PLAIN_MODULE_NAME


def load_plain_kernels() -> ModuleType:
    """The kernels module as plain Python (never compiled), loaded once from the same source file."""
    module = sys.modules.get(PLAIN_MODULE_NAME)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(PLAIN_MODULE_NAME, kernels.__file__)
    if spec is None or spec.loader is None:  # pragma: no cover - the file is part of this package
        raise ImportError(f"cannot load {kernels.__file__} as {PLAIN_MODULE_NAME}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PLAIN_MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


__all__ = ["kernels", "load_plain_kernels"]
