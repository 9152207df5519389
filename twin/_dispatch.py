"""A simple feed-forward dispatch: setpoints from the demand profiles, for simulation without a controller.

Used by ``symtwin simulate`` (default) and ``benchmarks/twin_speed.py`` so that an open-loop run keeps
the header pressure and the supply temperature in a sensible range; the MPC replaces it in operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from twin.park import Park

Array = npt.NDArray[np.float64]


def feedforward_setpoints(
    park: Park, t0: float, t_end: float, step: float = 300.0, rng: np.random.Generator | None = None
) -> dict[str, tuple[Array, Array]]:
    """Setpoints every ``step`` [s] from the demand profiles: the CHP (then the backup steam boilers) cover the
    steam demand; the town's heat comes in merit order from surplus heat, heat pumps, CHP heat and peak
    boilers; the tank cycles gently (6 h period). ``rng`` adds a +-10 % dither to the heat-pump load. Returns input name ->
    (times [s], values) for ``Park.simulate(inputs=...)``."""
    sched = park.input_schedule()
    p = dict(zip(park.param_names, park.params, strict=True))
    grid = np.arange(t0, t_end + step, step)
    u = sched.table(grid)
    col = {n: i for i, n in enumerate(park.input_names)}
    units = {x.spec.name: x.spec.model for x in park._units}

    def model(kind: str) -> list[str]:
        return [n for n, m in units.items() if m == kind]

    out: dict[str, Array] = {}
    steam_w = np.zeros(grid.size)
    for c in model("steam_consumer"):
        h_use = 2.78e6 - p[f"{c}._h_condensate"]
        steam_w += u[:, col[f"{c}.demand"]] * p[f"{c}.design_flow"] * h_use
    towns = model("heat_demand")
    q_town = np.zeros(grid.size)
    for town in towns:
        q_town += u[:, col[f"{town}.demand"]] * p[f"{town}.design_load"] * 1.03
    # merit order for the district heating: surplus heat, heat pumps, CHP heat, peak boilers
    q_rem = q_town.copy()
    for s in model("surplus_heat"):
        if any(m == "heat_exchanger" for m in units.values()) and p[f"{s}.temperature"] > 330.0:
            offer = 0.8 * u[:, col[f"{s}.available"]] * p[f"{s}.capacity"]  # ~80 % recovered in the exchanger
            take = np.minimum(offer, np.maximum(q_rem, 0.0))
            out[f"{s}.use_setpoint"] = np.clip(take / np.maximum(offer, 1.0), 0.0, 1.0)
            q_rem = q_rem - take
    for hp in model("heat_pump"):
        dither = 0.1 * rng.standard_normal(grid.size) if rng is not None else np.zeros(grid.size)
        lhp = np.clip(np.minimum(np.maximum(q_rem, 0.0) / p[f"{hp}.capacity"], 0.8 + dither), 0.0, 1.0)
        lhp = np.where(lhp < p[f"{hp}.min_load"], 0.0, lhp)
        out[f"{hp}.load_setpoint"] = lhp
        q_rem = q_rem - lhp * p[f"{hp}.capacity"]
    for chp in model("chp_boiler"):
        useful_per_load = (p[f"{chp}.efficiency"] - p[f"{chp}.power_ratio"]) * p[f"{chp}.fuel_capacity"]
        q_chp_dh = np.minimum(p[f"{chp}.heat_capacity"], np.maximum(q_rem, 0.0))
        steam_chp = np.minimum(
            steam_w, 0.95 * p[f"{chp}.steam_capacity"] * (p[f"{chp}._h_steam"] - p[f"{chp}._h_feed"])
        )
        load = np.clip((steam_chp + q_chp_dh) / useful_per_load, p[f"{chp}.min_load"], 1.0)
        out[f"{chp}.load_setpoint"] = load
        out[f"{chp}.heat_split_setpoint"] = np.clip(q_chp_dh / (load * useful_per_load), 0.0, 1.0)
        q_rem = q_rem - q_chp_dh
        steam_w = steam_w - steam_chp
    for b in model("gas_boiler"):
        if p[f"{b}.medium"] >= 0.5:
            out[f"{b}.load_setpoint"] = np.clip(steam_w / p[f"{b}.capacity"] * 1.02, 0.0, 1.0)
        else:
            out[f"{b}.load_setpoint"] = np.clip(np.maximum(q_rem, 0.0) / p[f"{b}.capacity"], 0.0, 1.0)
            q_rem = q_rem - out[f"{b}.load_setpoint"] * p[f"{b}.capacity"]
    for tank in model("storage_tank"):
        out[f"{tank}.charge_setpoint"] = (
            0.25 * p[f"{tank}.max_flow"] * np.sin(2 * np.pi * (grid - t0) / 21600.0)
        )
    return {k: (grid, v) for k, v in out.items()}
