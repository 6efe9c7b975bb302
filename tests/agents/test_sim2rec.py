"""Sim2Rec: trains a few PPO iterations on CPU, acts through the Policy contract, saves and reloads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.policy import load_policy
from agents.sim2rec import Sim2RecConfig, Sim2RecPolicy, evaluate, make_env, resolve_device, train

TINY = dict(
    num_envs=4, num_minibatches=2, window=5, hidden_dim=16, context_dim=8, env_kwargs={"time_budget": 20}
)


def _train(variant: str, seed: int = 0) -> Sim2RecPolicy:
    return train(Sim2RecConfig(variant=variant, total_timesteps=160, seed=seed, **TINY), progress=False)


@pytest.mark.parametrize("variant", ["sim2rec", "universal", "direct", "oracle"])
def test_a_few_iterations_train_and_act_through_the_policy_contract(variant):
    policy = _train(variant)
    env = make_env(policy.config, 14.0)
    obs, _ = env.reset(seed=0)
    probs = policy.action_distribution(obs)
    assert probs.shape == (30,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert isinstance(policy.act(obs, deterministic=True), int)
    batch = np.stack([obs, obs, obs])
    assert policy.act(batch).shape == (3,)
    assert np.all(policy.act(batch, deterministic=True) == int(np.argmax(probs)))
    totals = evaluate(policy, choc_mean=14.0, episodes=3)
    assert totals.shape == (3,) and np.all(totals > 0)


def test_oracle_sees_the_hidden_parameters_and_the_others_do_not():
    config = Sim2RecConfig(variant="oracle", **TINY)
    oracle_env, plain_env = make_env(config, 19.0), make_env(Sim2RecConfig(**TINY), 19.0)
    oracle_obs, info = oracle_env.reset(seed=1)
    plain_obs, _ = plain_env.reset(seed=1)
    assert oracle_obs.shape[-1] == plain_obs.shape[-1] + 3
    np.testing.assert_allclose(
        oracle_obs[-1, -3:], [19.0 / 20, info["memory_discount"], info["sensitivity"]], rtol=1e-6
    )


def test_training_is_reproducible_for_a_seed():
    a, b, c = _train("sim2rec", 0), _train("sim2rec", 0), _train("sim2rec", 1)
    for (name, x), y in zip(a.network.state_dict().items(), b.network.state_dict().values()):
        assert torch.equal(x, y), name
    assert any(
        not torch.equal(x, z)
        for x, z in zip(a.network.state_dict().values(), c.network.state_dict().values())
    )


def test_save_load_round_trip_and_damaged_checkpoints(tmp_path):
    policy = _train("sim2rec")
    policy.save(tmp_path / "p")
    loaded = Sim2RecPolicy.load(tmp_path / "p")
    assert isinstance(load_policy(tmp_path / "p"), Sim2RecPolicy)
    obs, _ = make_env(policy.config, 14.0).reset(seed=2)
    np.testing.assert_array_equal(policy.action_distribution(obs), loaded.action_distribution(obs))
    weights = tmp_path / "p" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"weights\.safetensors: truncated"):
        Sim2RecPolicy.load(tmp_path / "p")
    with pytest.raises(ValueError, match="no such directory"):
        Sim2RecPolicy.load(tmp_path / "missing")


def test_config_validation_and_device_resolution():
    with pytest.raises(ValueError, match="variant"):
        Sim2RecConfig(variant="magic")
    with pytest.raises(ValueError, match="num_minibatches"):
        Sim2RecConfig(num_envs=5, num_minibatches=2)
    assert Sim2RecConfig(variant="direct", direct_domain=9.0).domains == (9.0,)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


# ---- the sequence front end (SeqRec-v0 Dict observations; agents.sim2rec)

SEQ_TINY = dict(
    TINY,
    env="seqrec",
    rollout_steps=16,
    d_model=16,
    env_kwargs={"history_len": 8, "max_steps": 10},
)


@pytest.fixture(scope="module")
def tiny_simulator(world_logs, tmp_path_factory):
    """A 2-member simulator learned from 3,000 uniform-policy world steps (about 2 s)."""
    from simulators import SimulatorConfig, fit, save

    config = SimulatorConfig(
        d_model=16, history_len=8, epochs=1, batch_size=128, dropout=0.0, ensemble_size=2
    )
    return str(save(fit(world_logs, config).simulator, tmp_path_factory.mktemp("sim") / "sim"))


def _seq_config(variant: str, simulator: str, seed: int = 0) -> Sim2RecConfig:
    return Sim2RecConfig(variant=variant, simulator=simulator, total_timesteps=128, seed=seed, **SEQ_TINY)


@pytest.mark.parametrize("variant", ["sim2rec", "universal", "direct", "oracle"])
def test_sequence_observations_train_act_and_round_trip(variant, tiny_simulator, tmp_path):
    from agents.policy import Policy
    from agents.sim2rec import HIDDEN_KEY, make_training_env, simulator_set
    from agents.sim2rec import evaluate_seqrec as evaluate

    config = _seq_config(variant, tiny_simulator)
    iterations = []
    policy = train(config, progress=False, on_iteration=lambda i, stats: iterations.append(stats))
    assert len(iterations) == 2 and all(np.isfinite(s["policy_loss"]) for s in iterations)
    assert ("consistency" in iterations[-1]) == (variant == "sim2rec")
    assert isinstance(policy, Policy) and policy.n_items == 500
    env = make_training_env(config)
    obs, _ = env.reset(seed=3)
    assert (HIDDEN_KEY in obs) == (variant == "oracle")
    probs = policy.action_distribution(obs)
    assert probs.shape == (4, 500) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    single = {key: value[0] for key, value in obs.items()}
    assert isinstance(policy.act(single), int)
    assert policy.act(obs, deterministic=True).tolist() == probs.argmax(axis=1).tolist()
    policy.save(tmp_path / "p")
    loaded = load_policy(tmp_path / "p")
    assert isinstance(loaded, Sim2RecPolicy) and loaded.config == config
    np.testing.assert_array_equal(loaded.action_distribution(obs), probs)
    # zero-shot in the ground-truth world (ORACLE gets the set's centre there) and in the set
    world = evaluate(loaded, n_episodes=4, seed=5, history_len=8, max_steps=10)
    assert world.episodes == 4 and world.mean_return >= 0
    assert evaluate(loaded, n_episodes=4, seed=5, history_len=8, max_steps=10) == world
    in_set = evaluate(loaded, n_episodes=4, user_model=simulator_set(config), history_len=8, max_steps=10)
    assert in_set.episodes == 4


def test_sequence_training_is_reproducible_for_a_seed(tiny_simulator):
    a, b = (train(_seq_config("sim2rec", tiny_simulator), progress=False) for _ in range(2))
    for (name, x), y in zip(a.network.state_dict().items(), b.network.state_dict().values()):
        assert torch.equal(x, y), name


def test_oracle_hidden_vector_and_world_centre():
    from agents.sim2rec import hidden_vector
    from simulators.simset import SimSetConfig

    ranges = SimSetConfig().ranges()
    parameters = {
        "member": np.array([1, -1]),
        "leave_shift": np.array([-1.5, 0.0]),
        "position_decay": np.array([1.0, 0.75]),
        "satiation_rate": np.array([2.0, 1.0]),
        "noise_scale": np.array([0.25, 0.5]),
    }
    np.testing.assert_allclose(
        hidden_vector(parameters, 2, 3, ranges),
        [[0, 1, 0, 0.0, 1.0, 1.0, 0.25], [1 / 3, 1 / 3, 1 / 3, 0.5, 0.5, 0.5, 0.5]],
        rtol=1e-6,
    )
    np.testing.assert_allclose(hidden_vector(None, 1, 3, ranges), [[1 / 3] * 3 + [0.5] * 4], rtol=1e-6)


def test_consistency_loss_groups_steps_by_episode_and_skips_masked_steps():
    from agents.sim2rec import _consistency

    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [9.0, 9.0], [3.0, 4.0], [3.0, 4.0]])
    segments = torch.tensor([0, 0, 1, 1, 2])
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0])
    assert float(_consistency(z, segments, mask, T=5)) == pytest.approx(0.0)
    assert float(_consistency(z, segments, torch.ones(5), T=5)) > 0
    # without segments (SeqRecLTS-v0): each env's T steps are one episode
    assert float(_consistency(torch.ones(6, 2), None, None, T=3)) == 0.0
