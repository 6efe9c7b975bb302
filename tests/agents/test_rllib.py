"""RLlib backend (new API stack): two PPO iterations end to end, checkpoint -> restore, --resume, DQN, masking."""

from __future__ import annotations

import csv
import shutil

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("ray")

from agents import load_policy  # noqa: E402
from agents.training import TrainConfig, train  # noqa: E402

pytestmark = pytest.mark.rllib

TINY = dict(
    backend="rllib",
    num_envs=16,
    num_env_runners=0,
    eval_episodes=4,
    encoder_config={"d_model": 16, "n_layers": 1},
    env_config={"max_steps": 20},
)
PPO_SMALL = {"train_batch_size_per_learner": 256, "minibatch_size": 128, "num_epochs": 1}


@pytest.fixture(scope="module")
def ray_session():
    import ray

    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ppo_run(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("rllib_ppo")
    config = TrainConfig(algo="ppo", stop_timesteps=512, eval_interval=256, algo_config=PPO_SMALL, **TINY)
    return train(config, out, progress=False)


def test_two_ppo_iterations_end_to_end(ppo_run):
    assert ppo_run.timesteps >= 512
    with open(ppo_run.out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    assert {
        "timesteps",
        "episode_return_mean",
        "env_steps_per_s",
        "learner/policy_loss",
        "eval/mean_return",
    } <= set(rows[0])
    assert all(row["eval/mean_return"] for row in rows)  # each iteration crossed an evaluation point
    assert list((ppo_run.out / "tensorboard").glob("events.out.tfevents.*"))
    assert ppo_run.last_eval_return is not None


def test_checkpoint_restores_to_the_same_deterministic_action(ppo_run):
    import torch
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.core.columns import Columns

    exported = load_policy(ppo_run.out)
    restored = Algorithm.from_checkpoint(str(ppo_run.out / "checkpoint"))
    try:
        module = restored.get_module()
        env = gym.make("SeqRec-v0", max_steps=20)
        for seed in range(3):
            obs, _ = env.reset(seed=seed)
            batch = {key: torch.as_tensor(value[None]) for key, value in obs.items()}
            with torch.no_grad():
                logits = module.forward_inference({Columns.OBS: batch})[Columns.ACTION_DIST_INPUTS]
            assert int(logits.argmax(dim=-1)[0]) == exported.act(obs, deterministic=True)
    finally:
        restored.stop()


def test_resume_continues_the_step_count(ppo_run, tmp_path):
    import json

    out = tmp_path / "copy"
    shutil.copytree(ppo_run.out, out)
    config = TrainConfig(**{**TrainConfig.load(out).to_dict(), "stop_timesteps": 1024})
    result = train(config, out, resume=True, progress=False)
    assert result.timesteps >= 1024
    assert json.loads((out / "progress.json").read_text())["timesteps"] == result.timesteps
    with open(out / "metrics.csv") as handle:
        timesteps = [int(row["timesteps"]) for row in csv.DictReader(handle)]
    assert timesteps[1] == ppo_run.timesteps  # the first run's two rows are kept
    assert len(timesteps) > 2 and timesteps == sorted(timesteps) and timesteps[-1] == result.timesteps


def test_dqn_trains_and_exports_its_greedy_policy(ray_session, tmp_path):
    dqn = {"train_batch_size_per_learner": 32, "num_steps_sampled_before_learning_starts": 64}
    config = TrainConfig(algo="dqn", stop_timesteps=256, eval_interval=10_000, algo_config=dqn, **TINY)
    result = train(config, tmp_path, progress=False)
    assert result.timesteps >= 256
    policy = load_policy(tmp_path)
    obs, _ = gym.make("SeqRec-v0", max_steps=20).reset(seed=0)
    probs = policy.action_distribution(obs)
    assert probs.max() == 1.0 and policy.act(obs) == int(probs.argmax())


def test_bad_arguments_and_slates_fail_before_ray_starts(tmp_path):
    import ray

    ray.shutdown()
    config = TrainConfig(algo="ppo", algo_config={"no_such_argument": 1}, **TINY)
    with pytest.raises(ValueError, match="no_such_argument"):
        train(config, tmp_path, progress=False)
    config = TrainConfig(algo="ppo", **{**TINY, "env_config": {"slate_size": 3}})
    with pytest.raises(ValueError, match="slate_size=1"):
        train(config, tmp_path, progress=False)
    assert not ray.is_initialized()


def test_mask_history_gives_history_items_zero_probability():
    from agents.rllib.policy import RLModulePolicy

    policy = RLModulePolicy.build(encoder_config={"d_model": 16, "n_layers": 1}, mask_history=True)
    env = gym.make_vec("SeqRec-v0", num_envs=4, vectorization_mode="vector_entry_point")
    obs, _ = env.reset(seed=0)
    probs = policy.action_distribution(obs)
    for row, items in enumerate(obs["item_ids"]):
        seen = items[items < policy.n_items]
        assert len(seen) and np.all(probs[row, seen] == 0.0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
