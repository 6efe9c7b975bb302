"""A run with a time budget and no step goal: DQN's exploration still decays over a fixed number of steps."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agents.training.config import SCHEDULE_HORIZON
from agents.training.sb3 import _exploration_over_steps


def test_epsilon_decays_over_steps_not_over_an_unlimited_run():
    model = SimpleNamespace(
        exploration_initial_eps=1.0, exploration_final_eps=0.05, exploration_fraction=0.1, num_timesteps=0
    )
    schedule = _exploration_over_steps(model, SCHEDULE_HORIZON)
    assert schedule(1.0) == 1.0
    model.num_timesteps = SCHEDULE_HORIZON // 20  # half of the decay
    assert schedule(1.0 - 1e-9) == pytest.approx(0.525)
    model.num_timesteps = SCHEDULE_HORIZON
    assert schedule(0.99) == pytest.approx(0.05)
