"""The fidelity report's world section: the two views of the history a simulator is scored from."""

from __future__ import annotations

import numpy as np


class _Spy:
    """Forwards to a simulator and keeps the histories `predict` was given."""

    def __init__(self, simulator) -> None:
        self.simulator = simulator
        self.histories: list[np.ndarray] = []

    def __getattr__(self, name):
        return getattr(self.simulator, name)

    def predict(self, items, inputs, slates, member=-1, user_features=None):
        self.histories.append(items.copy())
        return self.simulator.predict(items, inputs, slates, member, user_features)


def test_world_metrics_scores_from_the_observation_and_from_the_logged_history(tiny_fit):
    from simulators.report import world_metrics

    spy = _Spy(tiny_fit.simulator)
    metrics = world_metrics(spy, steps=2000, seed=3)
    observed, logged = spy.histories[0::2], spy.histories[1::2]
    pad, length = spy.n_items, spy.history_len
    # First step of every episode: the observation holds the world's warm-start consumption, a log nothing.
    assert (observed[0] < pad).all() and (logged[0] == pad).all()
    # Later, the logged view is the observation's most recent part: the steps this episode has shown.
    for seen, kept in zip(observed, logged, strict=True):
        real = kept < pad
        assert (kept[real] == seen[real]).all()
        assert (np.diff(real.astype(int), axis=1) >= 0).all()  # left padding only
    # An episode is 3 sessions of at least one step each: in the first 3 steps no user has restarted.
    assert length >= 3
    for t in range(3):
        assert ((logged[t] < pad).sum(axis=1) == t).all()
    for part in (metrics, metrics["logged_history"]):
        assert 0.0 <= part["learned"]["auc"] <= 1.0
        assert part["auc_gap"] == metrics["world_truth"]["auc"] - part["learned"]["auc"]
    assert metrics["learned"]["auc"] != metrics["logged_history"]["learned"]["auc"]
