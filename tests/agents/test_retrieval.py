"""Retrieve-then-rank (`agents.retrieval`): exact per-cluster search, co-occurrence pairs, embeddings that
recover the world's categories, the wrapper env, the ranker's learning test, the `Policy` contract,
save/load, reproducibility, the registry / CLI and (marked `rllib`) the RLlib env creator."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")

from agents import load_policy  # noqa: E402
from agents.retrieval import (  # noqa: E402
    CandidateGenerator,
    ClusteredIndex,
    RetrievalConfig,
    RetrievalPolicy,
    make_retrieval_env,
    spherical_kmeans,
    train,
)
from agents.retrieval.embeddings import cooccurrence_svd, warmup_histories  # noqa: E402
from recsim_env.errors import ActionError, ArgumentError  # noqa: E402

SMALL_ENV = {"world_config": {"n_items": 2000}, "max_steps": 20}
TINY = dict(
    env_config=SMALL_ENV,
    warmup_users=3000,
    n_clusters=4,
    per_cluster=4,
    total_steps=256,
    num_envs=2,
    hidden=16,
    ppo_config={"n_steps": 64, "batch_size": 64, "n_epochs": 1},
)


def brute_force(embeddings, clusters, n_clusters, queries, m):
    out = []
    for q in queries:
        row = []
        for c in range(n_clusters):
            members = np.flatnonzero(clusters == c)
            scores = embeddings[members] @ q
            order = np.argsort(-scores, kind="stable")[:m]
            order = np.concatenate([order, np.zeros(m - len(order), np.int64)])  # padding: the first member
            row.append(members[order])
        out.append(np.concatenate(row))
    return np.array(out)


def test_clustered_index_is_exact_per_cluster_even_for_a_cluster_smaller_than_m():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(300, 8)).astype(np.float32)
    clusters = rng.integers(0, 3, size=300)
    clusters[clusters == 2] = 1
    clusters[:2] = 2  # cluster 2 has two items, fewer than m
    clusters[2] = -1  # left out of the index
    index = ClusteredIndex(embeddings, clusters, 3)
    queries = rng.normal(size=(5, 8)).astype(np.float32)
    ids, scores = index.search(queries, 4)
    assert ids.shape == scores.shape == (5, 12)
    np.testing.assert_array_equal(ids, brute_force(embeddings, clusters, 3, queries, 4))
    np.testing.assert_allclose(
        scores, np.einsum("bkd,bd->bk", embeddings[ids], queries), rtol=1e-5, atol=1e-5
    )
    assert 2 not in ids


def test_faiss_backend_matches_torch():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(500, 8)).astype(np.float32)
    clusters = rng.integers(0, 4, size=500)
    queries = rng.normal(size=(7, 8)).astype(np.float32)
    torch_ids, _ = ClusteredIndex(embeddings, clusters, 4, "torch").search(queries, 5)
    faiss_ids, _ = ClusteredIndex(embeddings, clusters, 4, "faiss").search(queries, 5)
    np.testing.assert_array_equal(torch_ids, faiss_ids)


def test_spherical_kmeans_separates_well_separated_directions():
    rng = np.random.default_rng(0)
    centres = np.eye(4, 8)
    truth = rng.integers(0, 4, size=400)
    vectors = centres[truth] + 0.05 * rng.normal(size=(400, 8))
    found = spherical_kmeans(vectors, 4, seed=0)
    for c in range(4):
        assert len(np.unique(found[truth == c])) == 1


def test_the_cooccurrence_embedding_recovers_the_world_s_categories_from_consumption_alone():
    from recsim_env.world import UserWorld, WorldConfig

    logs = warmup_histories(SMALL_ENV, 3000, seed=0)
    embeddings, summary = cooccurrence_svd(logs, dim=16, seed=0)
    assert summary["consumed_items"] > 1500
    np.testing.assert_array_equal(embeddings, cooccurrence_svd(logs, dim=16, seed=0)[0])
    category = UserWorld(WorldConfig(n_items=2000)).item_category
    seen = np.flatnonzero(np.linalg.norm(embeddings, axis=1) > 0)
    rng = np.random.default_rng(0)
    a, b = rng.choice(seen, 5000), rng.choice(seen, 5000)
    similarity = np.einsum("nd,nd->n", embeddings[a], embeddings[b])
    same = category[a] == category[b]
    # Items of one category are closer than items of two (measured: 0.19 against -0.02).
    assert similarity[same].mean() > similarity[~same].mean() + 0.1


@pytest.fixture(scope="module")
def trained():
    return train(RetrievalConfig(**TINY), progress=False)


@pytest.fixture(scope="module")
def small_obs():
    env = gym.make_vec("SeqRec-v0", num_envs=4, vectorization_mode="vector_entry_point", **SMALL_ENV)
    obs, _ = env.reset(seed=5)
    return obs


def test_the_wrapper_env_passes_check_env_and_two_same_seed_envs_agree(trained):
    from gymnasium.utils.env_checker import check_env

    policy, _ = trained
    env = make_retrieval_env(policy.generator, SMALL_ENV)
    check_env(env, skip_render_check=True)
    a, b = make_retrieval_env(policy.generator, SMALL_ENV), make_retrieval_env(policy.generator, SMALL_ENV)
    obs_a, _ = a.reset(seed=3)
    obs_b, _ = b.reset(seed=3)
    for step in range(10):
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        obs_a, ra, ta, tra, info_a = a.step(step % 16)
        obs_b, rb, tb, trb, info_b = b.step(step % 16)
        assert ra == rb and info_a["item"] == info_b["item"]
        assert info_a["item"] in info_a["candidates"]
        if ta or tra:
            break
    with pytest.raises(ActionError):
        a.step(16)


def test_policy_contract_single_and_batched(trained, small_obs):
    policy, info = trained
    assert isinstance(policy, RetrievalPolicy) and policy.n_items == 2000 and policy.slate_size == 1
    assert info["rl_steps"] >= 256 and info["indexed_items"] > 0
    probabilities = policy.action_distribution(small_obs)
    assert probabilities.shape == (4, 2000)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert ((probabilities > 0).sum(axis=1) <= 16).all()  # mass only on the k candidates
    actions = policy.act(small_obs, deterministic=True)
    assert actions.shape == (4,)
    assert (probabilities[np.arange(4), actions] == probabilities.max(axis=1)).all()
    single = {key: value[0] for key, value in small_obs.items()}
    assert isinstance(policy.act(single), int)
    assert policy.action_distribution(single).shape == (2000,)


def test_save_load_round_trip_gives_the_same_distribution(trained, small_obs, tmp_path):
    policy, _ = trained
    policy.save(tmp_path / "policy")
    loaded = load_policy(tmp_path / "policy")
    assert isinstance(loaded, RetrievalPolicy)
    np.testing.assert_array_equal(
        loaded.action_distribution(small_obs), policy.action_distribution(small_obs)
    )
    assert sorted(p.name for p in (tmp_path / "policy").iterdir()) == [
        "config.json", "index.safetensors", "manifest.json", "policy.json", "ranker.safetensors",
    ]  # fmt: skip


def test_training_is_reproducible_for_a_seed(trained, small_obs):
    again, _ = train(RetrievalConfig(**TINY), progress=False)
    first, _ = trained
    np.testing.assert_array_equal(again.generator.embeddings, first.generator.embeddings)
    np.testing.assert_array_equal(again.action_distribution(small_obs), first.action_distribution(small_obs))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n_clusters": 0}, "n_clusters"),
        ({"env_config": {"slate_size": 100}}, "slate_size"),
        ({"ppo_config": {"n_stepz": 3}}, "n_stepz"),
        ({"consumption_decay": 1.0}, "consumption_decay"),
        ({"index_backend": "annoy"}, "index_backend"),
    ],
)
def test_bad_configs_are_refused_naming_the_field(fields, message):
    with pytest.raises(ArgumentError, match=message):
        RetrievalConfig(**fields)


class PickTheMarkedCandidate(gym.Env):
    """k candidates of random features; exactly one has its `shown` column set, and choosing it pays 1.
    The best policy (always the marked one) earns 1 a step; a uniform one 1/k."""

    def __init__(self, k: int = 8, dim: int = 4) -> None:
        rng = np.random.default_rng(0)
        embeddings = rng.normal(size=(64, dim)).astype(np.float32)
        self.generator = CandidateGenerator(
            embeddings, np.ones(64), np.arange(64) % 2, n_clusters=2, per_cluster=k // 2, decay=0.85
        )
        self.observation_space = self.generator.observation_space
        self.action_space = gym.spaces.Discrete(k)
        self.k, self.width = k, dim + 6

    def _obs(self):
        candidates = self.np_random.normal(size=(self.k, self.width)).astype(np.float32)
        candidates[:, -2] = 0.0
        self.marked = int(self.np_random.integers(self.k))
        candidates[self.marked, -2] = 1.0
        user = self.np_random.normal(size=self.observation_space["user"].shape).astype(np.float32)
        return {"candidates": candidates, "user": user}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(int(action) == self.marked)
        self.t += 1
        return self._obs(), reward, False, self.t >= 10, {}


def marked_hit_rate(model, env: gym.Env, steps: int = 200) -> float:
    """Share of `steps` deterministic actions of an SB3 `model` that pick `env`'s marked candidate."""
    obs, _ = env.reset(seed=123)
    hits = 0.0
    for _ in range(steps):
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, _, _, _ = env.step(action)
        hits += reward
    return hits / steps


def test_the_ranker_learns_to_pick_the_best_candidate():
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from agents.retrieval.ranker import CandidateRankerPolicy

    torch.manual_seed(0)
    env = make_vec_env(PickTheMarkedCandidate, n_envs=4, seed=0)
    model = PPO(
        CandidateRankerPolicy, env, policy_kwargs={"hidden": 16}, n_steps=64, batch_size=128, n_epochs=4,
        learning_rate=3e-3, seed=0, verbose=0,
    )  # fmt: skip
    model.learn(6000)
    assert marked_hit_rate(model, PickTheMarkedCandidate()) > 0.9  # uniform: 1/8


def test_seqrec_train_agent_retrieval_and_evaluate_the_run(tmp_path):
    import typer
    from typer.testing import CliRunner

    from agents.cli import evaluate_command, train_command

    app = typer.Typer()
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    runner = CliRunner()
    config = {key: value for key, value in TINY.items() if key != "total_steps"} | {"total_steps": 128}
    result = runner.invoke(
        app,
        ["train", "--agent", "retrieval", "--out", str(tmp_path / "run"), "--algo-config", json.dumps(config),
         "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        ["evaluate", str(tmp_path / "run"), "--env-config", json.dumps(SMALL_ENV), "--episodes", "4", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output.strip().splitlines()[-1])
    assert stats["episodes"] == 4 and stats["policy"].startswith("retrieval")


@pytest.mark.rllib
def test_rllib_ppo_trains_on_the_wrapper_env_from_a_saved_policy(trained, tmp_path):
    pytest.importorskip("ray")
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.tune.registry import register_env

    from agents.retrieval import rllib_env_creator

    policy, _ = trained
    policy.save(tmp_path / "policy")
    register_env("SeqRecRetrieval", rllib_env_creator)
    config = (
        PPOConfig()
        .environment(
            "SeqRecRetrieval", env_config={"policy": str(tmp_path / "policy"), "env_config": SMALL_ENV}
        )
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .training(train_batch_size_per_learner=128, minibatch_size=64, num_epochs=1)
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        assert result["num_env_steps_sampled_lifetime"] >= 128
    finally:
        algo.stop()
        ray.shutdown()
