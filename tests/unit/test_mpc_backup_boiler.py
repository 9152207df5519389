"""A backup steam boiler piped to one consumer makes at most that consumer's steam in the MPC's plan.

The header balance is shared; without the per-consumer bound a cheap pharma boiler "covered" the refinery's
steam in the plan while in the plant (the twin) its steam can only reach pharma: the refinery went short.
"""

from __future__ import annotations

import numpy as np

from controllers import mpc_model as mm
from controllers.mpc import MpcController, Variant
from controllers.types import SolveStatus
from tests.support.specs import unit
from tests.unit.test_mpc_contracts import FUELS, STEP, T0, TAGS, conn
from tests.unit.test_mpc_contracts import PARK as CONTRACT_PARK
from twin.spec import ParkSpec

N = 8
_SHARED = {u.name: u for u in CONTRACT_PARK.units if u.name in ("chp", "header", "pharma_boiler")}
PARK = ParkSpec(
    "steam2",
    (
        *_SHARED.values(),
        unit("pharma", "steam_consumer", {"demand": "pharma_demand"}, design_flow=20.0),
        unit("refinery", "steam_consumer", {"demand": "refinery_demand"}, design_flow=30.0),
    ),
    (
        conn("chp.steam_out", "header.steam_in"),
        conn("header.steam_out", "pharma.steam_in"),
        conn("header.steam_out", "refinery.steam_in"),
        conn("pharma_boiler.steam_out", "pharma.steam_in"),
    ),
)


def test_the_backup_boiler_is_bound_to_its_consumer() -> None:
    spec = mm.problem_from_spec(PARK, setpoint_tags=TAGS, fuels=FUELS, step_s=STEP, n_horizon=N)
    boiler = next(u for u in spec.loads if u.name == "pharma_boiler")
    assert boiler.serves == "pharma"
    assert next(u for u in spec.loads if u.name == "chp").serves is None
    fc = {
        "pharma.demand": np.full(N, 0.5),  # 10 kg/s (above the boiler's minimum stable load)
        "refinery.demand": np.full(N, 0.8),  # 24 kg/s
        "price.wood_chips": np.full(N, 80.0 / 3.6e9),  # wood dear, gas cheap: the boiler is the cheap steam
        "price.natural_gas": np.full(N, 10.0 / 3.6e9),
        "price.electricity": np.zeros(N),
        "price.co2": np.zeros(N),
    }
    state = {
        "chp.load": 0.5,
        "chp.load_setpoint": 0.5,
        "pharma_boiler.load": 0.1,
        "pharma_boiler.load_setpoint": 0.1,
    }
    res = MpcController(spec, Variant.FAST).step(state, fc, T0)
    assert res.status in (SolveStatus.OPTIMAL, SolveStatus.SUBOPTIMAL), res.message
    made = np.asarray(res.plan[TAGS["pharma_boiler.load_setpoint"].id]) * boiler.capacity_w / boiler.dh_j_kg
    assert np.all(made <= 10.0 + 1e-3)  # never more than pharma draws, however cheap its gas
    assert made.max() > 9.0  # and it does make pharma's steam (the cheaper fuel)
