"""Bandit estimators: hand-computed 5-round cases, bootstrap, bad input, and a synthetic bandit with known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.ope import (
    DirectMethod,
    DoublyRobust,
    DoublyRobustWithShrinkage,
    Estimate,
    Estimator,
    InverseProbabilityWeighting,
    SelfNormalizedDoublyRobust,
    SelfNormalizedInverseProbabilityWeighting,
    SwitchDoublyRobust,
)
from recsim_env.errors import DataError

ALL_ESTIMATORS = [
    DirectMethod(),
    InverseProbabilityWeighting(),
    SelfNormalizedInverseProbabilityWeighting(),
    DoublyRobust(),
    SelfNormalizedDoublyRobust(),
    SwitchDoublyRobust(lambda_=1.0),
    DoublyRobustWithShrinkage(lambda_=1.0),
]

# ---- the 5-round example: 3 actions, one position ---------------------------------------------------------
ACTION = [0, 1, 2, 1, 0]
REWARD = [1.0, 0.0, 1.0, 1.0, 0.0]
PSCORE = [0.5, 0.25, 0.25, 0.25, 0.5]
PI_E = [
    [0.2, 0.3, 0.5],
    [0.1, 0.8, 0.1],
    [0.6, 0.2, 0.2],
    [1 / 3, 1 / 3, 1 / 3],
    [0.0, 0.5, 0.5],
]
Q_HAT = [
    [0.6, 0.2, 0.4],
    [0.5, 0.1, 0.3],
    [0.2, 0.2, 0.7],
    [0.4, 0.6, 0.1],
    [0.3, 0.3, 0.3],
]

# Worked by hand from the tables above (not by calling the estimators):
# importance weights w_i = pi_e(a_i) / pscore_i
W = [0.2 / 0.5, 0.8 / 0.25, 0.2 / 0.25, (1 / 3) / 0.25, 0.0 / 0.5]  # 0.4, 3.2, 0.8, 4/3, 0
# DM term per round: sum_a pi_e(a) q_hat(a)
DM_TERMS = [
    0.2 * 0.6 + 0.3 * 0.2 + 0.5 * 0.4,  # 0.38
    0.1 * 0.5 + 0.8 * 0.1 + 0.1 * 0.3,  # 0.16
    0.6 * 0.2 + 0.2 * 0.2 + 0.2 * 0.7,  # 0.30
    (0.4 + 0.6 + 0.1) / 3,  # 0.3667
    0.0 * 0.3 + 0.5 * 0.3 + 0.5 * 0.3,  # 0.30
]
# residual r_i - q_hat(a_i)
RESIDUAL = [1 - 0.6, 0 - 0.1, 1 - 0.7, 1 - 0.6, 0 - 0.3]
HAND = {
    "DM": sum(DM_TERMS) / 5,
    "IPS": (0.4 * 1 + 3.2 * 0 + 0.8 * 1 + (4 / 3) * 1 + 0 * 0) / 5,
    "SNIPS": (0.4 + 0.8 + 4 / 3) / (0.4 + 3.2 + 0.8 + 4 / 3 + 0.0),
    "DR": (sum(DM_TERMS) + 0.4 * 0.4 + 3.2 * -0.1 + 0.8 * 0.3 + (4 / 3) * 0.4 + 0.0 * -0.3) / 5,
    "SNDR": sum(DM_TERMS) / 5 + (0.16 - 0.32 + 0.24 + (4 / 3) * 0.4) / (0.4 + 3.2 + 0.8 + 4 / 3),
    # lambda = 1 keeps the residual of rounds 0, 2 and 4 (w <= 1) only.
    "Switch-DR": (sum(DM_TERMS) + 0.4 * 0.4 + 0.8 * 0.3 + 0.0) / 5,
    # lambda = 1: w_hat = w / (w^2 + 1)
    "DRos": (
        sum(DM_TERMS)
        + 0.4 / (0.16 + 1) * 0.4
        + 3.2 / (10.24 + 1) * -0.1
        + 0.8 / (0.64 + 1) * 0.3
        + (4 / 3) / (16 / 9 + 1) * 0.4
        + 0.0
    )
    / 5,
}


def five_rounds() -> dict[str, np.ndarray]:
    return {
        "reward": np.array(REWARD),
        "action": np.array(ACTION),
        "pscore": np.array(PSCORE),
        "action_dist": np.array(PI_E)[:, :, None],
        "estimated_rewards_by_reg_model": np.array(Q_HAT)[:, :, None],
    }


def test_hand_weights_are_what_the_tables_say():
    assert W == pytest.approx([0.4, 3.2, 0.8, 4 / 3, 0.0])
    assert HAND["IPS"] == pytest.approx(0.5066667, abs=1e-6)
    assert HAND["DR"] == pytest.approx(0.424, abs=1e-9)


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=lambda e: e.estimator_name)
def test_five_round_example_matches_hand_computation(estimator):
    value = estimator.estimate_policy_value(**five_rounds())
    assert value == pytest.approx(HAND[estimator.estimator_name], abs=1e-12)


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=lambda e: e.estimator_name)
def test_every_estimator_satisfies_the_protocol(estimator):
    assert isinstance(estimator, Estimator)
    est = estimator.estimate(**five_rounds(), n_bootstrap_samples=200)
    assert isinstance(est, Estimate)
    assert est.name == estimator.estimator_name
    assert est.lower <= est.upper
    assert est.value == pytest.approx(HAND[estimator.estimator_name])


def test_slate_positions_use_the_per_position_probabilities():
    # 5 rounds, 2 actions, 2 positions; pi_e differs by position.
    dist = np.zeros((5, 2, 2))
    dist[:, :, 0] = [0.9, 0.1]  # position 0
    dist[:, :, 1] = [0.3, 0.7]  # position 1
    q_hat = np.zeros((5, 2, 2))
    q_hat[:, :, 0] = [0.5, 0.1]
    q_hat[:, :, 1] = [0.2, 0.4]
    action = np.array([0, 1, 1, 0, 1])
    position = np.array([0, 1, 0, 1, 1])
    reward = np.array([1.0, 1.0, 0.0, 0.0, 1.0])
    pscore = np.array([0.5, 0.5, 0.2, 0.6, 0.5])
    kw = dict(
        reward=reward,
        action=action,
        position=position,
        pscore=pscore,
        action_dist=dist,
        estimated_rewards_by_reg_model=q_hat,
    )
    # w = pi_e(a_i | k_i) / pscore_i = [0.9/0.5, 0.7/0.5, 0.1/0.2, 0.3/0.6, 0.7/0.5]
    ips_hand = (0.9 / 0.5 * 1 + 0.7 / 0.5 * 1 + 0.1 / 0.2 * 0 + 0.3 / 0.6 * 0 + 0.7 / 0.5 * 1) / 5
    # DM term at each round's own position: k=0 -> 0.9*0.5+0.1*0.1 = 0.46, k=1 -> 0.3*0.2+0.7*0.4 = 0.34
    dm_hand = (0.46 + 0.34 + 0.46 + 0.34 + 0.34) / 5
    assert InverseProbabilityWeighting().estimate_policy_value(**kw) == pytest.approx(ips_hand)
    assert DirectMethod().estimate_policy_value(**kw) == pytest.approx(dm_hand)
    # Without position every round is read at position 0.
    kw0 = {**kw, "position": None}
    ips_pos0 = (0.9 / 0.5 * 1 + 0.1 / 0.5 * 1 + 0.1 / 0.2 * 0 + 0.9 / 0.6 * 0 + 0.1 / 0.5 * 1) / 5
    assert InverseProbabilityWeighting().estimate_policy_value(**kw0) == pytest.approx(ips_pos0)


def test_switch_and_shrinkage_limits_are_dm_and_dr():
    data = five_rounds()
    dm = DirectMethod().estimate_policy_value(**data)
    dr = DoublyRobust().estimate_policy_value(**data)
    assert SwitchDoublyRobust(lambda_=0.0).estimate_policy_value(**data) == pytest.approx(dm + 0.0 * 0.4 / 5)
    assert SwitchDoublyRobust(lambda_=math.inf).estimate_policy_value(**data) == pytest.approx(dr)
    assert DoublyRobustWithShrinkage(lambda_=0.0).estimate_policy_value(**data) == pytest.approx(dm)
    assert DoublyRobustWithShrinkage(lambda_=math.inf).estimate_policy_value(**data) == pytest.approx(dr)
    with pytest.raises(ValueError, match="lambda_"):
        SwitchDoublyRobust(lambda_=-1.0)
    with pytest.raises(ValueError, match="lambda_"):
        DoublyRobustWithShrinkage(lambda_=float("nan"))


# ---- bootstrap -------------------------------------------------------------------------------------------
def test_bootstrap_is_reproducible_for_a_seed_and_changes_with_it():
    data = five_rounds()
    est = SelfNormalizedInverseProbabilityWeighting()
    a = est.estimate_interval(**data, random_state=7, n_bootstrap_samples=300)
    b = est.estimate_interval(**data, random_state=7, n_bootstrap_samples=300)
    c = est.estimate_interval(**data, random_state=8, n_bootstrap_samples=300)
    assert a == b
    assert a != c
    assert set(a) == {"mean", "lower", "upper"}
    assert a["lower"] <= a["mean"] <= a["upper"]


def test_bootstrap_renormalises_inside_each_replicate():
    # With a single action and pi_e == pi_b every weight is 1 and SNIPS is the mean reward of the replicate,
    # so each replicate lies in [min r, max r]; a bootstrap reusing the full-sample normaliser would not.
    rng = np.random.default_rng(0)
    n = 50
    reward = rng.random(n)
    pscore = np.full(n, 0.5)
    dist = np.zeros((n, 2, 1))
    dist[:, 0, 0] = 0.5
    dist[:, 1, 0] = 0.5
    ci = SelfNormalizedInverseProbabilityWeighting().estimate_interval(
        reward=reward, action=np.zeros(n, int), pscore=pscore, action_dist=dist, alpha=0.01
    )
    assert reward.min() <= ci["lower"] <= ci["upper"] <= reward.max()


def test_narrower_interval_for_larger_alpha():
    data = five_rounds()
    wide = DoublyRobust().estimate_interval(**data, alpha=0.01)
    narrow = DoublyRobust().estimate_interval(**data, alpha=0.5)
    assert wide["upper"] - wide["lower"] > narrow["upper"] - narrow["lower"]


# ---- bad input ---------------------------------------------------------------------------------------------
def _bad(**changes):
    data = five_rounds()
    for key, value in changes.items():
        data[key] = value
    return data


BAD_INPUTS = {
    "pscore zero": (
        _bad(pscore=np.array([0.5, 0.0, 0.25, 0.25, 0.5])),
        r"pscore\[1\] = 0.0 is outside \(0, 1\]",
    ),
    "pscore above one": (_bad(pscore=np.array([0.5, 0.25, 0.25, 1.5, 0.5])), r"pscore\[3\] = 1.5 is outside"),
    "pscore negative": (_bad(pscore=np.array([-0.5, 0.25, 0.25, 0.25, 0.5])), r"pscore\[0\]"),
    "pscore NaN": (_bad(pscore=np.array([0.5, 0.25, np.nan, 0.25, 0.5])), r"pscore\[2\] = nan"),
    "action_dist not summing to 1": (
        _bad(action_dist=np.array([PI_E[0], PI_E[1], [0.6, 0.2, 0.3], PI_E[3], PI_E[4]])[:, :, None]),
        r"action_dist\[2, :, 0\] sums to 1.1",
    ),
    "action_dist negative": (
        _bad(action_dist=np.array([PI_E[0], [1.1, -0.1, 0.0], *PI_E[2:]])[:, :, None]),
        r"action_dist\[1, 1, 0\] = -0.1 is negative",
    ),
    "action_dist 2-d": (_bad(action_dist=np.array(PI_E)), r"action_dist must be 3-dimensional"),
    "reward length": (_bad(reward=np.array([1.0, 0.0, 1.0, 1.0])), r"reward has 4 rounds.*shape mismatch"),
    "action length": (_bad(action=np.array([0, 1, 2, 1, 0, 0])), r"action has 6 rounds.*shape mismatch"),
    "pscore length": (_bad(pscore=np.array([0.5, 0.5])), r"pscore has 2 rounds.*shape mismatch"),
    "reg model shape": (
        _bad(estimated_rewards_by_reg_model=np.zeros((5, 2, 1))),
        r"estimated_rewards_by_reg_model has shape \(5, 2, 1\).*shape mismatch",
    ),
    "NaN reward": (_bad(reward=np.array([1.0, 0.0, np.nan, 1.0, 0.0])), r"reward\[2\] = nan is not finite"),
    "action outside catalogue": (
        _bad(action=np.array([0, 1, 2, 3, 0])),
        r"action\[3\] = 3 is outside the catalogue \[0, 3\)",
    ),
    "negative action": (
        _bad(action=np.array([0, -1, 2, 1, 0])),
        r"action\[1\] = -1 is outside the catalogue",
    ),
    "fractional action": (_bad(action=np.array([0, 1.5, 2, 1, 0])), r"action\[1\] = 1.5 is not an integer"),
    "position outside slate": (
        _bad(position=np.array([0, 0, 1, 0, 0])),
        r"position\[2\] = 1 is outside \[0, 1\)",
    ),
}


DM_READS = {
    "action_dist not summing to 1",
    "action_dist negative",
    "action_dist 2-d",
    "reg model shape",
    "position outside slate",
}


# DM reads only action_dist, position and estimated_rewards_by_reg_model: it is checked on those cases.
BAD_INPUT_CASES = [
    pytest.param(estimator, case, id=f"{case}-{estimator.estimator_name}")
    for case in BAD_INPUTS
    for estimator in ALL_ESTIMATORS
    if estimator.estimator_name != "DM" or case in DM_READS
]


@pytest.mark.parametrize("estimator,case", BAD_INPUT_CASES)
def test_bad_input_raises_a_value_error_naming_it(estimator, case):
    data, pattern = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=pattern) as info:
        estimator.estimate_policy_value(**data)
    assert isinstance(info.value, DataError)


def test_missing_required_argument_is_named():
    data = five_rounds()
    del data["estimated_rewards_by_reg_model"]
    with pytest.raises(ValueError, match="estimated_rewards_by_reg_model is required"):
        DoublyRobust().estimate_policy_value(**data)
    del data["pscore"]
    with pytest.raises(ValueError, match="pscore is required"):
        InverseProbabilityWeighting().estimate_policy_value(**data)


# ---- a synthetic bandit with a closed-form truth ---------------------------------------------------------------
def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def synthetic_bandit(n: int, seed: int, n_actions: int = 5, dim: int = 3):
    """Logistic rewards; softmax logger and evaluation policy; truth = mean_i sum_a pi_e(a|x_i) mu(x_i, a)."""
    world = np.random.default_rng(12345)  # the bandit itself is fixed; only the log draw varies
    theta = world.normal(size=(n_actions, dim))
    logger_theta = world.normal(size=(n_actions, dim))
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(n, dim))
    mu = 1.0 / (1.0 + np.exp(-(context @ theta.T)))  # [n, N]
    pi_b = _softmax(0.5 * context @ logger_theta.T)
    pi_e = _softmax(2.0 * context @ theta.T)
    action = (pi_b.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    reward = rng.binomial(1, mu[np.arange(n), action]).astype(float)
    truth = float((pi_e * mu).sum(axis=1).mean())
    return {
        "context": context,
        "reward": reward,
        "action": action,
        "pscore": pi_b[np.arange(n), action],
        "action_dist": pi_e[:, :, None],
        "mu": mu,
    }, truth


def test_dr_and_snips_recover_a_known_value_on_20k_rounds():
    from evaluation.ope.regression import RegressionModel

    data, truth = synthetic_bandit(20_000, seed=0)
    q_hat = RegressionModel(n_actions=5).fit_predict(
        action=data["action"], reward=data["reward"], context=data["context"], n_folds=3, random_state=0
    )
    kw = {k: data[k] for k in ("reward", "action", "pscore", "action_dist")}
    dr = DoublyRobust().estimate_policy_value(**kw, estimated_rewards_by_reg_model=q_hat)
    snips = SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**kw)
    assert abs(dr - truth) / truth < 0.03, (dr, truth)
    assert abs(snips - truth) / truth < 0.03, (snips, truth)
    # With the true reward function as the model, DM is exact up to the policy's own randomness.
    exact = DirectMethod().estimate_policy_value(
        action_dist=data["action_dist"], estimated_rewards_by_reg_model=data["mu"][:, :, None]
    )
    assert exact == pytest.approx(truth, rel=1e-12)


def test_snips_interval_covers_the_truth_at_its_nominal_rate():
    # 200 independent log draws; a 95% interval should cover ~95% (binomial sd ~1.5%).
    covered = 0
    for seed in range(200):
        data, truth = synthetic_bandit(1_000, seed=seed)
        kw = {k: data[k] for k in ("reward", "action", "pscore", "action_dist")}
        ci = SelfNormalizedInverseProbabilityWeighting().estimate_interval(
            **kw, n_bootstrap_samples=300, random_state=seed
        )
        covered += ci["lower"] <= truth <= ci["upper"]
    assert 0.90 <= covered / 200 <= 0.99, covered
