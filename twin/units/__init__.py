"""Unit models of the twin: one module per model, each a set of small numba kernels over slices of the
park's state vector (see each module's docstring for equations, [units] and references).

Kernels share one calling convention: ``(x, xo, p, po, <boundary values>, dx, y, yo)`` with x the
state vector and xo the unit's first state, p the parameter vector and po the unit's first parameter,
dx the derivative vector, y the output vector and yo the unit's first output. Every kernel ``k`` is a
numba dispatcher with the plain-Python source at ``k.py_func``; ``twin.units._backend.retarget`` runs
the same source over another back end (plain Python, CasADi).
"""
