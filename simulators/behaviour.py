"""The hidden behaviour parameters of a simulated user row (the equations are in `simulators.simulator`).

A single or ensemble simulator gives every row the defaults; a simulator set (`simulators.simset`) draws
them per episode from its ranges.
"""

from __future__ import annotations

import numpy as np

SATIATION_STEP_DECAY = 0.85
"""Satiation kept from one step to the next (`S <- 0.85 S + e_i / |e_i|` for the consumed item i)."""
PARAMETERS = ("member", "leave_shift", "position_decay", "satiation_rate", "noise_scale")
"""The hidden behaviour parameters of a user row."""
DEFAULT_PARAMETERS = {
    "member": -1,
    "leave_shift": 0.0,
    "position_decay": 1.0,
    "satiation_rate": 0.0,
    "noise_scale": 0.0,
}
"""member -1 = the ensemble mean."""


def draw_parameters(
    uniforms: np.ndarray, n: int, ranges: dict[str, tuple[float, float]] | None, n_members: int
) -> dict[str, np.ndarray]:
    """`{name: [n]}` parameters of `n` rows: the defaults without `ranges`, else each drawn from its
    uniforms `uniforms[:, j]` (j in `PARAMETERS` order): `member` uniformly among the `n_members`, the others
    uniformly in their `(low, high)` range (the default where `ranges` leaves one out)."""
    params = {name: np.full(n, float(value)) for name, value in DEFAULT_PARAMETERS.items()}
    params["member"] = params["member"].astype(np.int64)
    if ranges is None:
        return params
    for j, name in enumerate(PARAMETERS):
        if name == "member":
            params[name] = np.minimum((uniforms[:, j] * n_members).astype(np.int64), n_members - 1)
        elif name in ranges:
            low, high = ranges[name]
            params[name] = low + (high - low) * uniforms[:, j]
    return params
