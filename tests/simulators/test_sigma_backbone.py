"""SIGMA as a learned simulator's backbone: the simulator fits, and its environment steps."""

from __future__ import annotations

import gymnasium as gym

import recsim_env  # noqa: F401  (registers the environments)
from tests.simulators.conftest import TINY


def test_sigma_simulator_fits_and_its_env_steps(world_logs, tmp_path):
    from simulators import SimulatorConfig, fit, save

    result = fit(world_logs, SimulatorConfig(**{**TINY, "epochs": 1}, encoder="sigma"))
    member = result.simulator.members[0]
    assert type(member.encoder).__name__ == "SIGMA"
    path = save(result.simulator, tmp_path / "sim")
    env = gym.make("SeqRec-v0", simulator=str(path), max_steps=5)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and float(reward) == float(reward)
        if terminated or truncated:
            break
