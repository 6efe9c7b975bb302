"""Each optional part of the response model (user features, item features, click pooling, the interest
filter) can be switched off alone: the model then lacks that part and keeps the others, trains, steps and
saves."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import TINY

PARTS = ("user_features", "item_features", "click_pooling", "interest_filter")


def _has(model, part: str) -> bool:
    return {
        "user_features": model.user_projection is not None,
        "item_features": model.item_projection is not None,
        "click_pooling": model.click_pooling and hasattr(model, "pool_projection"),
        "interest_filter": model.interest_filter is not None,
    }[part]


@pytest.mark.parametrize("off", PARTS)
def test_one_part_switched_off_alone(world_logs, off, tmp_path):
    import simulators

    config = simulators.SimulatorConfig(**{**TINY, "epochs": 1}, **{off: False})
    simulator = simulators.fit(world_logs, config).simulator
    model = simulator.members[0]
    assert {part: _has(model, part) for part in PARTS} == {part: part != off for part in PARTS}
    assert simulator.n_user_features == (
        0 if off == "user_features" else simulator.schema.user_features.width
    )

    rng = np.random.default_rng(0)
    n = 12
    start = simulator.initial_state(rng.integers(0, simulator.n_users, n), rng.random((n, 1)))
    state = start.state
    width = 0 if off == "interest_filter" else model.interest_filter.state_width
    assert state.carried.beliefs.shape == (n, width)
    for _ in range(3):
        slates = rng.integers(0, simulator.n_items, (n, 1))
        response = simulator.respond(state, slates, rng.random((n, simulator.n_step_uniforms)))
        assert np.isfinite(response.feedback).all()

    loaded = simulators.load(simulators.save(simulator, tmp_path / "sim"))
    slates = rng.integers(0, simulator.n_items, (n, 2))
    args = (state.items, state.inputs, slates, -1, state.user_features, state.carried.beliefs[:, None])
    np.testing.assert_array_equal(simulator.predict(*args)["click"], loaded.predict(*args)["click"])
