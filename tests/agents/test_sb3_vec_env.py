"""`SeqRecSB3VecEnv` steps the same users through the same episodes as SB3's `DummyVecEnv` of `SeqRecEnv`s."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

import recsim_env  # noqa: E402,F401  (registers the environments)
from agents.sb3_vec_env import SeqRecSB3VecEnv  # noqa: E402


@pytest.mark.parametrize("env_config", [{}, {"max_steps": 7, "sessions_per_episode": 2}])
def test_matches_dummy_vec_env_step_for_step(env_config):
    n_envs, seed = 3, 11
    reference = make_vec_env(lambda: gym.make("SeqRec-v0", **env_config), n_envs=n_envs, seed=seed)
    batched = SeqRecSB3VecEnv(n_envs, env_config)
    batched.seed(seed)
    expected, observed = reference.reset(), batched.reset()
    rng = np.random.default_rng(0)
    finished = 0
    for step in range(200):
        for key in expected:
            np.testing.assert_array_equal(observed[key], expected[key], err_msg=f"step {step} {key}")
        actions = rng.integers(0, 500, n_envs)
        expected, expected_rewards, expected_dones, expected_infos = reference.step(actions)
        observed, rewards, dones, infos = batched.step(actions)
        np.testing.assert_array_equal(rewards, expected_rewards)
        np.testing.assert_array_equal(dones, expected_dones)
        for i in np.flatnonzero(dones):
            finished += 1
            for key, value in expected_infos[i]["terminal_observation"].items():
                np.testing.assert_array_equal(infos[i]["terminal_observation"][key], value)
            assert infos[i]["TimeLimit.truncated"] == expected_infos[i]["TimeLimit.truncated"]
            assert infos[i]["episode"]["r"] == pytest.approx(expected_infos[i]["episode"]["r"])
            assert infos[i]["episode"]["l"] == expected_infos[i]["episode"]["l"]
    assert finished > 0


def test_observations_handed_out_do_not_change_on_later_steps():
    env = SeqRecSB3VecEnv(2, {"max_steps": 3})
    env.seed(0)
    first = env.reset()
    kept = {key: value.copy() for key, value in first.items()}
    for _ in range(5):
        env.step(np.array([1, 2]))
    for key, value in kept.items():
        np.testing.assert_array_equal(first[key], value)


def test_step_before_reset_and_bad_actions_raise():
    env = SeqRecSB3VecEnv(2, {})
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0, 1]))
    env.reset()
    with pytest.raises(Exception, match="actions"):
        env.step(np.array([0, 500]))


def test_ppo_trains_the_same_weights_as_through_dummy_vec_env(tmp_path, monkeypatch):
    import agents.training.sb3 as sb3_training
    from agents import load_policy
    from agents.training import TrainConfig, train

    config = TrainConfig(
        num_envs=2,
        stop_timesteps=128,
        eval_interval=10**9,
        encoder_config={"d_model": 8, "n_layers": 1},
        algo_config={"n_steps": 32, "batch_size": 32, "n_epochs": 1},
        env_config={"max_steps": 10},
    )

    def weights(out):
        return np.concatenate(
            [p.detach().numpy().ravel() for p in load_policy(out).model.policy.parameters()]
        )

    train(config, tmp_path / "batched", progress=False)
    monkeypatch.setattr(
        sb3_training,
        "_make_env",
        lambda config, n_envs, seed: make_vec_env(
            lambda: gym.make(config.env_id, **config.env_config), n_envs=n_envs, seed=seed
        ),
    )
    train(config, tmp_path / "dummy", progress=False)
    np.testing.assert_array_equal(weights(tmp_path / "batched"), weights(tmp_path / "dummy"))
