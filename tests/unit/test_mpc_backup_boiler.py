"""A backup steam boiler piped to one consumer makes at most that consumer's steam in the MPC's plan.

The header balance is shared; without the per-consumer bound a cheap pharma boiler "covered" the refinery's
steam in the plan while in the plant (the twin) its steam can only reach pharma: the refinery went short.
"""

from __future__ import annotations

import numpy as np

from controllers import mpc_model as mm
from controllers.mpc import MpcController, Variant
from controllers.types import SolveStatus
from tests.unit.test_mpc_contracts import FUELS, STEP, T0, TAGS, conn, unit
from twin.spec import ParkSpec

C = 273.15
N = 8
PARK = ParkSpec(
    "steam2",
    (
        unit(
            "chp",
            "chp_boiler",
            steam_capacity=50.0,
            heat_capacity=60e6,
            fuel_capacity=200e6,
            power_ratio=0.1,
            efficiency=0.9,
            min_load=0.3,
            steam_pressure=10e5,
            steam_temperature=200 + C,
            feedwater_temperature=105 + C,
            ramp_rate=0.05 / 60.0,
        ),
        unit("header", "steam_header", nominal_pressure=10e5),
        unit("pharma_boiler", "gas_boiler", capacity=60e6, medium=1.0, min_load=0.2, ramp_rate=0.05 / 60.0),
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
