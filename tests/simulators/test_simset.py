"""`SeqRecSimSet-v0`: check_env, hidden parameters only in info, members that really differ."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import recsim_env  # noqa: F401  (registers the environments)


def test_simset_passes_check_env_and_hides_parameters(saved_simulator):
    env = gym.make("SeqRecSimSet-v0", simulator=str(saved_simulator), max_steps=10)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    member = info["member"]
    assert set(member) == {"member", "leave_shift", "position_decay", "satiation_rate", "noise_scale"}
    assert member["member"] in (0, 1)
    assert -1.5 <= member["leave_shift"] <= 1.5
    assert set(obs) == {"item_ids", "feedback", "session_step", "gap_days"}  # nothing about the member
    _, _, _, _, info = env.step(0)
    assert info["member"] == member  # fixed within an episode
    draws = {env.reset(seed=s)[1]["member"]["leave_shift"] for s in range(5)}
    assert len(draws) == 5  # redrawn at every reset


def test_simset_simulator_config_needs_a_dataset():
    with pytest.raises(ValueError, match="needs 'dataset'"):
        gym.make("SeqRecSimSet-v0", simulator_config={"epochs": 1})


def test_members_really_differ_for_a_fixed_policy(saved_simulator):
    """A fixed (uniform) policy's mean return, per member, spans at least 20% (lowest vs highest)."""
    from recsim_env.envs.seqrec import SeqRecVectorEnv
    from simulators.simset import SeqRecSimSetEnv

    prototype = SeqRecSimSetEnv(simulator=str(saved_simulator), max_steps=30)
    n = 200
    env = SeqRecVectorEnv(num_envs=n, user_model=prototype.user_model, max_steps=30)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    params = {k: v.copy() for k, v in env.user_state.parameters.items()}
    returns = np.zeros(n)
    done = np.zeros(n, dtype=bool)
    while not done.all():
        _, rewards, terminated, truncated, _ = env.step(rng.integers(0, 500, size=n))
        returns += np.where(done, 0.0, rewards)
        done |= terminated | truncated
    # Five members of the family: episodes grouped by their drawn leave sensitivity.
    groups = np.array_split(np.argsort(params["leave_shift"]), 5)
    means = np.array([returns[g].mean() for g in groups])
    assert means.min() > 0
    assert (means.max() - means.min()) / means.max() >= 0.2, means


@pytest.mark.parametrize(
    ("simset", "message"),
    [
        ({"leave_shift": 5}, r"simset\.leave_shift must be a pair"),
        ({"noise_scale": ["a", 1]}, r"simset\.noise_scale must be a pair"),
        ({"satiation_rate": [0.0, float("nan")]}, r"simset\.satiation_rate must be a pair"),
        ({"leave_shift": [True, 1]}, r"simset\.leave_shift must be a pair"),
        ({"leave_shiift": [0, 1]}, r"simset: unknown field\(s\) \['leave_shiift'\]"),
        ([0, 1], r"simset must be a SimSetConfig or a dict"),
    ],
)
def test_bad_simset_arguments_are_refused_before_any_simulator_is_built(simset, message):
    from recsim_env.errors import ArgumentError
    from simulators.simset import SeqRecSimSetEnv

    with pytest.raises(ArgumentError, match=message):
        SeqRecSimSetEnv(simset=simset)
