"""The `LoggedInteractions` -> OBP arrays adapter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.ope import InverseProbabilityWeighting
from evaluation.ope.logged import bandit_feedback
from recsim_env.data import LoggedInteractions
from recsim_env.errors import DataError


def _logs(**extra) -> LoggedInteractions:
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 3],
            "item_id": [10, 11, 10, 12, 10],
            "timestamp": [0.0, 1.0, 0.0, 1.0, 0.0],
            "click": [1.0, 0.0, 1.0, 1.0, 0.0],
            "watch": [30.0, 0.0, 10.0, 5.0, 0.0],
            **extra,
        }
    )
    return LoggedInteractions.from_frame(frame, item_catalogue=[10, 11, 12, 13])


def test_reads_reward_action_position_and_propensity():
    logs = _logs(propensity=[0.5, 0.25, 0.5, 0.25, 0.5], position=[0, 1, 0, 1, 0])
    fb = bandit_feedback(logs)
    np.testing.assert_array_equal(fb.reward, [1.0, 0.0, 1.0, 1.0, 0.0])  # "click" by default
    np.testing.assert_array_equal(fb.action, [0, 1, 0, 2, 0])  # catalogue indices of 10, 11, 10, 12, 10
    np.testing.assert_array_equal(fb.position, [0, 1, 0, 1, 0])
    np.testing.assert_array_equal(fb.pscore, [0.5, 0.25, 0.5, 0.25, 0.5])
    assert (fb.n_actions, fb.n_positions, fb.pscore_estimated) == (4, 2, False)
    assert bandit_feedback(logs, reward_column="watch").reward[0] == 30.0
    # The adapter's output feeds an estimator directly: uniform policy over 4 items, 2 positions.
    dist = np.full((5, 4, 2), 0.25)
    ips = InverseProbabilityWeighting().estimate_policy_value(**fb.as_kwargs(), action_dist=dist)
    assert ips == pytest.approx((0.25 / 0.5 * 1 + 0 + 0.25 / 0.5 * 1 + 0.25 / 0.25 * 1 + 0) / 5)


def test_empirical_propensities_when_the_log_has_none():
    fb = bandit_feedback(_logs(), estimate_missing_pscore=True)
    # item 10 appears 3 times in 5 rows, items 11 and 12 once each
    np.testing.assert_allclose(fb.pscore, [3 / 5, 1 / 5, 3 / 5, 1 / 5, 3 / 5])
    assert fb.pscore_estimated


def test_errors_name_the_column():
    with pytest.raises(DataError, match="'propensity': missing"):
        bandit_feedback(_logs())
    with pytest.raises(DataError, match="'likes': reward column not in the log"):
        bandit_feedback(_logs(propensity=[0.5] * 5), reward_column="likes")
    logs = _logs(propensity=[0.5] * 5)
    logs.frame.loc[3, "click"] = np.nan
    with pytest.raises(DataError, match="column 'click', row 4 .* reward is NaN"):
        bandit_feedback(logs)
