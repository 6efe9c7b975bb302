"""RLlib backend (new API stack): two PPO iterations end to end, the run layout (policy/, state/,
checkpoint/), checkpoint -> restore, --resume from state/ (and with trust_checkpoint), DQN, masking."""

from __future__ import annotations

import csv
import shutil

import gymnasium as gym
import numpy as np
import pytest

from tests.optional import import_extra  # noqa: E402

import_extra("ray", extra="rllib")

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


def test_the_run_directory_holds_a_policy_artifact_a_state_and_rllib_s_checkpoint(ppo_run):
    from agents.rllib.policy import RLModulePolicy
    from agents.rllib.train import MODULE_STATE_FILE
    from agents.training.config import open_training_state
    from recsim_env.checkpoint import open_artifact

    out = ppo_run.out
    policy = open_artifact(out / "policy", "policy", required=("policy.json", "weights.safetensors"))
    assert set(policy.files) == {"policy.json", "weights.safetensors"}
    state, config, progress = open_training_state(out)
    assert set(state.files) == {"train_config.json", "progress.json", MODULE_STATE_FILE}
    assert progress == {"timesteps": ppo_run.timesteps}
    assert config.backend == "rllib" and config.algo == "ppo"
    assert (out / "checkpoint").is_dir()
    assert not list(out.glob("*.pt")) and not list(out.rglob("module_state.pt"))
    # The policy's weights are the learner's module state (PPO has no target network).
    weights = policy.read_tensors("weights.safetensors")
    module_state = state.read_tensors(MODULE_STATE_FILE)
    assert set(weights) == set(module_state)
    for key in weights:
        np.testing.assert_array_equal(weights[key], module_state[key])
    assert isinstance(RLModulePolicy.load(out), RLModulePolicy)
    assert isinstance(load_policy(out / "policy"), RLModulePolicy)


def test_checkpoint_restores_to_the_same_deterministic_action(ppo_run):
    import torch
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.core.columns import Columns

    exported = load_policy(ppo_run.out)
    restored = Algorithm.from_checkpoint(str(ppo_run.out / "checkpoint"))  # our own run: trusted
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


def test_saved_module_state_reaches_the_learner_and_the_env_runners(ppo_run):
    """The untrusted resume path: a rebuilt algorithm, the state loaded strictly, weights synced."""
    from agents.rllib.train import (
        MODULE_STATE_FILE,
        build_algorithm_config,
        learner_module_state,
        load_module_state,
    )
    from agents.training.config import open_training_state

    state, config, _ = open_training_state(ppo_run.out)
    saved = state.read_tensors(MODULE_STATE_FILE, framework="pt")
    algorithm = build_algorithm_config(config).build_algo()
    try:
        before = learner_module_state(algorithm)
        assert any(
            not np.array_equal(before[key], saved[key].numpy()) for key in saved
        )  # a fresh init differs
        load_module_state(algorithm, saved, where="test")
        learner = learner_module_state(algorithm)
        runner = algorithm.get_module().state_dict()
        for key, value in saved.items():
            np.testing.assert_array_equal(learner[key], value.numpy())
            np.testing.assert_array_equal(runner[key].cpu().numpy(), value.numpy())
        # A state that does not fit (a missing key) is refused, naming where it came from.
        from recsim_env.errors import CheckpointError

        partial = dict(saved)
        partial.pop(next(iter(partial)))
        with pytest.raises(CheckpointError, match="state.safetensors.*does not fit"):
            load_module_state(algorithm, partial, where=str(state.root / MODULE_STATE_FILE))
    finally:
        algorithm.stop()


def test_resume_continues_the_step_count(ppo_run, tmp_path):
    from agents.training.config import open_training_state

    out = tmp_path / "copy"
    shutil.copytree(ppo_run.out, out)
    config = TrainConfig(**{**TrainConfig.load(out).to_dict(), "stop_timesteps": 1024})
    result = train(config, out, resume=True, progress=False)
    assert result.timesteps >= 1024
    assert open_training_state(out)[2]["timesteps"] == result.timesteps
    with open(out / "metrics.csv") as handle:
        timesteps = [int(row["timesteps"]) for row in csv.DictReader(handle)]
    assert timesteps[1] == ppo_run.timesteps  # the first run's two rows are kept
    assert len(timesteps) > 2 and timesteps == sorted(timesteps) and timesteps[-1] == result.timesteps


def test_resume_with_trust_checkpoint_restores_rllib_s_checkpoint(ppo_run, tmp_path):
    from agents.training.config import open_training_state

    out = tmp_path / "copy"
    shutil.copytree(ppo_run.out, out)
    config = TrainConfig(**{**TrainConfig.load(out).to_dict(), "stop_timesteps": 768})
    result = train(config, out, resume=True, progress=False, trust_checkpoint=True)
    assert result.timesteps >= 768
    assert open_training_state(out)[2]["timesteps"] == result.timesteps
    with pytest.raises(ValueError, match="resume"):
        train(config, out, progress=False, trust_checkpoint=True)


def test_dqn_trains_exports_its_greedy_policy_and_resumes_with_its_target_network(ray_session, tmp_path):
    from agents.rllib.train import MODULE_STATE_FILE
    from agents.training.config import open_training_state, save_training_state

    dqn = {"train_batch_size_per_learner": 32, "num_steps_sampled_before_learning_starts": 64}
    config = TrainConfig(algo="dqn", stop_timesteps=256, eval_interval=10_000, algo_config=dqn, **TINY)
    result = train(config, tmp_path, progress=False)
    assert result.timesteps >= 256
    policy = load_policy(tmp_path)
    obs, _ = gym.make("SeqRec-v0", max_steps=20).reset(seed=0)
    probs = policy.action_distribution(obs)
    assert probs.max() == 1.0 and policy.act(obs) == int(probs.argmax())
    state, _, progress = open_training_state(tmp_path)
    module_state = state.read_tensors(MODULE_STATE_FILE)
    assert any(key.startswith("_target") for key in module_state)  # the full state: target network included
    assert not any(key.startswith("_target") for key in policy.module.state_dict())

    # Resume (untrusted) from the state: the target network is loaded too (strictly).
    resumed = train(
        TrainConfig(**{**config.to_dict(), "stop_timesteps": 320}), tmp_path, resume=True, progress=False
    )
    assert resumed.timesteps >= 320

    # A run converted from format 1 has no module state: it resumes from its policy's weights.
    save_training_state(tmp_path, config, {"timesteps": resumed.timesteps})
    again = train(
        TrainConfig(**{**config.to_dict(), "stop_timesteps": 384}), tmp_path, resume=True, progress=False
    )
    assert again.timesteps >= 384
    assert open_training_state(tmp_path)[0].has(MODULE_STATE_FILE)


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


def test_a_ray_address_where_no_cluster_answers_is_refused_naming_it(tmp_path, monkeypatch):
    import socket

    import ray

    from recsim_env.errors import ArgumentError

    ray.shutdown()
    with socket.socket() as handle:  # a port that was free a moment ago: nothing listens there
        handle.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{handle.getsockname()[1]}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    config = TrainConfig(algo="ppo", stop_timesteps=256, **TINY)
    with pytest.raises(ArgumentError, match=rf"RAY_ADDRESS='{address}': no Ray cluster answers there"):
        train(config, tmp_path, progress=False)
    assert not ray.is_initialized()
    from agents.rllib.train import check_ray_address

    check_ray_address("auto")  # left to Ray
    with pytest.raises(ArgumentError, match="RAY_ADDRESS='head:six': expected HOST:PORT"):
        check_ray_address("head:six")


def test_policy_round_trips_through_its_artifact_and_refuses_a_mismatch(tmp_path):
    import json

    from agents.rllib.module import DEFAULT_MODEL_CONFIG, MODULES
    from agents.rllib.policy import ALGOS, MODULE_CONFIG_FIELDS, RLModulePolicy
    from recsim_env.errors import CheckpointError
    from tests.conftest import rewrite_manifest

    assert set(ALGOS) == set(MODULES) and set(MODULE_CONFIG_FIELDS) == set(DEFAULT_MODEL_CONFIG)
    policy = RLModulePolicy.build(encoder_config={"d_model": 16, "n_layers": 1}, seed=3)
    policy.save(tmp_path / "p")
    assert not list((tmp_path / "p").glob("*.pt"))
    loaded = load_policy(tmp_path / "p")
    obs, _ = gym.make("SeqRec-v0").reset(seed=0)
    np.testing.assert_allclose(loaded.action_distribution(obs), policy.action_distribution(obs))
    # A config whose module is wider than the weights: refused, naming the weights file.
    manifest = json.loads((tmp_path / "p" / "policy.json").read_text())
    manifest["config"]["module_config"]["hidden_dim"] = 64
    (tmp_path / "p" / "policy.json").write_text(json.dumps(manifest))
    rewrite_manifest(tmp_path / "p")
    with pytest.raises(CheckpointError, match=r"weights\.safetensors: weights do not fit"):
        load_policy(tmp_path / "p")


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
