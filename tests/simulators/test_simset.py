"""`SimulatorSet` and `SeqRecSimSet-v0`: check_env, hidden parameters only in info, members that really differ,
each row read by its own member."""

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


def test_a_set_of_one_simulator_without_ranges_responds_as_it(tiny_fit):
    """The set's own draws (member, default parameters) leave the member's responses unchanged."""
    from simulators import SimulatorSet

    member = tiny_fit.simulator.simulators[1]
    family = SimulatorSet.of(member, {})
    assert family.n_start_uniforms == 6 and member.n_start_uniforms == 1
    n = 10
    rng = np.random.default_rng(0)
    users, start = rng.integers(0, member.n_users, n), rng.random((n, family.n_start_uniforms))
    a, b = member.initial_state(users, start[:, :1]), family.initial_state(users, start)
    assert (b.state.parameters["member"] == 0).all()
    for _ in range(5):
        slates = rng.integers(0, member.n_items, (n, 2))
        uniforms = rng.random((n, member.n_step_uniforms))
        x, y = member.respond(a.state, slates, uniforms), family.respond(b.state, slates, uniforms)
        np.testing.assert_array_equal(x.feedback, y.feedback)
        np.testing.assert_array_equal(x.leave, y.leave)


def test_each_row_reads_its_own_member_with_parameters_in_their_ranges(tiny_fit):
    from simulators import SimulatorSet
    from simulators.simulator import SimulatorState

    family = SimulatorSet.of(tiny_fit.simulator, {"leave_shift": (-1.0, 1.0), "noise_scale": (0.0, 0.5)})
    n = 40
    rng = np.random.default_rng(1)
    state = family.initial_state(
        rng.integers(0, family.n_users, n), rng.random((n, family.n_start_uniforms))
    ).state
    params = state.parameters
    assert set(np.unique(params["member"])) == {0, 1}
    assert ((-1.0 <= params["leave_shift"]) & (params["leave_shift"] <= 1.0)).all()
    assert ((0.0 <= params["noise_scale"]) & (params["noise_scale"] <= 0.5)).all()
    assert (params["position_decay"] == 1.0).all() and (params["satiation_rate"] == 0.0).all()
    slates = rng.integers(0, family.n_items, (n, 2))
    step = family.predict_step(state, slates)
    assert (step["click_std"] == 0).all()
    for k, member in enumerate(family.simulators):
        rows = np.flatnonzero(params["member"] == k)
        users = {name: getattr(state, name) for name in ("items", "inputs", "user_features")}
        mine = SimulatorState(
            **{name: value[rows] for name, value in users.items()},
            user_ids=state.user_ids[rows],
            pending_gap=state.pending_gap[rows],
            satiation=state.satiation[rows],
            gap_mean=state.gap_mean[rows],
            gap_sigma=state.gap_sigma[rows],
            parameters={name: value[rows] for name, value in params.items()},
            carried=state.carried.select(rows),
        )
        np.testing.assert_array_equal(step["click"][rows], member.predict_step(mine, slates[rows])["click"])


def test_unknown_parameter_ranges_are_refused(tiny_fit):
    from recsim_env.errors import ArgumentError
    from simulators import SimulatorSet

    with pytest.raises(ArgumentError, match=r"unknown parameter\(s\) \['leave_shiift'\]"):
        SimulatorSet.of(tiny_fit.simulator, {"leave_shiift": (0.0, 1.0)})
