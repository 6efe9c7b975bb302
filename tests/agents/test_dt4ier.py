"""DT4IER (agents/dt4ier.py): causality, the reward embedding, balancing, data, the contract, the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from agents import Policy, load_policy
from agents import dt4ier as D
from agents.cli import evaluate_command, train_command
from recsim_env.errors import DataError
from recsim_env.rollout import rollout
from tests.conftest import rewrite_manifest

ML100K = Path(__file__).resolve().parents[2] / "../shared/data/ml-100k"
TINY = dict(d_model=8, context_len=4, steps=4, balance_steps=4, batch_size=16, dropout=0.0, n_negatives=8)


@pytest.fixture(scope="module")
def logs():
    from recsim_env.world.logging import log_world

    return log_world("epsilon-greedy", steps=3000, seed=0, epsilon=0.3, num_envs=16, progress=False)


@pytest.fixture(scope="module")
def data(logs):
    return D.trajectories_from_logs(logs, D.DT4IERConfig(**TINY))


@pytest.fixture(scope="module")
def policy(data):
    policy, _ = D.train(D.DT4IERConfig(**TINY), data, progress=False)
    return policy


# ---------------------------------------------------------------------------------------------- pieces
def test_multi_reward_embedding_is_a_softmax_mixture_of_meta_embeddings():
    torch.manual_seed(0)
    embedding = D.RewardEmbedding(d_model=12, n_buckets=5)
    returns = torch.randn(3, 7, 2)
    weights = embedding.bucket_weights(returns)
    assert weights.shape == (3, 7, 5)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 7))
    out = embedding(returns)
    assert out.shape == (3, 7, 12)
    torch.testing.assert_close(out, torch.einsum("ckb,bd->ckd", weights, embedding.meta))
    assert not torch.allclose(out[0, 0], out[0, 1])  # different returns, different tokens


def test_contrastive_loss_matches_a_hand_computed_info_nce():
    predicted = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    positive = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    negatives = torch.tensor([[[0.0, 1.0], [1.0, 1.0]], [[0.0, -1.0], [1.0, 0.0]]])  # per row
    tau = 0.5
    # row 0: cos = 1 (positive), 0 and 1/sqrt(2); row 1: cos = 1/sqrt(2), -1 and 0
    r = 2**-0.5
    expected = np.mean(
        [
            -np.log(np.exp(1 / tau) / (np.exp(1 / tau) + np.exp(0.0) + np.exp(r / tau))),
            -np.log(np.exp(r / tau) / (np.exp(r / tau) + np.exp(-1 / tau) + np.exp(0.0))),
        ]
    )
    loss = D.contrastive_loss(predicted, positive, negatives, tau)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    shared = D.contrastive_loss(predicted, positive, negatives[:1], tau)  # [1, Q, D]: the same for every row
    assert float(shared) != pytest.approx(float(loss))
    # a negative that is the positive item itself is left out
    same = torch.tensor([[False, True], [False, False]])
    left_out = D.contrastive_loss(predicted, positive, negatives, tau, same)
    row0 = -np.log(np.exp(1 / tau) / (np.exp(1 / tau) + np.exp(0.0)))
    row1 = -np.log(np.exp(r / tau) / (np.exp(r / tau) + np.exp(-1 / tau) + np.exp(0.0)))
    assert float(left_out) == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_the_ablations_train_on_the_same_minibatches(data):
    """The contrastive negatives draw from a generator of their own: with a vanishing alpha, DT4IER's
    training curve is the ablation-without-the-term's (common random numbers across variants)."""
    curves = {}
    for variant, negatives in (("no_contrastive", "items"), ("dt4ier", "items"), ("dt4ier", "returns")):
        config = D.DT4IERConfig(
            **{**TINY, "steps": 6, "variant": variant, "alpha": 1e-9, "contrastive_negatives": negatives}
        )
        curve = curves.setdefault((variant, negatives), [])
        D.fit(
            config, data, progress=False, on_step=lambda step, losses, curve=curve: curve.append(losses["ce"])
        )
    reference = curves["no_contrastive", "items"]
    assert curves["dt4ier", "items"] == pytest.approx(reference, rel=1e-5)
    assert curves["dt4ier", "returns"] == pytest.approx(reference, rel=1e-5)


@pytest.mark.parametrize("negatives", ["returns", "items"])
def test_the_contrastive_term_is_trained_with_either_kind_of_negatives(negatives, data):
    config = D.DT4IERConfig(**{**TINY, "steps": 3, "contrastive_negatives": negatives, "negative_prompts": 2})
    assert data.negative.any()
    recorded = []
    model, _, stats = D.fit(
        config, data, progress=False, on_step=lambda step, losses: recorded.append(losses)
    )
    assert all(r["contrastive"] > 0 for r in recorded)
    assert stats["final_contrastive"] > 0


def test_balancing_loss_matches_a_hand_computed_value():
    weights = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    returns = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    # Row 1: w R = (0.5, 0.75): -(1.25) + 0.5 * 0.25 = -1.125; row 2: (0.5, 1.5): -2 + 0.5 * 1 = -1.5.
    loss = D.balancing_loss(weights, returns, gamma=0.5)
    assert float(loss) == pytest.approx((-1.125 - 1.5) / 2)
    net = D.BalancingNet(n_attributes=3)
    w = net(torch.randn(4, 3))
    assert w.shape == (4, 2)
    torch.testing.assert_close(w.sum(-1), torch.ones(4))


def test_the_prediction_for_a_t_never_sees_a_t_or_anything_after_it():
    torch.manual_seed(0)
    config = D.DT4IERConfig(d_model=16, context_len=5, n_layers=2, dropout=0.0)
    model = D.DecisionTransformer(config, n_items=30, n_feedback=2).eval()
    b, k, t = 3, 5, 2
    states = torch.randn(b, k, 16)
    actions = torch.randint(0, 30, (b, k))
    prompts = torch.rand(b, k, 2)
    valid = torch.ones(b, k, dtype=torch.bool)
    valid[0, :2] = False  # a short trajectory, left-padded
    reference = model.predict(states, actions, prompts, valid)

    changed = (states.clone(), actions.clone(), prompts.clone())
    changed[1][:, t:] = (actions[:, t:] + 7) % 30  # a_t and every later action
    changed[0][:, t + 1 :] += torch.randn(b, k - t - 1, 16)  # later states
    changed[2][:, t + 1 :] += 1.0  # later returns-to-go
    after = model.predict(*changed, valid)
    torch.testing.assert_close(after[:, : t + 1], reference[:, : t + 1], rtol=0, atol=0)
    assert not torch.allclose(after[:, t + 1 :], reference[:, t + 1 :])

    earlier = actions.clone()
    earlier[:, t - 1] = (actions[:, t - 1] + 3) % 30  # a_{t-1}: seen by the prediction of a_t
    assert not torch.allclose(model.predict(states, earlier, prompts, valid)[1:, t], reference[1:, t])
    returns = prompts.clone()
    returns[:, t] += 1.0  # R_t: seen too
    assert not torch.allclose(model.predict(states, actions, returns, valid)[1:, t], reference[1:, t])
    padded = states.clone()
    padded[0, :2] += 5.0  # padding steps are never attended to
    torch.testing.assert_close(model.predict(padded, actions, prompts, valid)[0], reference[0])


# ---------------------------------------------------------------------------------------------- data
@pytest.mark.parametrize("horizon", ["session", "trajectory"])
def test_trajectories_hold_undiscounted_two_d_returns_to_go(logs, horizon):
    data = D.trajectories_from_logs(logs, D.DT4IERConfig(**TINY, return_horizon=horizon))
    frame = logs.frame
    assert len(data) == len(frame)
    np.testing.assert_array_equal(data.reward[:, 0], frame["click"].to_numpy())
    sessions = frame["session_id"].to_numpy()
    users = frame["user_id"].to_numpy()
    new_user = np.r_[True, users[1:] != users[:-1]]
    np.testing.assert_array_equal(
        data.first,
        new_user | np.r_[True, sessions[1:] != sessions[:-1]] if horizon == "session" else new_user,
    )
    first = np.flatnonzero(data.first)
    for start, stop in zip(first, np.r_[first[1:], len(data)], strict=True):
        np.testing.assert_allclose(data.rtg[start], data.reward[start:stop].sum(axis=0))
        assert (np.diff(data.rtg[start:stop], axis=0) <= 1e-12).all()  # never increases
        np.testing.assert_allclose(data.rtg[stop - 1], data.reward[stop - 1])
    np.testing.assert_array_equal(data.start, np.flatnonzero(new_user)[np.cumsum(new_user) - 1])
    # Retention 1 / (1 + gap) at each session end whose user came back, their mean at a user's last
    # session end (the gap is censored), 0 elsewhere.
    end = np.r_[sessions[1:] != sessions[:-1], True]
    returned = end & np.r_[users[1:] == users[:-1], False]
    assert (data.reward[returned, 1] > 0).all() and (data.reward[returned, 1] <= 1).all()
    np.testing.assert_allclose(data.reward[end & ~returned, 1], data.reward[returned, 1].mean())
    assert (data.reward[~end, 1] == 0).all()
    assert data.negative.any() and not data.negative.all()


def test_logs_of_multi_item_slates_are_refused_naming_the_row():
    from recsim_env.world.logging import log_world

    slates = log_world("uniform", steps=200, seed=0, slate_size=2, progress=False)
    with pytest.raises(
        DataError, match="column 'position' is non-zero at row 2; DT4IER needs one-item slates"
    ):
        D.trajectories_from_logs(slates, D.DT4IERConfig(**TINY))


def test_ml100k_rewards_are_ratings_of_4_or_more_and_returns_within_sessions():
    if not ML100K.is_dir():
        pytest.skip(f"{ML100K} is absent (the shared ml-100k copy)")
    from recsim_env.data import load

    data = load(ML100K).select_users(np.arange(40))
    trajectories = D.trajectories_from_logs(data, D.DT4IERConfig(**TINY))
    assert str(trajectories.immediate) == "rating>=4"
    np.testing.assert_array_equal(trajectories.reward[:, 0], data.frame["rating"].to_numpy() >= 4)
    assert (trajectories.reward[:, 1] > 0).any()  # some users came back after a gap of more than an hour


# ---------------------------------------------------------------------------------------------- the policy
def test_a_few_cpu_steps_give_a_policy_that_acts_in_seqrec(policy, observations):
    assert isinstance(policy, Policy)
    probs = policy.action_distribution(observations)
    assert probs.shape == (6, 500)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    single = {key: value[0] for key, value in observations.items()}
    assert isinstance(policy.act(single), int)
    assert policy.act(observations).shape == (6,)
    assert (policy.act(observations, deterministic=True) == probs.argmax(axis=1)).all()
    stats = rollout(policy, n_episodes=4, seed=0, max_steps=10, sessions_per_episode=2)
    assert stats.episodes == 4 and 0.0 <= stats.click_rate <= 1.0


def test_return_to_go_falls_with_the_rewards_read_from_observations(policy):
    import gymnasium as gym

    env = gym.make_vec("SeqRec-v0", num_envs=3, vectorization_mode="vector_entry_point", max_steps=5)
    obs, _ = env.reset(seed=1)
    policy.seed(0)
    obtained = np.zeros(3)
    for _ in range(4):
        actions = policy.act(obs)
        obs, _, terminated, truncated, info = env.step(actions)
        obtained += info["feedback"][:, 0]
        policy.action_distribution(obs)  # reading the distribution changes nothing
        policy._step(dict(obs))  # noqa: SLF001 (the committed memory moves only with act)
        assert not (terminated | truncated).any()
    _, pending = policy._step(dict(obs))  # noqa: SLF001
    np.testing.assert_allclose(pending[1][:, 0], policy.target[0] - obtained)
    np.testing.assert_allclose(pending[1][:, 1], policy.target[1])
    assert pending[-1].all()  # K = 4 steps of context, all of this episode
    policy.seed(0)  # forgets the episodes: back to the target
    _, pending = policy._step(dict(obs))  # noqa: SLF001
    np.testing.assert_allclose(pending[1], np.tile(policy.target, (3, 1)))


def test_a_new_session_restarts_the_return_horizon(policy):
    import gymnasium as gym

    env = gym.make_vec(
        "SeqRec-v0", num_envs=2, vectorization_mode="vector_entry_point", max_steps=2, sessions_per_episode=2
    )
    obs, _ = env.reset(seed=2)
    policy.seed(0)
    for _ in range(2):  # the first session: two steps
        obs, *_ = env.step(policy.act(obs))
    assert (obs["session_step"] == 0).all() and (obs["gap_days"] > 0).all()
    _, pending = policy._step(dict(obs))  # noqa: SLF001
    np.testing.assert_allclose(pending[1], np.tile(policy.target, (2, 1)))  # back to R*
    valid = pending[-1].numpy()  # [2, K = 4]: ... with the first session's two steps still in the context
    np.testing.assert_array_equal(valid, [[False, True, True, True]] * 2)


def test_save_load_keeps_the_action_distribution(policy, observations, tmp_path):
    policy.save(tmp_path / "dt")
    assert json.loads((tmp_path / "dt" / "policy.json").read_text())["kind"] == "dt4ier"
    restored = load_policy(tmp_path / "dt")
    assert isinstance(restored, D.DT4IERPolicy)
    policy.seed(0)
    np.testing.assert_array_equal(
        restored.action_distribution(observations), policy.action_distribution(observations)
    )
    restored.seed(3)
    policy.seed(3)
    np.testing.assert_array_equal(restored.act(observations), policy.act(observations))


def test_training_is_bit_for_bit_reproducible_on_cpu(data, policy):
    again, _ = D.train(D.DT4IERConfig(**TINY), data, progress=False)
    for (name, a), (_, b) in zip(
        policy.model.state_dict().items(), again.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("variant", [v for v in D.VARIANTS if v != "dt4ier"])
def test_every_variant_trains_and_acts(variant, data, observations):
    policy, _ = D.train(D.DT4IERConfig(**{**TINY, "steps": 2, "variant": variant}), data, progress=False)
    assert (policy.model.return_embedding is None) == (variant == "bc")
    reward_encoder = isinstance(policy.model.return_embedding, D.RewardEmbedding)
    assert reward_encoder == (variant in ("no_weights", "no_contrastive"))
    assert (policy.model.balancing is not None) == (variant in ("no_reward_encoder", "no_contrastive"))
    assert policy.act(observations).shape == (6,)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"variant": "dt5"}, "variant"),
        ({"context_len": 0}, "context_len"),
        ({"target_quantile": 1.5}, "target_quantile"),
        ({"d_model": 10, "n_heads": 3}, "n_heads"),
        ({"immediate_signal": "click > 1"}, "immediate_signal"),
    ],
)
def test_bad_configs_are_rejected(fields, message):
    with pytest.raises(ValueError, match=message):
        D.DT4IERConfig(**fields)


def test_bad_inputs_raise_clear_errors(logs, policy, observations, tmp_path):
    with pytest.raises(DataError, match="no feedback column 'watched'"):
        D.trajectories_from_logs(logs, D.DT4IERConfig(immediate_signal="watched"))
    from recsim_env.world.logging import log_world

    slates = log_world("uniform", steps=20, seed=0, slate_size=2, num_envs=4, progress=False)
    with pytest.raises(DataError, match="one-item slates"):
        D.trajectories_from_logs(slates, D.DT4IERConfig())
    wrong = dict(observations, feedback=observations["feedback"][..., :3])
    with pytest.raises(ValueError, match="feedback"):
        policy.action_distribution(wrong)
    with pytest.raises(ValueError, match="quantile"):
        policy.set_target(quantile=2.0)
    with pytest.raises(ValueError, match="one of them"):
        policy.set_target()
    policy.save(tmp_path / "broken")
    (tmp_path / "broken" / "weights.safetensors").write_bytes(b"not torch")
    with pytest.raises(ValueError, match=r"weights\.safetensors: truncated or altered"):
        load_policy(tmp_path / "broken")
    rewrite_manifest(tmp_path / "broken")
    with pytest.raises(ValueError, match=r"weights\.safetensors: not a readable safetensors file"):
        load_policy(tmp_path / "broken")


# ---------------------------------------------------------------------------------------------- the CLI
app = typer.Typer()
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
runner = CliRunner()
CLI_CONFIG = json.dumps({k: v for k, v in TINY.items()})


def test_cli_trains_dt4ier_on_logs_and_evaluates_it(logs, tmp_path):
    logs.to_parquet(tmp_path / "logs.parquet")
    out = tmp_path / "dt"
    result = runner.invoke(
        app,
        ["train", "--agent", "dt4ier", "--data", str(tmp_path / "logs.parquet"), "--out", str(out),
         "--algo-config", CLI_CONFIG, "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "policy saved" in result.output
    result = runner.invoke(
        app,
        ["evaluate", str(out), "--env", "SeqRec-v0", "--env-config", '{"max_steps": 10}', "--episodes", "4",
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["policy"] == "dt4ier" and stats["episodes"] == 4


def test_cli_trains_dt4ier_on_an_ml100k_slice(tmp_path):
    if not ML100K.is_dir():
        pytest.skip(f"{ML100K} is absent (the shared ml-100k copy)")
    from recsim_env.data import load

    load(ML100K).select_users(np.arange(30)).to_parquet(tmp_path / "ml.parquet")
    out = tmp_path / "ml"
    result = runner.invoke(
        app,
        ["train", "--agent", "dt4ier", "--data", str(tmp_path / "ml.parquet"), "--out", str(out),
         "--algo-config", CLI_CONFIG, "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    restored = load_policy(out)
    assert restored.stats.immediate == "rating>=4" and restored.n_items == 1682


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--agent", "dt5"], "unknown agent 'dt5'"),
        (["--agent", "dt4ier"], "--data"),
        (["--agent", "dt4ier", "--data", "no/such/logs.csv"], "no such file"),
        (["--agent", "dt4ier", "--data", "x.csv", "--algo-config", '{"stepz": 3}'], "stepz"),
        (["--agent", "dt4ier", "--data", "x.csv", "--algo-config", '{"steps": -3}'], "steps"),
        (["--data", "x.csv"], "offline agents"),
    ],
)
def test_cli_rejects_bad_offline_runs(arguments, message, tmp_path):
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), *arguments])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_a_higher_target_return_gives_a_higher_achieved_return():
    from recsim_env.world.logging import log_world

    logs = log_world("epsilon-greedy", steps=15_000, seed=0, epsilon=0.5, num_envs=32, progress=False)
    # The return prompt is learnt late (at 400 steps it barely moves the sampled actions), hence 1,500
    # steps; the three rollouts share their random numbers (seed 5), so the targets are compared on the
    # same users and draws.
    policy, _ = D.train(D.DT4IERConfig(steps=1500, seed=0), logs, progress=False)
    achieved = []
    for quantile in (0.0, 0.5, 1.0):
        policy.set_target(quantile=quantile)
        stats = rollout(policy, n_episodes=300, seed=5, sessions_per_episode=3)
        achieved.append(stats.mean_return)
    print(f"achieved return per episode at target quantiles 0 / 0.5 / 1: {achieved}")  # pytest -s
    assert achieved[0] < achieved[1] < achieved[2], achieved


def test_the_config_round_trips_through_json(policy):
    fields = json.loads(json.dumps(dataclasses.asdict(policy.config)))
    assert D.DT4IERConfig(**fields) == policy.config
