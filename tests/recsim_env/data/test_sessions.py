"""The one session parser: session starts from `session_id`, else from inactivity gaps in seconds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsim_env.data import LoggedInteractions
from recsim_env.data.sessions import SECONDS_PER_HOUR, session_position, session_starts

HOUR = SECONDS_PER_HOUR


def _logs(with_sessions: bool) -> LoggedInteractions:
    # User a: rows at 0 s, 10 min, 3 h, 3 h 30 min; user b: 0 s, 2 days. Session ids disagree with the gaps.
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "b"],
            "item_id": [1, 2, 3, 1, 2, 3],
            "timestamp": [0.0, 600.0, 3 * HOUR, 3.5 * HOUR, 0.0, 2 * 86_400.0],
            "click": [1, 0, 1, 1, 0, 1],
        }
    )
    if with_sessions:
        frame["session_id"] = [0, 1, 1, 1, 5, 5]
    return LoggedInteractions.from_frame(frame, feedback_cols=["click"])


def test_session_id_decides_where_it_is_logged():
    starts = session_starts(_logs(True), gap_s=60.0)
    np.testing.assert_array_equal(starts, [True, True, False, False, True, False])


def test_without_session_id_a_gap_longer_than_gap_s_starts_a_session():
    logs = _logs(False)
    np.testing.assert_array_equal(session_starts(logs, gap_s=HOUR), [True, False, True, False, True, True])
    # A gap of exactly `gap_s` does not start one; a longer one does.
    np.testing.assert_array_equal(session_starts(logs, gap_s=1800.0), [True, False, True, False, True, True])
    np.testing.assert_array_equal(session_starts(logs, gap_s=1799.0), [True, False, True, True, True, True])
    np.testing.assert_array_equal(
        session_starts(logs, gap_s=3 * 86_400.0), [True, False, False, False, True, False]
    )
    assert session_starts(logs, gap_s=None) is None


@pytest.mark.parametrize("gap_s", [0.0, -1.0, True, "3600"])
def test_a_bad_gap_is_refused_by_name(gap_s):
    with pytest.raises(ValueError, match="gap_s"):
        session_starts(_logs(False), gap_s=gap_s)


def test_session_position_counts_steps_and_days_since_the_previous_session():
    logs = _logs(False)
    step, gap_days = session_position(logs, session_starts(logs, gap_s=HOUR))
    np.testing.assert_array_equal(step, [0, 1, 0, 1, 0, 0])
    np.testing.assert_allclose(
        gap_days, [0.0, 0.0, (3 * HOUR - 600.0) / 86_400.0, (3 * HOUR - 600.0) / 86_400.0, 0.0, 2.0]
    )
    assert step.dtype == np.int64 and gap_days.dtype == np.float32


def test_the_simulator_and_dt4ier_read_the_same_sessions():
    """`SimulatorConfig.session_gap_hours` and `DT4IERConfig.session_gap_s` name one gap in two units."""
    pytest.importorskip("torch")
    from agents.dt4ier.config import DT4IERConfig
    from agents.dt4ier.data import trajectories_from_logs
    from simulators.data import _session_breaks

    logs = _logs(False)
    expected = session_starts(logs, gap_s=HOUR)
    np.testing.assert_array_equal(_session_breaks(logs, 1.0), expected)
    trajectories = trajectories_from_logs(logs, DT4IERConfig(session_gap_s=HOUR, history_len=2))
    np.testing.assert_array_equal(trajectories.first, expected)
