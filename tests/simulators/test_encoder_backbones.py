"""Every registered encoder as a learned simulator's backbone: the simulator fits, and its environment steps."""

from __future__ import annotations

import gymnasium as gym
import pytest

import recsim_env  # noqa: F401  (registers the environments)
from recsim_env.encoders import ENCODERS
from tests.simulators.conftest import TINY


@pytest.mark.parametrize("name", sorted(set(ENCODERS) - {"sasrec"}))  # SASRec: the default, tested throughout
def test_the_simulator_fits_on_the_encoder_and_its_env_steps(name, world_logs, tmp_path):
    if name == "h2rec":
        pytest.skip(
            "h2rec needs item content embeddings, which `simulators.fit` does not attach (docs/h2rec.md)"
        )
    from simulators import SimulatorConfig, fit, save

    result = fit(world_logs, SimulatorConfig(**{**TINY, "epochs": 1}, encoder=name))
    assert type(result.simulator.members[0].encoder) is ENCODERS[name]
    path = save(result.simulator, tmp_path / "sim")
    env = gym.make("SeqRec-v0", simulator=str(path), max_steps=5)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and float(reward) == float(reward)
        if terminated or truncated:
            break
