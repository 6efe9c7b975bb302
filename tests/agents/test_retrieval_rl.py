"""Retrieve-then-rank's DQN ranker, learned (Wolpertinger) query and slates (`agents.retrieval`):
training, save/load, slates of distinct items, a DQN learning test, and config validation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")

import torch  # noqa: E402

from agents import load_policy  # noqa: E402
from agents.retrieval import RetrievalConfig, RetrievalPolicy, make_retrieval_env, train  # noqa: E402
from agents.retrieval.candidates import fill_slates  # noqa: E402
from recsim_env.errors import ArgumentError  # noqa: E402

SMALL_ENV = {"world_config": {"n_items": 2000}, "max_steps": 20}
TINY = dict(
    warmup_users=3000,
    n_clusters=4,
    per_cluster=4,
    total_steps=384,
    num_envs=2,
    hidden=16,
    ppo_config={"n_steps": 64, "batch_size": 64, "n_epochs": 1},
    dqn_config={"learning_starts": 64, "buffer_size": 2000, "batch_size": 32, "target_update_interval": 100},
)


def small_obs(n: int = 6, **env):
    vec = gym.make_vec("SeqRec-v0", num_envs=n, vectorization_mode="vector_entry_point", **SMALL_ENV, **env)
    obs, _ = vec.reset(seed=5)
    return obs


@pytest.fixture(scope="module")
def dqn():
    return train(RetrievalConfig(env_config=SMALL_ENV, algorithm="dqn", **TINY), progress=False)


@pytest.fixture(scope="module")
def learned():
    return train(RetrievalConfig(env_config=SMALL_ENV, query="learned", **TINY), progress=False)


@pytest.fixture(scope="module")
def slate():
    env = {**SMALL_ENV, "slate_size": 3}
    return train(RetrievalConfig(env_config=env, query="learned", **TINY), progress=False)


def test_dqn_trains_and_round_trips_with_identical_actions(dqn, tmp_path):
    policy, info = dqn
    assert info["algorithm"] == "dqn" and info["rl_steps"] >= 384
    # The TD updates moved the Q-network's last scoring layer off its zero start.
    assert policy.ranker.q_net.features_extractor.scorer[-1].weight.abs().sum() > 0
    obs = small_obs()
    distribution = policy.action_distribution(obs)
    np.testing.assert_array_equal(distribution.sum(axis=1), 1.0)
    assert set(np.unique(distribution)) <= {0.0, 1.0}  # the greedy policy
    actions = policy.act(obs, deterministic=True)
    np.testing.assert_array_equal(policy.act(obs), actions)  # DQN acts greedily
    assert (distribution[np.arange(6), actions] == 1.0).all()
    policy.save(tmp_path / "dqn")
    loaded = load_policy(tmp_path / "dqn")
    assert isinstance(loaded, RetrievalPolicy) and loaded.config.algorithm == "dqn"
    np.testing.assert_array_equal(loaded.act(obs, deterministic=True), actions)
    np.testing.assert_array_equal(loaded.candidate_scores(obs)[1], policy.candidate_scores(obs)[1])


def test_dqn_training_is_reproducible_for_a_seed(dqn):
    again, _ = train(RetrievalConfig(env_config=SMALL_ENV, algorithm="dqn", **TINY), progress=False)
    obs = small_obs()
    np.testing.assert_array_equal(again.candidate_scores(obs)[1], dqn[0].candidate_scores(obs)[1])


def test_the_learned_query_is_trained_changes_the_candidates_and_round_trips(learned, tmp_path):
    policy, _ = learned
    actor = policy.ranker.features_extractor.query_actor
    assert actor is not None and actor[-1].weight.abs().sum() > 0  # PPO's gradient reached the actor
    obs = small_obs()
    with torch.no_grad():  # push the proto-action away from the heuristic query: other candidates
        actor[-1].bias.copy_(torch.linspace(-3.0, 3.0, actor[-1].bias.numel()))
    heuristic_ids, _ = policy.generator(obs)
    learned_ids, _ = policy.candidate_scores(obs)
    assert (learned_ids != heuristic_ids).any()
    user = policy.generator(obs)[1]["user"]
    heuristic, queries = user[:, : policy.generator.dim], policy.scorer.query(user)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-5)
    # ||q_raw - h|| <= r for a unit h: q lies within the angle arcsin(r) of h, and differs from it.
    cosine = np.einsum("nd,nd->n", queries, heuristic)
    radius = policy.config.query_radius
    assert (cosine >= np.sqrt(1 - radius**2) - 1e-5).all() and (cosine < 1 - 1e-4).any()
    policy.save(tmp_path / "learned")
    loaded = load_policy(tmp_path / "learned")
    np.testing.assert_array_equal(loaded.candidate_scores(obs)[0], learned_ids)
    np.testing.assert_array_equal(loaded.action_distribution(obs), policy.action_distribution(obs))


def test_a_fresh_learned_query_starts_at_the_heuristic_candidates():
    config = RetrievalConfig(env_config=SMALL_ENV, query="learned", **{**TINY, "total_steps": 1})
    from agents.retrieval.policy import build_ranker
    from agents.retrieval.train import build_generator

    generator, _ = build_generator(config)
    policy = RetrievalPolicy(generator, build_ranker(generator, config), config)
    obs = small_obs()
    np.testing.assert_array_equal(policy.candidate_scores(obs)[0], generator(obs)[0])


def test_slates_are_k_distinct_candidates_and_evaluate_in_the_slate_world(slate, tmp_path):
    from recsim_env.rollout import rollout

    policy, _ = slate
    assert policy.slate_size == 3
    obs = small_obs(slate_size=3)
    ids, scores = policy.candidate_scores(obs)
    for deterministic in (True, False):
        slates = policy.act(obs, deterministic=deterministic)
        assert slates.shape == (6, 3)
        assert all(len(set(row)) == 3 for row in slates.tolist())
        assert all(set(row) <= set(c) for row, c in zip(slates.tolist(), ids.tolist(), strict=True))
    best = policy.act(obs, deterministic=True)
    # Deterministic: the 3 best-scored distinct candidates, best first.
    for b in range(6):
        order = list(dict.fromkeys(ids[b, np.argsort(-scores[b], kind="stable")].tolist()))[:3]
        assert best[b].tolist() == order
    single = policy.act({key: value[0] for key, value in obs.items()}, deterministic=True)
    assert single.shape == (3,)
    # Stochastic first positions follow action_distribution (a Plackett-Luce draw's first item).
    many = {key: np.repeat(value[:1], 4000, axis=0) for key, value in obs.items()}
    first = policy.act(many)[:, 0]
    frequency = np.bincount(first, minlength=2000) / 4000
    np.testing.assert_allclose(frequency, policy.action_distribution(obs)[0], atol=0.03)
    stats = rollout(policy, n_episodes=4, seed=1, deterministic=True, **SMALL_ENV, slate_size=3)
    assert stats.session_length > 0
    policy.save(tmp_path / "slate")
    np.testing.assert_array_equal(load_policy(tmp_path / "slate").act(obs, deterministic=True), best)


def test_the_slate_wrapper_env_fills_by_the_scorer_and_checks(slate):
    from gymnasium.utils.env_checker import check_env

    policy, _ = slate
    env = make_retrieval_env(policy.generator, {**SMALL_ENV, "slate_size": 3}, policy.scorer)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=2)
    _, _, _, _, info = env.step(5)
    assert info["slate"][0] == info["item"] == info["candidates"][5] and len(set(info["slate"])) == 3


def test_fill_slates_puts_the_choice_first_then_the_best_distinct_others():
    ids = np.array([[7, 7, 3, 9, 4], [1, 2, 3, 4, 5]])
    scores = np.array([[0.0, 5.0, 4.0, 1.0, 3.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    np.testing.assert_array_equal(fill_slates(ids, [3, 4], scores, 3), [[9, 7, 3], [5, 1, 2]])
    with pytest.raises(ArgumentError, match="distinct"):
        fill_slates(np.array([[1, 1, 2]]), [0], np.zeros((1, 3)), 3)


def flat_marked_candidate_env() -> gym.Env:
    """`test_retrieval.PickTheMarkedCandidate` flattened to one Box, as the DQN sees its observations."""
    from tests.agents.test_retrieval import PickTheMarkedCandidate

    return gym.wrappers.FlattenObservation(PickTheMarkedCandidate())


def test_the_dqn_ranker_learns_to_pick_the_best_candidate():
    from stable_baselines3.common.env_util import make_vec_env

    from agents.retrieval.dqn import CandidateDQN, CandidateDQNPolicy
    from tests.agents.test_retrieval import marked_hit_rate

    torch.manual_seed(0)
    env = make_vec_env(flat_marked_candidate_env, n_envs=4, seed=0)
    user_width = env.get_attr("observation_space", 0)[0].shape[0] - 8 * 10  # k candidates of dim + 6 columns
    model = CandidateDQN(
        CandidateDQNPolicy, env, policy_kwargs={"user_width": user_width, "hidden": 16}, learning_rate=1e-3,
        buffer_size=5000, learning_starts=200, batch_size=64, gamma=0.5, train_freq=1,
        target_update_interval=200, exploration_fraction=0.3, exploration_final_eps=0.05, n_steps=2,
        seed=0, verbose=0,
    )  # fmt: skip
    model.learn(6000)
    assert marked_hit_rate(model, flat_marked_candidate_env()) > 0.9  # uniform: 1/8


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"algorithm": "a2c"}, "algorithm"),
        ({"query": "random"}, "query"),
        ({"query_radius": 0.0}, "query_radius"),
        ({"dqn_config": {"buffer_sise": 10}}, "buffer_sise"),
        ({"dqn_config": {"n_steps": 0}}, "n_steps"),
        ({"dqn_config": {"double_q": 1}}, "double_q"),
        ({"dqn_config": []}, "dqn_config"),
        ({"env_config": {"slate_size": 0}}, "slate_size"),
        ({"env_config": {"slate_size": 65}}, "slate_size"),
    ],
)
def test_bad_configs_are_refused_naming_the_field(fields, message):
    with pytest.raises(ArgumentError, match=message):
        RetrievalConfig(**fields)


def test_the_rllib_env_creator_uses_a_saved_policy_s_learned_query_and_slate_order(slate, tmp_path):
    from agents.retrieval import rllib_env_creator

    policy, _ = slate
    policy.save(tmp_path / "slate")
    env = rllib_env_creator({"policy": str(tmp_path / "slate"), "env_config": {**SMALL_ENV, "slate_size": 3}})
    assert env.observation_space.shape == (16 * (policy.generator.dim + 6) + policy.generator.dim + 4,)
    env.reset(seed=4)
    _, _, _, _, info = env.step(0)
    assert len(set(info["slate"])) == 3 and info["slate"][0] == info["item"]
    assert env.env.scorer is not None and env.env.scorer.learned_query


def test_seqrec_train_agent_retrieval_dqn_with_slates_and_evaluate_the_run(tmp_path):
    import json

    import typer
    from typer.testing import CliRunner

    from agents.cli import evaluate_command, train_command

    app = typer.Typer()
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    runner = CliRunner()
    env = {**SMALL_ENV, "slate_size": 2}
    config = {**TINY, "env_config": env, "algorithm": "dqn", "query": "learned", "total_steps": 128}
    result = runner.invoke(
        app,
        ["train", "--agent", "retrieval", "--out", str(tmp_path / "run"), "--algo-config", json.dumps(config),
         "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    policy = load_policy(tmp_path / "run")
    assert policy.config.algorithm == "dqn" and policy.slate_size == 2
    result = runner.invoke(
        app, ["evaluate", str(tmp_path / "run"), "--env-config", json.dumps(env), "--episodes", "4", "--json"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output.strip().splitlines()[-1])
    assert stats["episodes"] == 4 and stats["policy"].startswith("retrieval dqn learned")
