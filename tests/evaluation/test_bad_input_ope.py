"""Hostile input to off-policy evaluation: every bad argument, array and file is refused at the boundary.

Each case asserts the error type (`ArgumentError` for a bad argument, `DataError` for a bad file; the
estimators' `FeedbackError` is both) and what the message names: the argument or file, the column or array,
and the first bad row. Bandit rows and sequential (episode, step) indices are 0-based, as the messages say;
log rows are 1-based data rows.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluation.cli import read_npy
from evaluation.ope import (
    DirectMethod,
    DoublyRobust,
    DoublyRobustWithShrinkage,
    InverseProbabilityWeighting,
    PerDecisionImportanceSampling,
    SelfNormalizedDoublyRobust,
    SelfNormalizedInverseProbabilityWeighting,
    SequentialDoublyRobust,
    SwitchDoublyRobust,
    WeightedDoublyRobust,
    WeightedPerDecisionImportanceSampling,
)
from evaluation.ope.base import bootstrap_interval
from evaluation.ope.checks import FeedbackError
from evaluation.ope.logged import bandit_feedback
from evaluation.report import build_report, write_files_atomically
from recsim_env.errors import ArgumentError, DataError

BANDIT_ESTIMATORS = [
    DirectMethod(),
    InverseProbabilityWeighting(),
    SelfNormalizedInverseProbabilityWeighting(),
    DoublyRobust(),
    SelfNormalizedDoublyRobust(),
    SwitchDoublyRobust(lambda_=2.0),
    DoublyRobustWithShrinkage(lambda_=2.0),
]
SEQUENTIAL_ESTIMATORS = [
    PerDecisionImportanceSampling(gamma=0.9),
    WeightedPerDecisionImportanceSampling(gamma=0.9),
    SequentialDoublyRobust(gamma=0.9),
    SequentialDoublyRobust(gamma=0.9, max_weight=5.0),
    WeightedDoublyRobust(gamma=0.9),
]
N_ROUNDS, N_ACTIONS, N_POSITIONS = 8, 3, 2


def bandit(n: int = N_ROUNDS, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid slate feedback: n rounds, 3 actions, 2 positions."""
    rng = np.random.default_rng(seed)
    dist = rng.dirichlet(np.ones(N_ACTIONS), size=(n, N_POSITIONS)).transpose(0, 2, 1)  # [n, N, K]
    return {
        "reward": rng.binomial(1, 0.5, size=n).astype(float),
        "action": rng.integers(0, N_ACTIONS, size=n),
        "position": rng.integers(0, N_POSITIONS, size=n),
        "pscore": rng.uniform(0.2, 0.9, size=n),
        "action_dist": dist,
        "estimated_rewards_by_reg_model": rng.random((n, N_ACTIONS, N_POSITIONS)),
    }


def changed(key: str, row: int, value, data: dict | None = None) -> dict:
    """The valid feedback with `data[key][row] = value` (as a Python list when the value is not a number)."""
    data = bandit() if data is None else data
    if isinstance(value, str) or value is None:
        values = data[key].tolist()
        values[row] = value
        data[key] = values
    else:
        arr = np.array(data[key], dtype=float if isinstance(value, float) else data[key].dtype)
        arr[row] = value
        data[key] = arr
    return data


def with_dist(index: tuple[int, int, int], value: float) -> dict:
    data = bandit()
    data["action_dist"] = data["action_dist"].copy()
    data["action_dist"][index] = value
    return data


# ---- bandit estimators: one bad argument each -----------------------------------------------------------------
BANDIT_CASES = {
    "pscore zero": (changed("pscore", 3, 0.0), r"^pscore\[3\] = 0\.0 is outside \(0, 1\] \(row 3, 0-based\)"),
    "pscore negative": (changed("pscore", 0, -0.2), r"^pscore\[0\] = -0\.2 is outside .*row 0\b"),
    "pscore above one": (changed("pscore", 5, 1.5), r"^pscore\[5\] = 1\.5 is outside .*row 5\b"),
    "pscore NaN": (changed("pscore", 2, math.nan), r"^pscore\[2\] = nan is outside .*row 2\b"),
    "pscore inf": (changed("pscore", 7, math.inf), r"^pscore\[7\] = inf .*row 7\b"),
    "pscore subnormal": (changed("pscore", 4, 1e-300), r"^pscore\[4\] = 1e-300 is below 1e-100.*row 4\b"),
    "pscore bools": (
        {**bandit(), "pscore": np.ones(N_ROUNDS, bool)},
        r"^pscore: expected numbers, got booleans",
    ),
    "pscore string": (
        changed("pscore", 6, "0.5x"),
        r"^pscore: expected a numeric array.*pscore\[6\] = '0\.5x' \(row 6",
    ),
    "reward NaN": (changed("reward", 1, math.nan), r"^reward\[1\] = nan is not finite .*row 1\b"),
    "reward -inf": (changed("reward", 3, -math.inf), r"^reward\[3\] = -inf is not finite .*row 3\b"),
    "reward huge": (
        changed("reward", 2, 1e200),
        r"^reward\[2\] = 1e\+200 exceeds 1e\+100 in magnitude .*row 2\b",
    ),
    "reward None": (
        changed("reward", 5, None),
        r"^reward: expected a numeric array, got dtype object.*row 5\b",
    ),
    "reward length": (
        {**bandit(), "reward": np.zeros(N_ROUNDS - 1)},
        r"^reward has 7 rounds but action_dist has 8",
    ),
    "reward 2-d": ({**bandit(), "reward": np.zeros((N_ROUNDS, 1))}, r"^reward must be 1-dimensional"),
    "action bools": (
        {**bandit(), "action": np.zeros(N_ROUNDS, bool)},
        r"^action: expected integer indices \(bools are not actions",
    ),
    "action fractional": (
        changed("action", 4, 1.5),
        r"^action\[4\] = 1\.5 is not an integer \(row 4, 0-based\)",
    ),
    "action NaN": (changed("action", 6, math.nan), r"^action\[6\] = nan is not a finite integer .*row 6\b"),
    "action past the catalogue": (
        changed("action", 2, 3),
        r"^action\[2\] = 3 is outside the catalogue \[0, 3\).*row 2\b",
    ),
    "action negative": (changed("action", 0, -1), r"^action\[0\] = -1 is outside the catalogue.*row 0\b"),
    "action uint64 that would wrap": (
        {**bandit(), "action": np.array([0, 1, 2, 2**63, 0, 1, 2, 0], dtype=np.uint64)},
        r"^action\[3\] = 9223372036854775808 is outside the catalogue.*row 3\b",
    ),
    "action 1e300 float": (
        changed("action", 1, 1e300),
        r"^action\[1\] = 1e\+300 is outside the catalogue.*row 1\b",
    ),
    "action string": (
        changed("action", 7, "two"),
        r"^action: expected a numeric array.*action\[7\] = 'two' \(row 7",
    ),
    "action ragged": ({**bandit(), "action": [0, [1, 2]] * 4}, r"^action: cannot be read as a numeric array"),
    "position past the slate": (
        changed("position", 5, 2),
        r"^position\[5\] = 2 is outside \[0, 2\).*row 5\b",
    ),
    "position negative": (changed("position", 1, -3), r"^position\[1\] = -3 is outside.*row 1\b"),
    "position fractional": (changed("position", 3, 0.5), r"^position\[3\] = 0\.5 is not an integer.*row 3\b"),
    "action_dist NaN": (
        with_dist((2, 1, 0), math.nan),
        r"^action_dist\[2, 1, 0\] = nan is not finite \(row 2, action 1",
    ),
    "action_dist negative": (
        with_dist((6, 0, 1), -0.1),
        r"^action_dist\[6, 0, 1\] = -0\.1 is negative \(row 6",
    ),
    "action_dist row not summing to 1": (
        with_dist((4, 2, 1), 5.0),
        r"^action_dist\[4, :, 1\] sums to .*, not 1 \(row 4, position 1; 0-based\)",
    ),
    "action_dist 2-d": (
        {**bandit(), "action_dist": np.full((8, 3), 1 / 3)},
        r"^action_dist must be 3-dimensional",
    ),
    "action_dist empty": (
        {key: value[:0] for key, value in bandit().items()},
        r"^action_dist has no rounds \(n = 0\)",
    ),
    "action_dist no actions": (
        {**bandit(), "action_dist": np.zeros((8, 0, 2))},
        r"^action_dist has shape \(8, 0, 2\)",
    ),
    "action_dist objects": (
        {**bandit(), "action_dist": bandit()["action_dist"].astype(object)},
        r"^action_dist: expected a numeric array, got dtype object",
    ),
    "reg model NaN": (
        {
            **bandit(),
            "estimated_rewards_by_reg_model": np.where(np.arange(8)[:, None, None] == 5, np.nan, 0.5)
            + 0 * bandit()["action_dist"],
        },
        r"^estimated_rewards_by_reg_model\[5, 0, 0\] = nan is not finite .*row 5\b",
    ),
    "reg model huge": (
        {**bandit(), "estimated_rewards_by_reg_model": np.full((8, 3, 2), 1e150)},
        r"^estimated_rewards_by_reg_model\[0, 0, 0\] = 1e\+150 exceeds",
    ),
    "reg model shape": (
        {**bandit(), "estimated_rewards_by_reg_model": np.zeros((8, 3, 1))},
        r"^estimated_rewards_by_reg_model has shape \(8, 3, 1\) but action_dist has \(8, 3, 2\)",
    ),
}


@pytest.mark.parametrize("case", list(BANDIT_CASES))
def test_bandit_estimators_refuse_bad_feedback_naming_argument_and_row(case):
    data, pattern = BANDIT_CASES[case]
    for estimator in BANDIT_ESTIMATORS:  # every estimator checks every argument it is given
        with pytest.raises(ArgumentError, match=pattern) as info:
            estimator.estimate_policy_value(**data)
        assert isinstance(info.value, DataError) and isinstance(info.value, FeedbackError)


def test_missing_and_unknown_arguments_are_named():
    data = bandit()
    with pytest.raises(ArgumentError, match=r"^pscore is required"):
        InverseProbabilityWeighting().estimate_policy_value(**{**data, "pscore": None})
    with pytest.raises(ArgumentError, match=r"^estimated_rewards_by_reg_model is required"):
        DirectMethod().estimate(**{**data, "estimated_rewards_by_reg_model": None}, n_bootstrap_samples=10)
    with pytest.raises(ArgumentError, match=r"^pscores: unknown argument of InverseProbabilityWeighting"):
        InverseProbabilityWeighting().estimate_policy_value(**data, pscores=data["pscore"])


HYPERPARAMETERS = [
    ({"alpha": 0.0}, r"^alpha must lie in \(0, 1\), got 0\.0"),
    ({"alpha": 1.0}, r"^alpha must lie in \(0, 1\), got 1\.0"),
    ({"alpha": 1.5}, r"^alpha must lie in \(0, 1\), got 1\.5"),
    ({"alpha": math.nan}, r"^alpha must be finite"),
    ({"alpha": "0.05"}, r"^alpha must be a real number, got '0\.05' \(str\)"),
    ({"alpha": True}, r"^alpha must be a real number, got True \(bool\)"),
    ({"n_bootstrap_samples": 0}, r"^n_bootstrap_samples must be between 1 and 1,000,000, got 0"),
    ({"n_bootstrap_samples": -5}, r"^n_bootstrap_samples must be between 1 and 1,000,000, got -5"),
    (
        {"n_bootstrap_samples": 10**12},
        r"^n_bootstrap_samples must be between 1 and 1,000,000, got 1,000,000,000,000",
    ),
    ({"n_bootstrap_samples": 100.0}, r"^n_bootstrap_samples must be an integer, got 100\.0 \(float\)"),
    ({"n_bootstrap_samples": True}, r"^n_bootstrap_samples must be an integer, got True \(bool\)"),
    ({"random_state": 1.5}, r"^random_state: expected an int seed"),
    ({"random_state": "seed"}, r"^random_state: expected an int seed"),
    ({"random_state": -1}, r"^random_state must be at least 0, got -1"),
]


@pytest.mark.parametrize(("change", "pattern"), HYPERPARAMETERS)
def test_bootstrap_hyperparameters_are_refused_naming_them(change, pattern):
    with pytest.raises(ArgumentError, match=pattern):
        SelfNormalizedInverseProbabilityWeighting().estimate(**bandit(), **change)
    with pytest.raises(ArgumentError, match=pattern):
        PerDecisionImportanceSampling().estimate_interval(**episodes(), **change)


@pytest.mark.parametrize("estimator", [SwitchDoublyRobust, DoublyRobustWithShrinkage])
@pytest.mark.parametrize(
    ("lambda_", "pattern"),
    [
        (-1.0, r"must lie in \[0, inf\], got -1\.0"),
        (math.nan, r"must be a number, not NaN"),
        ("10", r"must be a real number, got '10' \(str\)"),
        (True, r"must be a real number, got True \(bool\)"),
    ],
)
def test_clipping_lambda_is_refused_naming_it(estimator, lambda_, pattern):
    with pytest.raises(ArgumentError, match=rf"^lambda_ {pattern}"):
        estimator(lambda_=lambda_)


def test_huge_but_finite_shrinkage_lambda_never_overflows():
    data = changed("pscore", 0, 1e-100)
    value = DoublyRobustWithShrinkage(lambda_=1e300).estimate_policy_value(**data)
    assert math.isfinite(value)


# ---- sequential estimators ------------------------------------------------------------------------------------
def episodes(n: int = 4, horizon: int = 3, n_actions: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid episodes: all steps alive, two actions."""
    rng = np.random.default_rng(seed)
    return {
        "reward": rng.random((n, horizon)),
        "pscore": rng.uniform(0.3, 0.7, (n, horizon)),
        "mask": np.ones((n, horizon), bool),
        "action": rng.integers(0, n_actions, (n, horizon)),
        "action_dist": rng.dirichlet(np.ones(n_actions), size=(n, horizon)),
        "state_action_value_prediction": rng.random((n, horizon, n_actions)),
    }


def ep_changed(key: str, index: tuple, value) -> dict:
    data = episodes()
    arr = np.array(data[key], dtype=float if isinstance(value, float) else data[key].dtype)
    arr[index] = value
    data[key] = arr
    return data


SEQUENTIAL_CASES = {
    "mask resumes": (
        {**episodes(), "mask": np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1], [1, 1, 1]], bool)},
        r"^mask\[1, 1\] = True is True after the episode ended .*\(episode 1, step 2; 0-based\)",
    ),
    "mask without a first step": (
        {**episodes(), "mask": np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0], [1, 1, 1]], bool)},
        r"^mask\[2, 0\] = False is False: every episode needs a first step \(episode 2, step 0",
    ),
    "mask of halves": (
        ep_changed("mask", (3, 2), 0.5),
        r"^mask\[3, 2\] = 0\.5 is not a boolean .*episode 3, step 2\b",
    ),
    "mask of strings": (
        {**episodes(), "mask": np.full((4, 3), "True")},
        r"^mask: expected a numeric array, got dtype <U4",
    ),
    "mask shape": (
        {**episodes(), "mask": np.ones((4, 2), bool)},
        r"^mask has shape \(4, 2\) but reward has \(4, 3\)",
    ),
    "reward NaN": (
        ep_changed("reward", (0, 1), math.nan),
        r"^reward\[0, 1\] = nan is not finite .*\(episode 0, step 1; 0-based\)",
    ),
    "reward strings": (
        {**episodes(), "reward": np.full((4, 3), "1.0")},
        r"^reward: expected a numeric array, got dtype <U3",
    ),
    "reward empty": ({**episodes(), "reward": np.zeros((0, 3))}, r"^reward has no episodes or no steps"),
    "pscore zero": (
        ep_changed("pscore", (2, 2), 0.0),
        r"^pscore\[2, 2\] = 0\.0 is outside \(0, 1\] \(episode 2, step 2",
    ),
    "pscore shape": (
        {**episodes(), "pscore": np.full((4, 2), 0.5)},
        r"^pscore has shape \(4, 2\) but reward has \(4, 3\)",
    ),
    "action past the catalogue": (
        ep_changed("action", (1, 0), 2),
        r"^action\[1, 0\] = 2\.0 is outside the catalogue \[0, 2\) \(episode 1",
    ),
    "action bools": (
        {**episodes(), "action": np.zeros((4, 3), bool)},
        r"^action: expected integer indices \(bools",
    ),
    "action fractional": (
        ep_changed("action", (3, 1), 0.25),
        r"^action\[3, 1\] = 0\.25 is not an integer \(episode 3, step 1",
    ),
    "action_dist off one": (
        ep_changed("action_dist", (0, 2, 1), 3.0),
        r"^action_dist\[0, 2\] = .* is the sum over actions, not 1 \(episode 0, step 2; 0-based\)",
    ),
    "action_dist inf": (
        ep_changed("action_dist", (2, 0, 0), math.inf),
        r"^action_dist\[2, 0, 0\] = inf is not finite \(episode 2, step 0, action 0",
    ),
    "q NaN": (
        ep_changed("state_action_value_prediction", (1, 2, 1), math.nan),
        r"^state_action_value_prediction\[1, 2, 1\] = nan is not finite .*\(episode 1, step 2, action 1",
    ),
    "q shape": (
        {**episodes(), "state_action_value_prediction": np.zeros((4, 3, 5))},
        r"^state_action_value_prediction has shape \(4, 3, 5\)",
    ),
    "both policies": (
        {**episodes(), "evaluation_pscore": np.full((4, 3), 0.5)},
        r"^evaluation_pscore: give either evaluation_pscore or action with action_dist, not both",
    ),
    "unknown argument": ({**episodes(), "masks": np.ones((4, 3), bool)}, r"^masks: unknown argument"),
    "weights overflowing float64": (
        {**episodes(horizon=4), "pscore": np.full((4, 4), 1e-90)},
        r"^pscore: the cumulative importance weight of episode 0 overflows float64 at step 3 \(episode 0, step 3",
    ),
}


@pytest.mark.parametrize("case", list(SEQUENTIAL_CASES))
def test_sequential_estimators_refuse_bad_episodes_naming_argument_and_step(case):
    data, pattern = SEQUENTIAL_CASES[case]
    for estimator in SEQUENTIAL_ESTIMATORS:
        if case == "weights overflowing float64" and getattr(estimator, "max_weight", None):
            assert math.isfinite(
                estimator.estimate_policy_value(**data)
            )  # Switch-DR never uses those weights
            continue
        with pytest.raises(ArgumentError, match=pattern) as info:
            estimator.estimate_policy_value(**data)
        # Bad logged values are data errors too; a misspelt keyword is only an argument error.
        assert isinstance(info.value, DataError) == (case != "unknown argument")


def test_evaluation_pscore_outside_zero_one_is_named():
    data = {k: v for k, v in episodes().items() if k in ("reward", "pscore", "mask")}
    bad = np.full((4, 3), 0.5)
    bad[3, 0] = 1.2
    with pytest.raises(
        ArgumentError, match=r"^evaluation_pscore\[3, 0\] = 1\.2 is outside \[0, 1\] \(episode 3, step 0"
    ):
        PerDecisionImportanceSampling().estimate_policy_value(**data, evaluation_pscore=bad)
    with pytest.raises(ArgumentError, match=r"^pscore is required"):
        PerDecisionImportanceSampling().estimate_policy_value(reward=data["reward"], evaluation_pscore=bad)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"gamma": 1.5}, r"^gamma must lie in \[0, 1\], got (1\.5|2\.0)"),
        ({"gamma": -0.1}, r"^gamma must lie in \[0, 1\], got -0\.1"),
        ({"gamma": math.nan}, r"^gamma must be finite"),
        ({"gamma": "0.9"}, r"^gamma must be a real number"),
        ({"horizon": 0}, r"^horizon must be at least 1, got 0"),
        ({"horizon": 2.5}, r"^horizon must be an integer, got 2\.5"),
        ({"horizon": True}, r"^horizon must be an integer, got True \(bool\)"),
        ({"max_weight": 0.0}, r"^max_weight must lie in \(0, inf\], got 0\.0"),
        ({"max_weight": math.nan}, r"^max_weight must be a number, not NaN"),
        ({"estimator_name": ""}, r"^estimator_name: expected a non-empty string"),
    ],
)
def test_sequential_hyperparameters_are_refused_naming_them(kwargs, pattern):
    with pytest.raises(ArgumentError, match=pattern):
        SequentialDoublyRobust(**kwargs)


def test_fqe_refuses_bad_config_and_non_finite_states():
    pytest.importorskip("torch")
    from evaluation.ope.fqe import FittedQEvaluation, FQEConfig

    for kwargs, pattern in [
        ({"learning_rate": 0.0}, r"^learning_rate must lie in \(0, inf\], got 0\.0"),
        ({"n_iterations": 0}, r"^n_iterations must be between 1 and 1,000,000, got 0"),
        ({"batch_size": True}, r"^batch_size must be an integer, got True \(bool\)"),
        ({"gamma": 2.0}, r"^gamma must lie in \[0, 1\], got (1\.5|2\.0)"),
        ({"hidden_sizes": (8, 0)}, r"^hidden_sizes must be between 1 and 1,048,576, got 0"),
        ({"seed": -1}, r"^seed must be at least 0, got -1"),
    ]:
        with pytest.raises(ArgumentError, match=pattern):
            FQEConfig(**kwargs)
    data = episodes()
    del data["state_action_value_prediction"]
    state = np.zeros((4, 3, 2))
    state[2, 1, 1] = np.nan
    fqe = FittedQEvaluation(FQEConfig(n_iterations=1, n_steps_per_iteration=1))
    with pytest.raises(
        ArgumentError, match=r"^state\[2, 1, 1\] = nan is not finite .*\(episode 2, step 1; 0-based\)"
    ):
        fqe.fit(state=state, **data)
    with pytest.raises(ArgumentError, match=r"^n_bootstrap_samples must be between 1 and 1,000,000, got "):
        fqe.estimate(state=np.zeros((4, 3, 2)), **data, n_bootstrap_samples=10**12)
    with pytest.raises(ArgumentError, match=r"^states: unknown argument"):
        fqe.estimate_policy_value(states=state, **data)


# ---- hypothesis: a valid feedback dict corrupted at one random row --------------------------------------------
# (argument, corruption, always invalid?)
CORRUPTIONS = [
    ("reward", math.nan, True),
    ("reward", math.inf, True),
    ("reward", 1e200, True),
    ("reward", None, True),
    ("reward", "x", True),
    ("reward", 0.25, False),
    ("action", -1, True),
    ("action", N_ACTIONS, True),
    ("action", 0.5, True),
    ("action", math.nan, True),
    ("action", 1e300, True),
    ("action", "a", True),
    ("action", None, True),
    ("action", 1, False),
    ("position", -1, True),
    ("position", N_POSITIONS, True),
    ("position", 1.5, True),
    ("position", 1, False),
    ("pscore", 0.0, True),
    ("pscore", -0.5, True),
    ("pscore", 1.0000001, True),
    ("pscore", math.nan, True),
    ("pscore", math.inf, True),
    ("pscore", 1e-200, True),
    ("pscore", "p", True),
    ("pscore", 1.0, False),
    ("pscore", 1e-50, False),
    ("action_dist", math.nan, True),
    ("action_dist", -0.5, True),
    ("action_dist", math.inf, True),
    ("action_dist", 7.0, True),
    ("estimated_rewards_by_reg_model", math.nan, True),
    ("estimated_rewards_by_reg_model", -math.inf, True),
    ("estimated_rewards_by_reg_model", 1e101, True),
    ("estimated_rewards_by_reg_model", -3.0, False),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    estimator=st.sampled_from(BANDIT_ESTIMATORS),
    corruption=st.sampled_from(CORRUPTIONS),
    row=st.integers(0, N_ROUNDS - 1),
    cell=st.tuples(st.integers(0, N_ACTIONS - 1), st.integers(0, N_POSITIONS - 1)),
    seed=st.integers(0, 3),
    interval=st.booleans(),
)
def test_a_corrupted_row_ends_in_a_finite_estimate_or_an_error_naming_argument_and_row(
    estimator, corruption, row, cell, seed, interval
):
    key, value, invalid = corruption
    data = bandit(seed=seed)
    if key in ("action_dist", "estimated_rewards_by_reg_model"):
        data[key] = data[key].copy()
        data[key][(row, *cell)] = value
    else:
        data = changed(key, row, value, data)
    try:
        if interval:
            result = estimator.estimate(**data, n_bootstrap_samples=20, random_state=seed)
            values = [result.value, result.lower, result.upper]
        else:
            values = [estimator.estimate_policy_value(**data)]
    except (ArgumentError, DataError) as err:
        message = str(err)
        assert re.match(rf"{key}(\[|:| )", message), message  # names the argument first...
        assert re.search(rf"\brow {row}\b", message), message  # ...and the corrupted row
        return
    assert not invalid, f"{key}[{row}] = {value!r} was accepted"
    assert all(math.isfinite(v) for v in values), values  # never a silent NaN / inf estimate


@settings(max_examples=60, deadline=None)
@given(
    estimator=st.sampled_from(SEQUENTIAL_ESTIMATORS),
    corruption=st.sampled_from(
        [
            ("reward", math.nan),
            ("reward", -math.inf),
            ("pscore", 0.0),
            ("pscore", 2.0),
            ("pscore", math.nan),
            ("action", 5),
            ("action", -1),
            ("action", 0.5),
        ]
    ),  # fmt: skip
    episode=st.integers(0, 3),
    step=st.integers(0, 2),
)
def test_a_corrupted_step_is_named_by_episode_and_step(estimator, corruption, episode, step):
    key, value = corruption
    with pytest.raises((ArgumentError, DataError)) as info:
        estimator.estimate_policy_value(**ep_changed(key, (episode, step), value))
    message = str(info.value)
    assert re.match(rf"{key}\[{episode}, {step}\]", message), message
    assert f"(episode {episode}, step {step}; 0-based)" in message


# ---- the report and its files ---------------------------------------------------------------------------------
def test_build_report_refuses_bad_arguments_naming_them():
    data = bandit(n=200)
    for kwargs, pattern in [
        ({"min_ess": -1.0}, r"^min_ess must lie in \[0, inf\], got -1\.0"),
        ({"support_tolerance": 2.0}, r"^support_tolerance must lie in \[0, 1\], got 2\.0"),
        ({"alpha": 1.0}, r"^alpha must lie in \(0, 1\), got 1\.0"),
        ({"primary": 3}, r"^primary: expected an estimator name"),
        (
            {"behaviour_action_dist": np.full((200, 3, 2), 0.5)},
            r"^behaviour_action_dist\[0, :, 0\] sums to 1\.5",
        ),
    ]:
        with pytest.raises(ArgumentError, match=pattern):
            build_report([DoublyRobust()], **data, n_bootstrap_samples=10, **kwargs)
    with pytest.raises(ArgumentError, match=r"^estimators\[1\]: expected a bandit estimator"):
        build_report([DoublyRobust(), "IPS"], **data)
    with pytest.raises(ArgumentError, match=r"^terms: no units"):
        bootstrap_interval({"x": np.zeros(0)}, lambda t: t["x"].mean(axis=-1))


def test_an_interrupted_save_leaves_no_half_file_and_no_directory(tmp_path, monkeypatch):
    out = tmp_path / "report"
    calls = []
    real_fdopen = os.fdopen

    def failing_fdopen(fd, *args, **kwargs):
        calls.append(fd)
        if len(calls) == 3:  # the disk fills up while the third file is written
            os.close(fd)
            raise OSError(28, "No space left on device")
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", failing_fdopen)
    with pytest.raises(OSError, match="No space left"):
        write_files_atomically(out, {"a.png": b"1", "b.png": b"2", "report.md": b"3", "report.html": b"4"})
    assert not out.exists()  # nothing renamed into place, temporaries gone, the new folder removed
    out.mkdir()
    (out / "report.md").write_bytes(b"old")
    calls.clear()
    with pytest.raises(OSError):
        write_files_atomically(out, {"a.png": b"1", "b.png": b"2", "report.md": b"3"})
    assert (
        sorted(p.name for p in out.iterdir()) == ["report.md"] and (out / "report.md").read_bytes() == b"old"
    )


# ---- the logged-data adapter ----------------------------------------------------------------------------------
def _logged(propensity: list[float]):
    from recsim_env.data.interactions import LoggedInteractions

    frame = pd.DataFrame(
        {"user_id": [1, 1, 2, 2, 3], "item_id": [10, 11, 10, 12, 10], "timestamp": [1, 2, 1, 2, 1],
         "click": [1.0, 0.0, 1.0, 1.0, 0.0], "propensity": propensity}
    )  # fmt: skip
    return LoggedInteractions.from_frame(frame, feedback_cols=["click"])


def test_bandit_feedback_checks_every_propensity_of_the_frame():
    logs = _logged([0.5] * 5)
    logs.frame.loc[3, "propensity"] = 0.0  # altered after loading: the adapter still checks every row
    with pytest.raises(
        DataError, match=r"^logs\.csv: column 'propensity', row 4 \(1-based data row.*outside \(0, 1\]"
    ):
        bandit_feedback(logs, source="logs.csv")
    logs.frame.loc[3, "propensity"] = np.nan
    with pytest.raises(DataError, match=r"column 'propensity', row 4 .*nan is outside"):
        bandit_feedback(logs, source="logs.csv")
    with pytest.raises(ArgumentError, match=r"^estimate_missing_pscore must be True or False, got 'yes'"):
        bandit_feedback(_logged([0.5] * 5), estimate_missing_pscore="yes")


# ---- `seqrec ope-report` --------------------------------------------------------------------------------------
def _log(n: int = 600, n_items: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    item = rng.integers(0, n_items, size=n)
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, 30, size=n),
            "item_id": item,
            "timestamp": np.arange(n, dtype=float),
            "click": rng.binomial(1, 0.1 + 0.2 * item).astype(float),
            "propensity": np.full(n, 1.0 / n_items),
        }
    )


@pytest.fixture
def report_on(run_ope_report):
    """`report_on(log_path, policy, out, *extra)`: `seqrec ope-report` on that log, policy and output
    directory (20 bootstrap replicates), with options `extra`."""

    def run(log_path: Path, policy: str, out: Path, *extra: str):
        return run_ope_report(
            "--logs", str(log_path), "--policy", policy, "--out", str(out), "--n-bootstrap", "20", *extra
        )

    return run


def _unscored_row(n: int = 600, max_rounds: int = 50, seed: int = 0) -> int:
    """A row the CLI's seeded subsample leaves out (same draw as the command)."""
    scored = set(np.random.default_rng(seed).choice(n, size=max_rounds, replace=False).tolist())
    return next(r for r in range(n) if r not in scored)


@pytest.fixture
def log_csv(tmp_path) -> Path:
    path = tmp_path / "log.csv"
    _log().to_csv(path, index=False)
    return path


def _refused(result, out: Path, *names: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: "), result.output
    for name in names:
        assert name in result.output, (name, result.output)
    assert not out.exists()  # an invalid input leaves no output directory at all


def test_cli_refuses_a_log_without_propensities(tmp_path, report_on):
    path = tmp_path / "nopscore.csv"
    _log().drop(columns="propensity").to_csv(path, index=False)
    _refused(
        report_on(path, "uniform", tmp_path / "out"),
        tmp_path / "out",
        "nopscore.csv",
        "'propensity': missing",
    )


@pytest.mark.parametrize("value", [0.0, -0.25, 1.5, "nan"])
def test_cli_refuses_a_bad_propensity_outside_the_scored_subsample(tmp_path, value, report_on):
    row = _unscored_row()
    frame = _log()
    frame["propensity"] = frame["propensity"].astype(object)
    frame.loc[row, "propensity"] = value
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    result = report_on(path, "uniform", tmp_path / "out", "--max-rounds", "50")
    _refused(result, tmp_path / "out", "bad.csv", "column 'propensity'", f"row {row + 1} (1-based")


def _npy_case(report_on, tmp_path, name: str, array: np.ndarray, *extra: str):
    path = tmp_path / name
    np.save(path, array)
    log = tmp_path / "log.csv"
    _log().to_csv(log, index=False)
    return report_on(log, str(path), tmp_path / "out", *extra)


def _uniform(n: int = 600, n_items: int = 4) -> np.ndarray:
    return np.full((n, n_items), 1.0 / n_items)


def test_cli_refuses_an_npy_policy_of_the_wrong_shape(tmp_path, report_on):
    result = _npy_case(report_on, tmp_path, "short.npy", _uniform(599))
    _refused(result, tmp_path / "out", "short.npy", "action distribution has shape (599, 4)")


@pytest.mark.parametrize(
    ("corrupt", "what"),
    [
        (lambda a, r: a.__setitem__((r, 2), np.nan), "action 2: probability nan is not finite"),
        (lambda a, r: a.__setitem__((r, 0), np.inf), "action 0: probability inf is not finite"),
        (lambda a, r: a.__setitem__((r, 1), -0.25), "action 1: probability -0.25 is negative"),
        (lambda a, r: a.__setitem__((r, 3), 0.5), "probabilities sum to 1.25, not 1"),
    ],
)
def test_cli_checks_every_npy_row_before_subsampling(tmp_path, corrupt, what, report_on):
    row = _unscored_row()
    dist = _uniform()
    corrupt(dist, row)
    result = _npy_case(report_on, tmp_path, "policy.npy", dist, "--max-rounds", "50")
    _refused(result, tmp_path / "out", "policy.npy", f"action_dist row {row} (0-based", what)


def test_cli_checks_a_three_d_npy_per_position(tmp_path, report_on):
    dist = np.full((600, 4, 1), 0.25)
    dist[17, :, 0] = [0.5, 0.5, 0.5, 0.5]
    result = _npy_case(report_on, tmp_path, "slate.npy", dist)
    _refused(
        result,
        tmp_path / "out",
        "slate.npy",
        "action_dist row 17 (0-based",
        "position 0: probabilities sum to 2",
    )


class _Payload:
    """Unpickling this creates the marker file: proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickled_object_npy_is_refused_and_never_executed(tmp_path, report_on):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([_Payload(marker)] * 600, dtype=object), allow_pickle=True)
    assert not marker.exists()
    log = tmp_path / "log.csv"
    _log().to_csv(log, index=False)
    result = report_on(log, str(path), tmp_path / "out")
    _refused(result, tmp_path / "out", "evil.npy", "Python objects")
    with pytest.raises(DataError, match=r"evil\.npy: the array holds Python objects"):
        read_npy(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a numpy file at all", "not a readable .npy array"),
        (b"\x93NUMPY\x01\x00", "not a readable .npy array"),  # magic, then nothing
        (None, "not a readable .npy array"),  # a valid header whose data was cut off
        (np.ones((600, 4), dtype=bool), "expected an array of probabilities (floats), got dtype bool"),
        (np.full((600, 4), 0.25 + 0j), "got dtype complex128"),
        (np.full((600, 4), "0.25"), "got dtype <U4"),
    ],
)
def test_cli_refuses_unreadable_or_non_numeric_npy_files(tmp_path, content, message, report_on):
    path = tmp_path / "policy.npy"
    if content is None:
        np.save(path, _uniform())
        path.write_bytes(path.read_bytes()[:200])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    log = tmp_path / "log.csv"
    _log().to_csv(log, index=False)
    _refused(report_on(log, str(path), tmp_path / "out"), tmp_path / "out", "policy.npy", message)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--alpha", "1.5", "--alpha must lie in (0, 1), got 1.5"),
        ("--alpha", "0", "--alpha must lie in (0, 1), got 0.0"),
        ("--n-bootstrap", "0", "--n-bootstrap must be between 1 and 1,000,000, got 0"),
        (
            "--n-bootstrap",
            str(10**12),
            "--n-bootstrap must be between 1 and 1,000,000, got 1,000,000,000,000",
        ),
        ("--max-rounds", "0", "--max-rounds must be between 1 and "),
        ("--n-folds", "0", "--n-folds must be at least 1, got 0"),
        ("--n-folds", "700", "--n-folds must be at most the 600 rows scored, got 700"),
        ("--seed", "-1", "--seed must be between 0 and "),
        ("--min-ess", "-1", "--min-ess must lie in [0, inf], got -1.0"),
        ("--lambda", "-1", "--lambda must lie in [0, inf], got -1.0"),
        ("--lambda", "nan", "--lambda must be a number, not NaN"),
        ("--history-len", "0", "--history-len must be between 1 and 1,048,576, got 0"),
    ],
)
def test_cli_refuses_bad_options_naming_them(tmp_path, log_csv, option, value, message, report_on):
    _refused(report_on(log_csv, "uniform", tmp_path / "out", option, value), tmp_path / "out", message)


def test_cli_refuses_an_out_path_that_is_a_file_and_leaves_it_alone(tmp_path, log_csv, report_on):
    out = tmp_path / "taken"
    out.write_text("keep me")
    result = report_on(log_csv, "uniform", out)
    assert result.exit_code == 1 and "--out:" in result.output and "is not a directory" in result.output
    assert out.read_text() == "keep me"


def test_cli_still_writes_a_full_report_on_good_input(tmp_path, log_csv, report_on):
    result = report_on(log_csv, "uniform", tmp_path / "out", "--max-rounds", "300")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "estimates.png",
        "report.html",
        "report.md",
        "weights.png",
    ]


def test_names_in_the_markdown_report_are_shown_literally():
    """A policy or file name cannot inject a link, an image or HTML into report.md."""
    from evaluation.report import markdown_text

    hostile = "run ![pixel](http://example.invalid/x.png) <img src=x onerror=alert(1)>\n# heading [a](b)"
    shown = markdown_text(hostile)
    assert "\n" not in shown  # the heading cannot start a line
    for raw in ("![", "](", "<img", "[a]"):
        assert raw not in shown
