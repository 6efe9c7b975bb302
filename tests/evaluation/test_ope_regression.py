"""RegressionModel: shapes, seeding, cross-fitting and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from evaluation.ope.regression import RegressionModel


def _data(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(n, 2))
    action = rng.integers(0, 3, size=n)
    position = rng.integers(0, 2, size=n)
    # Reward depends on the action and the position only: a one-hot linear model is exact.
    reward = np.array([0.1, 0.5, 0.9])[action] - 0.2 * position + 0.01 * rng.normal(size=n)
    return context, action, position, reward


def test_predicts_every_action_and_position_and_learns_the_table():
    context, action, position, reward = _data()
    q_hat = RegressionModel(n_actions=3, len_list=2, base_model=LinearRegression()).fit_predict(
        action=action, reward=reward, context=context, position=position, n_folds=3
    )
    assert q_hat.shape == (600, 3, 2)
    expected = np.array([0.1, 0.5, 0.9])[:, None] - 0.2 * np.arange(2)[None, :]
    np.testing.assert_allclose(q_hat.mean(axis=0), expected, atol=0.01)


def test_cross_fitting_keeps_a_round_out_of_its_own_model():
    context, action, position, reward = _data()
    model = RegressionModel(n_actions=3, len_list=2, base_model=LinearRegression())
    q_hat = model.fit_predict(action=action, reward=reward, context=context, position=position, n_folds=3)
    perturbed = reward.copy()
    perturbed[0] += 100.0
    q_perturbed = model.fit_predict(
        action=action, reward=perturbed, context=context, position=position, n_folds=3
    )
    np.testing.assert_array_equal(q_hat[0], q_perturbed[0])  # round 0's model never saw round 0
    assert not np.allclose(q_hat, q_perturbed)  # but the other folds' models did
    q_in_sample = model.fit_predict(
        action=action, reward=perturbed, context=context, position=position, n_folds=1
    )
    assert not np.allclose(q_hat[0], q_in_sample[0])


def test_default_model_is_seeded_and_context_free_path_matches_shape():
    context, action, position, reward = _data()
    model = RegressionModel(n_actions=3, len_list=2)
    a = model.fit_predict(action=action, reward=reward, context=context, position=position, random_state=3)
    b = model.fit_predict(action=action, reward=reward, context=context, position=position, random_state=3)
    np.testing.assert_array_equal(a, b)
    no_context = model.fit_predict(action=action, reward=reward, position=position)
    assert no_context.shape == (600, 3, 2)


def test_classifier_base_model_predicts_probabilities():
    rng = np.random.default_rng(1)
    action = rng.integers(0, 2, size=2000)
    reward = rng.binomial(1, np.array([0.2, 0.7])[action]).astype(float)
    q_hat = RegressionModel(n_actions=2, base_model=LogisticRegression()).fit_predict(
        action=action, reward=reward, n_folds=2
    )
    np.testing.assert_allclose(q_hat[:, :, 0].mean(axis=0), [0.2, 0.7], atol=0.05)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"action": np.array([0, 1, 5])}, r"action\[2\] = 5 is outside the catalogue"),
        ({"reward": np.array([1.0, np.nan, 0.0])}, r"reward\[1\] = nan"),
        ({"reward": np.array([1.0, 0.0])}, r"reward has shape .*shape mismatch"),
        ({"position": np.array([0, 2, 0])}, r"position\[1\] = 2 is outside"),
        ({"context": np.zeros((2, 2))}, r"context must have shape .*shape mismatch"),
    ],
)
def test_bad_input_is_named(change, pattern):
    kw = {"action": np.array([0, 1, 2]), "reward": np.array([1.0, 0.0, 1.0]), "n_folds": 1, **change}
    with pytest.raises(ValueError, match=pattern):
        RegressionModel(n_actions=3, len_list=2).fit_predict(**kw)
