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
    weights = tmp_path / "p" / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="weights.pt"):
        Sim2RecPolicy.load(tmp_path / "p")
    with pytest.raises(ValueError, match="not a saved Sim2Rec policy"):
        Sim2RecPolicy.load(tmp_path / "missing")


def test_config_validation_and_device_resolution():
    with pytest.raises(ValueError, match="variant"):
        Sim2RecConfig(variant="magic")
    with pytest.raises(ValueError, match="num_minibatches"):
        Sim2RecConfig(num_envs=5, num_minibatches=2)
    assert Sim2RecConfig(variant="direct", direct_domain=9.0).domains == (9.0,)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
