"""SB3 backend: PPO trains on SeqRec-v0, checkpoints restore, --resume continues, bad runs fail early."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np
import pytest

from agents import load_policy
from agents.training import TrainConfig, train

pytest.importorskip("stable_baselines3")

TINY_ENCODER = {"d_model": 16, "n_layers": 1}


def _config(**changes) -> TrainConfig:
    fields = dict(
        backend="sb3",
        algo="ppo",
        num_envs=2,
        stop_timesteps=256,
        eval_interval=128,
        eval_episodes=2,
        encoder_config=TINY_ENCODER,
        algo_config={"n_steps": 64, "batch_size": 64, "n_epochs": 2},
        env_config={"max_steps": 20},
    )
    return TrainConfig(**{**fields, **changes})


def _parameters(policy) -> np.ndarray:
    return np.concatenate([p.detach().numpy().ravel() for p in policy.model.policy.parameters()])


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ppo")
    return train(_config(), out, progress=False)


def test_ppo_trains_logs_evaluations_to_csv_and_tensorboard(ppo_run):
    assert ppo_run.timesteps == 256
    assert ppo_run.last_eval_return is not None
    run_dir = ppo_run.out / "logs" / "run-0"
    with open(run_dir / "progress.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert "eval/mean_reward" in rows[0]
    assert any(row["eval/mean_reward"] for row in rows)
    assert list(run_dir.glob("events.out.tfevents.*"))


def test_checkpoint_restores_the_same_deterministic_action(ppo_run):
    from agents.training.config import open_training_state
    from agents.training.sb3 import WEIGHTS_FILE, SB3Policy, _make_env, build_model

    restored = load_policy(ppo_run.out)
    state, config, _ = open_training_state(ppo_run.out)  # the resumable state holds the same weights
    model = build_model(config, _make_env(config, 1, 0))
    model.policy.load_state_dict(state.read_tensors(WEIGHTS_FILE, framework="pt"))
    in_memory = SB3Policy(model, "ppo", config)
    env = gym.make("SeqRec-v0", max_steps=20)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        assert restored.act(obs, deterministic=True) == in_memory.act(obs, deterministic=True)
        np.testing.assert_allclose(
            restored.action_distribution(obs), in_memory.action_distribution(obs), atol=1e-6
        )


def test_resume_continues_the_step_count(ppo_run, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(ppo_run.out, out)
    config = TrainConfig(**{**TrainConfig.load(out).to_dict(), "stop_timesteps": 512})
    result = train(config, out, resume=True, progress=False)
    assert result.timesteps == 512
    assert (out / "logs" / "run-1" / "progress.csv").is_file()
    assert TrainConfig.load(out).stop_timesteps == 512


def test_training_is_reproducible_for_a_seed(tmp_path):
    config = _config(stop_timesteps=128, eval_interval=10_000)
    first = train(config, tmp_path / "a", progress=False)
    second = train(config, tmp_path / "b", progress=False)
    np.testing.assert_array_equal(_parameters(load_policy(first.out)), _parameters(load_policy(second.out)))


@pytest.mark.parametrize("algo", ["a2c", "dqn"])
def test_a2c_and_dqn_train(algo, tmp_path):
    algo_config = (
        {"n_steps": 8} if algo == "a2c" else {"learning_starts": 32, "batch_size": 16, "buffer_size": 1000}
    )
    result = train(
        _config(algo=algo, stop_timesteps=128, eval_interval=10_000, algo_config=algo_config),
        tmp_path,
        progress=False,
    )
    assert result.timesteps == 128
    policy = load_policy(tmp_path)
    assert policy.algo == algo


def test_time_budget_stops_training_early(tmp_path):
    result = train(
        _config(stop_timesteps=1_000_000, eval_interval=10_000, time_budget_s=0.5), tmp_path, progress=False
    )
    assert result.timesteps < 1_000_000
    assert load_policy(tmp_path).n_items == 500


def test_slates_and_bad_algorithm_arguments_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match="slate_size=1"):
        train(_config(env_config={"slate_size": 3}), tmp_path / "slate", progress=False)
    with pytest.raises(ValueError, match="algo-config"):
        train(_config(algo_config={"no_such_argument": 1}), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad" / "policy").exists() and not (tmp_path / "bad" / "state").exists()


@pytest.mark.slow
def test_ppo_beats_uniform_on_the_world(tmp_path):
    """Learning test: after 30k steps, PPO's most probable item beats the uniform policy's mean return by 20%."""
    from agents.baselines import baseline_policy
    from recsim_env.rollout import rollout

    config = TrainConfig(
        backend="sb3",
        algo="ppo",
        stop_timesteps=30_000,
        eval_interval=100_000,
        encoder_config={"d_model": 32, "n_layers": 1, "dropout": 0.0},
    )
    train(config, tmp_path, progress=False)
    trained = rollout(load_policy(tmp_path), n_episodes=300, seed=1, deterministic=True)
    uniform = rollout(baseline_policy("uniform", n_items=500), n_episodes=300, seed=1)
    assert trained.mean_return > 1.2 * uniform.mean_return, (trained.mean_return, uniform.mean_return)
