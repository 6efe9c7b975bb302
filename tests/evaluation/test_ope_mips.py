"""MIPS over action embeddings: a hand-worked case, OBP's formula, the two input forms, bias and variance, bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation.ope import (
    BanditEstimator,
    Estimate,
    Estimator,
    FeedbackError,
    InverseProbabilityWeighting,
    MarginalizedInverseProbabilityWeighting,
    SelfNormalizedMarginalizedInverseProbabilityWeighting,
    deterministic_p_e_a,
    embedding_marginal,
)
from recsim_env.errors import ArgumentError

MIPS = MarginalizedInverseProbabilityWeighting()
SNMIPS = SelfNormalizedMarginalizedInverseProbabilityWeighting()

# ---- hand-worked case: 4 actions in 2 categories (a0, a1 -> e0; a2, a3 -> e1), 4 rounds -----------------
CATEGORY = np.array([0, 0, 1, 1])
ACTION = np.array([0, 3, 2, 1])
REWARD = np.array([1.0, 0.0, 1.0, 1.0])
PI_B = np.array([[0.4, 0.1, 0.3, 0.2]] * 4)  # context-free logger: p(e0) = 0.5, p(e1) = 0.5
PI_E = np.array(
    [
        [0.7, 0.1, 0.1, 0.1],  # p(e0) = 0.8, p(e1) = 0.2
        [0.0, 0.5, 0.0, 0.5],  # 0.5, 0.5
        [0.25, 0.25, 0.25, 0.25],  # 0.5, 0.5
        [0.1, 0.0, 0.9, 0.0],  # 0.1, 0.9
    ]
)
# By hand: the logged embeddings are e0, e1, e1, e0 and the weights p(e_i | pi_e) / p(e_i | pi_b):
HAND_W = np.array([0.8 / 0.5, 0.5 / 0.5, 0.5 / 0.5, 0.1 / 0.5])  # 1.6, 1.0, 1.0, 0.2
HAND_MIPS = (1.6 * 1 + 1.0 * 0 + 1.0 * 1 + 0.2 * 1) / 4  # 0.7
HAND_SNMIPS = (1.6 + 1.0 + 0.2) / (1.6 + 1.0 + 1.0 + 0.2)  # 2.8 / 3.8


def dense_kwargs():
    return dict(
        reward=REWARD,
        action=ACTION,
        action_embed=CATEGORY[ACTION],
        pi_b=PI_B[:, :, None],
        action_dist=PI_E[:, :, None],
        p_e_a=deterministic_p_e_a(CATEGORY, 2),
    )


def marginal_kwargs():
    return dict(
        reward=REWARD,
        action_embed=CATEGORY[ACTION],
        embed_dist=embedding_marginal(PI_E, CATEGORY, 2)[:, :, None],
        embed_pscore=embedding_marginal(PI_B, CATEGORY, 2)[np.arange(4), CATEGORY[ACTION]],
    )


def test_hand_worked_case_in_both_forms():
    assert MIPS.estimate_policy_value(**dense_kwargs()) == pytest.approx(HAND_MIPS, abs=1e-15)
    assert MIPS.estimate_policy_value(**marginal_kwargs()) == pytest.approx(HAND_MIPS, abs=1e-15)
    assert SNMIPS.estimate_policy_value(**dense_kwargs()) == pytest.approx(HAND_SNMIPS, abs=1e-15)
    assert SNMIPS.estimate_policy_value(**marginal_kwargs()) == pytest.approx(HAND_SNMIPS, abs=1e-15)
    # IPS on the same data weights the items, not the categories: a different number.
    ips = InverseProbabilityWeighting().estimate_policy_value(
        reward=REWARD, action=ACTION, pscore=PI_B[0, ACTION], action_dist=PI_E[:, :, None]
    )
    assert ips == pytest.approx((0.7 / 0.4 + 0.0 + 0.25 / 0.3 + 0.0) / 4)


def obp_mipw_round_rewards(reward, action_embed, pi_b, action_dist, position, p_e_a, self_normalized=False):
    """Open Bandit Pipeline's `MarginalizedInverseProbabilityWeighting._estimate_round_rewards` with
    known `p_e_a` (obp/ope/estimators_embed.py), transcribed as the reference formula."""
    n = reward.shape[0]
    p_e_pi_b = np.ones(n)
    p_e_pi_e = np.ones(n)
    for d in np.arange(p_e_a.shape[-1]):
        p_e_pi_b_d = pi_b[np.arange(n), :, position] @ p_e_a[:, :, d]
        p_e_pi_b *= p_e_pi_b_d[np.arange(n), action_embed[:, d]]
        p_e_pi_e_d = action_dist[np.arange(n), :, position] @ p_e_a[:, :, d]
        p_e_pi_e *= p_e_pi_e_d[np.arange(n), action_embed[:, d]]
    w_x_e = p_e_pi_e / p_e_pi_b
    return reward * w_x_e / w_x_e.mean() if self_normalized else reward * w_x_e


def test_matches_open_bandit_pipelines_formula_with_stochastic_multi_dimensional_embeddings():
    rng = np.random.default_rng(3)
    n, n_actions, n_cat, n_dims, n_pos = 60, 7, 3, 2, 2
    p_e_a = rng.dirichlet(np.ones(n_cat), size=(n_actions, n_dims)).transpose(0, 2, 1)  # [N, C, D]
    pi_b = rng.dirichlet(np.ones(n_actions), size=(n, n_pos)).transpose(0, 2, 1)  # [n, N, K]
    pi_e = rng.dirichlet(0.3 * np.ones(n_actions), size=(n, n_pos)).transpose(0, 2, 1)
    position = rng.integers(0, n_pos, n)
    action = np.array([rng.choice(n_actions, p=pi_b[i, :, position[i]]) for i in range(n)])
    embed = np.array([[rng.choice(n_cat, p=p_e_a[a, :, d]) for d in range(n_dims)] for a in action])
    reward = rng.random(n)
    kwargs = dict(
        reward=reward,
        action=action,
        action_embed=embed,
        pi_b=pi_b,
        action_dist=pi_e,
        position=position,
        p_e_a=p_e_a,
    )
    reference = obp_mipw_round_rewards(reward, embed, pi_b, pi_e, position, p_e_a)
    assert MIPS.estimate_policy_value(**kwargs) == pytest.approx(reference.mean(), rel=1e-13)
    sn_reference = obp_mipw_round_rewards(reward, embed, pi_b, pi_e, position, p_e_a, self_normalized=True)
    assert SNMIPS.estimate_policy_value(**kwargs) == pytest.approx(sn_reference.mean(), rel=1e-13)


def test_one_embedding_per_action_is_ips():
    rng = np.random.default_rng(0)
    n, n_actions = 200, 5
    pi_b = rng.dirichlet(np.ones(n_actions), size=n)
    pi_e = rng.dirichlet(np.ones(n_actions), size=n)
    action = np.array([rng.choice(n_actions, p=p) for p in pi_b])
    reward = rng.random(n)
    mips = MIPS.estimate_policy_value(
        reward=reward,
        action=action,
        action_embed=action,
        pi_b=pi_b[:, :, None],
        action_dist=pi_e[:, :, None],
        p_e_a=deterministic_p_e_a(np.arange(n_actions), n_actions),
    )
    ips = InverseProbabilityWeighting().estimate_policy_value(
        reward=reward, action=action, pscore=pi_b[np.arange(n), action], action_dist=pi_e[:, :, None]
    )
    assert mips == pytest.approx(ips, rel=1e-13)


def test_unbiased_without_direct_effect_and_less_variable_than_ips():
    """Rewards depend on the category only (the paper's no-direct-effect case): over 300 logs MIPS's mean is
    within 4 standard errors of the truth and its variance is below IPS's."""
    rng = np.random.default_rng(7)
    n_actions, n_cat, n, n_logs = 400, 4, 500, 300
    category = np.arange(n_actions) % n_cat
    click = np.array([0.1, 0.3, 0.5, 0.7])  # reward probability of each category
    pi_b = rng.dirichlet(np.ones(n_actions))
    pi_e = rng.dirichlet(0.2 * np.ones(n_actions))
    truth = float(pi_e @ click[category])
    p_e_b = np.bincount(category, weights=pi_b, minlength=n_cat)
    p_e_e = np.bincount(category, weights=pi_e, minlength=n_cat)
    mips, ips = [], []
    for _ in range(n_logs):
        action = rng.choice(n_actions, size=n, p=pi_b)
        reward = (rng.random(n) < click[category[action]]).astype(float)
        e = category[action]
        mips.append(
            MIPS.estimate_policy_value(
                reward=reward,
                action_embed=e,
                embed_dist=np.broadcast_to(p_e_e[None, :, None], (n, n_cat, 1)),
                embed_pscore=p_e_b[e],
            )
        )
        ips.append(
            InverseProbabilityWeighting().estimate_policy_value(
                reward=reward,
                action=action,
                pscore=pi_b[action],
                action_dist=np.broadcast_to(pi_e[None, :, None], (n, n_actions, 1)),
            )
        )
    mips, ips = np.array(mips), np.array(ips)
    assert abs(mips.mean() - truth) < 4 * mips.std(ddof=1) / np.sqrt(n_logs)
    assert mips.var() < ips.var()


def test_interval_through_the_shared_bootstrap():
    est = MIPS.estimate(n_bootstrap_samples=200, random_state=1, **marginal_kwargs())
    assert isinstance(est, Estimate) and est.name == "MIPS"
    assert est.value == pytest.approx(HAND_MIPS)
    assert est.lower <= est.upper
    again = MIPS.estimate_interval(n_bootstrap_samples=200, random_state=1, **dense_kwargs())
    assert (again["lower"], again["upper"]) == (est.lower, est.upper)  # same weights, same seed
    sn = SNMIPS.estimate_interval(n_bootstrap_samples=200, random_state=1, **dense_kwargs())
    assert (
        0.0 <= sn["lower"] <= sn["upper"] <= 1.0
    )  # renormalised in every replicate: within the reward range


def test_is_a_bandit_estimator_of_the_common_contract():
    assert isinstance(MIPS, BanditEstimator) and isinstance(MIPS, Estimator)
    assert isinstance(SNMIPS, BanditEstimator) and SNMIPS.estimator_name == "SNMIPS"


# ---- bad input ---------------------------------------------------------------------------------------------
def _with(base, **changes):
    out = dict(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (_with(marginal_kwargs(), pscores=np.ones(4)), "pscores: unknown argument"),
        (_with(marginal_kwargs(), pi_b=PI_B[:, :, None]), "not both"),
        (_with(marginal_kwargs(), embed_pscore=None), "embed_pscore is required"),
        (_with(marginal_kwargs(), action_embed=None), "action_embed is required"),
        (
            _with(marginal_kwargs(), action_embed=np.array([0, 1, 2, 0])),
            r"action_embed\[2, 0\] = 2 is outside",
        ),
        (_with(marginal_kwargs(), embed_pscore=np.array([0.5, 0.0, 0.5, 0.5])), r"embed_pscore\[1\] = 0.0"),
        (_with(marginal_kwargs(), reward=np.array([1.0, np.nan, 0.0, 1.0])), r"reward\[1\]"),
        (_with(marginal_kwargs(), reward=np.ones(3)), "reward has shape"),
        (_with(marginal_kwargs(), embed_dist=np.full((4, 2, 1), 0.6)), r"embed_dist\[0, :, 0\] sums to 1.2"),
        (_with(dense_kwargs(), p_e_a=None), "p_e_a is required"),
        (_with(dense_kwargs(), p_e_a=np.full((4, 2, 1), 0.7)), r"p_e_a\[0, :, 0\] sums to 1.4"),
        (_with(dense_kwargs(), p_e_a=deterministic_p_e_a(CATEGORY[:3], 2)), "p_e_a has 3 actions"),
        (_with(dense_kwargs(), pi_b=PI_B[:2, :, None]), "pi_b has shape"),
        (
            _with(dense_kwargs(), action_embed=np.array([1, 1, 1, 0])),
            r"action_embed\[0, 0\] = 1 has probability 0",
        ),
    ],
)
def test_bad_input_names_the_argument(kwargs, message):
    with pytest.raises(FeedbackError if "unknown" not in message else ArgumentError, match=message):
        MIPS.estimate_policy_value(**kwargs)


def test_logger_that_never_shows_the_logged_embedding_is_refused():
    pi_b = np.array([[0.5, 0.5, 0.0, 0.0]] * 4)[:, :, None]  # the logger never shows category 1
    kwargs = _with(dense_kwargs(), pi_b=pi_b, action=None)
    with pytest.raises(
        FeedbackError, match=r"pi_b gives the logged embedding action_embed\[1, 0\] = 1 probability 0"
    ):
        MIPS.estimate_policy_value(**kwargs)


def test_helpers_refuse_bad_embeddings():
    with pytest.raises(FeedbackError, match=r"item_embed\[1\] = 5 is outside"):
        deterministic_p_e_a([0, 5], 2)
    with pytest.raises(FeedbackError, match="item_embed has 3 actions"):
        embedding_marginal(PI_E, [0, 1, 1], 2)


def test_common_bad_feedback_cases_are_refused_alike():
    """The shared bad-feedback cases of the other bandit estimators, given to MIPS's dense form."""
    spec = importlib.util.spec_from_file_location(
        "bad_input_ope", Path(__file__).with_name("test_bad_input_ope.py")
    )
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    good = cases.bandit()
    extras = dict(
        action_embed=good["action"], pi_b=good["action_dist"], p_e_a=deterministic_p_e_a(np.arange(3), 3)
    )
    checked = 0
    for data, pattern in cases.BANDIT_CASES.values():
        if "is required" in pattern and "reward" not in pattern:
            continue  # an argument MIPS does not need (pscore, the reward model)
        with pytest.raises(FeedbackError, match=pattern):
            MIPS.estimate_policy_value(**{**data, **extras})
        checked += 1
    assert checked >= 10


@pytest.mark.slow
def test_large_catalogue_benchmark_runs_and_its_truth_agrees_with_on_policy_rollouts():
    """Smoke run of benchmarks/ope_large_catalogue.py on a 500-item world (about half a minute)."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "benchmarks/ope_large_catalogue.py", "--n-items", "500", "--logs", "3", "--rows", "300",
         "--truth-users", "20000", "--clusters", "5,100"],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, check=True,
        timeout=600,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    names = [t["target"] for t in result["targets"]]
    assert names == [
        "popularity beta=1.5",
        "popularity beta=10",
        "short-first gamma=2",
        "short-first gamma=4",
    ]
    embeddings = ("(1)", "(pop10)", "(km50)", "(km1000)")  # 100 clusters per 50-item category: 50 used
    assert [result["embeddings"]["MIPS" + e]["values"] for e in embeddings] == [10, 100, 50, 1000]
    for target in result["targets"]:
        assert set(target["estimators"]) == {"IPS", "SNIPS"} | {
            p + e for e in embeddings for p in ("MIPS", "SNMIPS")
        }
        # The exact truth is what independent on-policy rollouts of the target measure.
        assert abs(target["rollout_truth"] - target["truth"]) < 4 * target["rollout_se"]
        for name, row in target["estimators"].items():
            assert row["mse"] == pytest.approx(row["bias2"] + row["variance"], rel=1e-9), name
        for name, versus in target["mips_vs_ips"].items():
            assert versus["mips_below_ips"] == (
                target["estimators"][name]["mse"] < target["estimators"]["IPS"]["mse"]
            )
    # One item per value: MIPS is IPS, and its exact expectation has no bias.
    for target in result["targets"]:
        assert target["estimators"]["MIPS(km1000)"]["mean"] == pytest.approx(
            target["estimators"]["IPS"]["mean"]
        )
        assert abs(target["estimators"]["MIPS(km1000)"]["exact_bias"]) < 1e-9
    # The targets differ only within categories: MIPS over the category alone cannot tell them apart.
    means = [t["estimators"]["MIPS(1)"]["mean"] for t in result["targets"]]
    assert means == pytest.approx([means[0]] * 4, rel=1e-12)
    assert result["targets"][0]["truth"] != pytest.approx(result["targets"][1]["truth"], rel=1e-3)
