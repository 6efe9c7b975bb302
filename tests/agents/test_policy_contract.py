"""The one `Policy` contract test (`recsim_env.policies.Policy`), parametrised over every policy kind:
the reference policies, the oracles that read the hidden state, the world-knowing filters, the world's
logger and the trained agents that are cheap to build; the savable ones also round-trip `save`/`load`.

Every call passes `_extra(policy, state, rows)`: the hidden state of those users for a policy that
reads it, nothing for the others, as every rollout loop calls a policy (`act_slates`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents import SavablePolicy, load_policy
from agents.policy import MANIFEST_FILE
from recsim_env.envs.seqrec import SeqRecVectorEnv
from recsim_env.errors import ArgumentError, CheckpointError
from recsim_env.policies import Policy, act_slates, reads_user_state
from recsim_env.rollout import rollout
from tests.conftest import rewrite_manifest

N_ITEMS = 500


def _reference(name, slate_size=1):
    def make(world_logs):
        from recsim_env.policies import reference_policy
        from recsim_env.world import UserWorld

        return reference_policy(name, UserWorld(), slate_size)

    return make


def _world_logger(world_logs):
    from agents.baselines import WorldLoggerPolicy

    return WorldLoggerPolicy("epsilon-greedy", epsilon=0.3, seed=0)


def _tscac(world_logs):
    import torch

    from agents import tscac as T

    torch.manual_seed(0)
    config = T.TSCACConfig(d_model=8, n_layers=1, dropout=0.0, critic_steps=3, actor_steps=3, batch_size=32)
    return T.TSCACPolicy(T.Actor(config, n_items=N_ITEMS), config, N_ITEMS)


def _supervised(slate_size=1):
    def make(world_logs):
        from agents.supervised import SupervisedConfig, train

        encoder = {"d_model": 16, "n_layers": 1, "dropout": 0.0}
        config = SupervisedConfig(
            encoder_config=encoder, batch_size=64, device="cpu", epochs=1, slate_size=slate_size
        )
        policy, _ = train(config, world_logs, progress=False)
        return policy

    return make


def _baseline(name, slate_size=1):
    def make(world_logs):
        from agents.baselines import fit_baseline

        return fit_baseline(name, world_logs, slate_size=slate_size, seed=0)

    return make


def _sb3(algo):
    def make(world_logs):
        pytest.importorskip("stable_baselines3")
        import gymnasium as gym
        from stable_baselines3.common.env_util import make_vec_env

        from agents.training import TrainConfig
        from agents.training.sb3 import SB3Policy, build_model

        config = TrainConfig(
            algo=algo,
            num_envs=1,
            encoder_config={"d_model": 16, "n_layers": 1},
            algo_config={"learning_starts": 0} if algo == "dqn" else {},
        )
        env = make_vec_env(lambda: gym.make("SeqRec-v0"), n_envs=1, seed=0)
        return SB3Policy(build_model(config, env), algo, config)

    return make


def _rllib(algo):
    def make(world_logs):
        pytest.importorskip("ray")
        from agents.rllib.policy import RLModulePolicy

        return RLModulePolicy.build(
            algo=algo, encoder="sasrec", encoder_config={"d_model": 16, "n_layers": 1}
        )

    return make


def _encoder(world_logs):
    import torch

    from agents.encoder_policy import EncoderPolicy
    from recsim_env import encoders
    from recsim_env.encoders.checkpoint import Checkpoint

    torch.manual_seed(0)
    encoder = encoders.build("sasrec", {"n_items": N_ITEMS, "max_len": 20, "d_model": 16, "n_layers": 1})
    return EncoderPolicy(Checkpoint(encoder.eval(), list(range(N_ITEMS))), temperature=0.5)


def _dt4ier(world_logs):
    from agents.dt4ier import DT4IERConfig, train, trajectories_from_logs

    config = DT4IERConfig(steps=5, d_model=16, batch_size=16, seed=0)
    policy, _ = train(config, trajectories_from_logs(world_logs, config), progress=False)
    return policy


def _retrieval(algorithm, query="heuristic"):
    def make(world_logs):
        from agents.retrieval import RetrievalConfig, train

        tiny = dict(
            warmup_users=3000, n_clusters=4, per_cluster=4, total_steps=128, num_envs=2, hidden=16,
            ppo_config={"n_steps": 64, "batch_size": 64, "n_epochs": 1},
            dqn_config={"learning_starts": 32, "buffer_size": 500, "batch_size": 16, "target_update_interval": 50},
        )  # fmt: skip
        config = RetrievalConfig(env_config={"max_steps": 20}, algorithm=algorithm, query=query, **tiny)
        return train(config, progress=False)[0]

    return make


IMPLEMENTATIONS = {
    "uniform": _baseline("uniform"),
    "popularity": _baseline("popularity"),
    "greedy": _baseline("greedy"),
    "uniform-slate": _baseline("uniform", slate_size=3),
    "popularity-slate": _baseline("popularity", slate_size=3),
    "greedy-slate": _baseline("greedy", slate_size=3),
    "filter-myopic": _reference("filter-myopic"),
    "filter-farsighted": _reference("filter-farsighted"),
    "filter-farsighted-slate": _reference("filter-farsighted", slate_size=3),
    "myopic-oracle": _reference("myopic-oracle"),
    "farsighted-oracle": _reference("farsighted-oracle"),
    "myopic-oracle-slate": _reference("myopic-oracle", slate_size=3),
    "world-logger": _world_logger,
    "encoder": _encoder,
    "dt4ier": _dt4ier,
    "tscac": _tscac,
    "supervised": _supervised(),
    "supervised-slate": _supervised(slate_size=3),
    "sb3-ppo": _sb3("ppo"),
    "sb3-dqn": _sb3("dqn"),
    "retrieval-ppo": _retrieval("ppo"),
    "retrieval-dqn-learned-query": _retrieval("dqn", query="learned"),
    "rllib-ppo": pytest.param(_rllib("ppo"), marks=pytest.mark.rllib),
    "rllib-dqn": pytest.param(_rllib("dqn"), marks=pytest.mark.rllib),
}


@pytest.fixture(params=list(IMPLEMENTATIONS.values()), ids=list(IMPLEMENTATIONS))
def policy(request, world_logs) -> Policy:
    return request.param(world_logs)


@pytest.fixture(scope="module")
def batch():
    """(observations, hidden state) of 6 users of the world after a few random steps."""
    env = SeqRecVectorEnv(num_envs=6)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(3):
        obs, *_ = env.step(rng.integers(0, N_ITEMS, size=6))
    return {key: value.copy() for key, value in obs.items()}, env.user_state.rows(np.arange(6))


@pytest.fixture
def observations(batch):
    return batch[0]


def _extra(policy, state, rows=None):
    """The keyword arguments a rollout loop gives `policy`: users `rows` of `state`, if it reads them."""
    if not reads_user_state(policy):
        return {}
    return {"user_state": state if rows is None else state.rows(np.asarray(rows))}


def _one(obs, i=0):
    return {key: value[i] for key, value in obs.items()}


def test_is_a_policy(policy):
    assert isinstance(policy, Policy)
    assert policy.n_items == N_ITEMS and policy.slate_size >= 1
    assert isinstance(getattr(policy, "needs_user_state", False), bool)


def test_acts_on_single_and_batched_observations(policy, batch):
    observations, state = batch
    k = policy.slate_size
    action = policy.act(_one(observations), **_extra(policy, state, [0]))
    actions = policy.act(observations, **_extra(policy, state))
    n = observations["item_ids"].shape[0]
    if k == 1:
        assert isinstance(action, int) and 0 <= action < N_ITEMS
        assert actions.shape == (n,)
    else:
        assert action.shape == (k,)
        assert actions.shape == (n, k)
        assert all(len(set(row.tolist())) == k for row in actions)  # distinct items in a slate
    assert np.all((actions >= 0) & (actions < N_ITEMS))
    np.testing.assert_array_equal(
        act_slates(policy, observations, deterministic=True, user_state=state),
        np.asarray(policy.act(observations, deterministic=True, **_extra(policy, state))).reshape(n, k),
    )


def test_distribution_is_a_probability_vector(policy, batch):
    observations, state = batch
    probs = policy.action_distribution(observations, **_extra(policy, state))
    assert probs.shape == (observations["item_ids"].shape[0], N_ITEMS)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    single = policy.action_distribution(_one(observations, 2), **_extra(policy, state, [2]))
    assert single.shape == (N_ITEMS,)
    np.testing.assert_allclose(single, probs[2], atol=1e-6)


def test_deterministic_action_is_the_most_probable_item(policy, batch):
    observations, state = batch
    probs = policy.action_distribution(observations, **_extra(policy, state))
    first = act_slates(policy, observations, deterministic=True, user_state=state)[:, 0]
    np.testing.assert_array_equal(probs[np.arange(len(probs)), first], probs.max(axis=1))


def test_sampled_first_items_follow_the_distribution(policy, batch):
    observations, state = batch
    obs = _one(observations, 1)
    many = {key: np.repeat(value[None], 4000, axis=0) for key, value in obs.items()}
    first = act_slates(policy, many, user_state=state.rows(np.full(4000, 1)))[:, 0]
    frequencies = np.bincount(first, minlength=N_ITEMS) / len(first)
    # 4000 draws: a frequency's standard error is at most 0.008, so 0.04 is a 5-sigma bound.
    expected = policy.action_distribution(obs, **_extra(policy, state, [1]))
    assert np.abs(frequencies - expected).max() < 0.04


def test_sampling_is_reproducible_after_reseeding(policy, batch):
    observations, state = batch
    policy.seed(7)
    first = policy.act(observations, **_extra(policy, state))
    policy.seed(7)
    np.testing.assert_array_equal(first, policy.act(observations, **_extra(policy, state)))


def test_a_seeded_rollout_reproduces_whatever_the_policy_drew_before(policy, batch):
    observations, state = batch
    kwargs = dict(n_episodes=4, seed=5, num_envs=2, max_steps=6, slate_size=policy.slate_size)
    first = rollout(policy, **kwargs)
    policy.seed(123)
    act_slates(policy, observations, user_state=state)  # the rollout reseeds the policy: no effect
    assert rollout(policy, **kwargs) == first


def test_a_hidden_state_reader_refuses_a_call_without_it(policy, observations):
    if not reads_user_state(policy):
        pytest.skip("reads only the observation")
    with pytest.raises(ArgumentError, match="^user_state: .* reads the user's hidden state"):
        policy.act(observations)


def test_save_load_round_trip_keeps_actions_and_probabilities(policy, observations, tmp_path):
    if not isinstance(policy, SavablePolicy):
        pytest.skip("not a savable policy (rebuilt from its arguments)")
    policy.save(tmp_path / "saved")
    manifest = json.loads((tmp_path / "saved" / MANIFEST_FILE).read_text())
    assert set(manifest) == {"kind", "config"}
    artifact = json.loads((tmp_path / "saved" / "manifest.json").read_text())
    assert artifact["kind"] == "policy" and MANIFEST_FILE in artifact["files"]
    loaded = load_policy(tmp_path / "saved")
    assert type(loaded) is type(policy)
    np.testing.assert_allclose(
        loaded.action_distribution(observations), policy.action_distribution(observations), atol=1e-6
    )
    np.testing.assert_array_equal(
        loaded.act(observations, deterministic=True), policy.act(observations, deterministic=True)
    )


def test_the_reference_kinds_are_not_savable_and_the_trained_ones_are(world_logs):
    from agents.baselines import fit_baseline

    assert isinstance(fit_baseline("greedy", world_logs), SavablePolicy)
    assert not isinstance(_reference("farsighted-oracle")(world_logs), SavablePolicy)


def test_load_policy_reports_a_missing_manifest(tmp_path):
    with pytest.raises(CheckpointError, match="manifest.json: missing"):
        load_policy(tmp_path)


def test_load_policy_rejects_an_unknown_kind(tmp_path):
    from agents.policy import save_policy

    save_policy(
        tmp_path / "p", "uniform", {"name": "uniform", "n_items": 5, "slate_size": 1, "prior_strength": 1.0}
    )
    (tmp_path / "p" / MANIFEST_FILE).write_text(json.dumps({"kind": "nope", "config": {}}))
    rewrite_manifest(tmp_path / "p")
    with pytest.raises(CheckpointError, match="unknown policy kind 'nope'"):
        load_policy(tmp_path / "p")


def test_a_format_1_policy_is_refused_with_the_convert_command(tmp_path):
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"kind": "uniform", "format_version": 1, "config": {}}))
    with pytest.raises(CheckpointError, match="format 1.*seqrec convert"):
        load_policy(tmp_path)


def test_world_logger_policy_acts_as_the_logs_were_written(observations):
    from agents.baselines import WorldLoggerPolicy

    logger = WorldLoggerPolicy("epsilon-greedy", epsilon=0.3, seed=0)
    probs = logger.action_distribution(observations)
    assert probs.shape == (6, N_ITEMS) and np.allclose(probs.sum(axis=1), 1.0)
    top = probs[0].argmax()
    assert probs[0, top] == pytest.approx(0.7 + 0.3 / N_ITEMS)  # the greedy item, plus its epsilon share
    assert logger.act(_one(observations), deterministic=True) == top
    first = logger.act(observations)
    logger.seed(0)
    np.testing.assert_array_equal(logger.act(observations), first)
