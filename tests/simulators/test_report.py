"""The fidelity report's world section: the two views of the history a simulator is scored from."""

from __future__ import annotations

import numpy as np


class _Spy:
    """Forwards to a simulator and keeps the histories `predict` was given."""

    def __init__(self, simulator) -> None:
        self.simulator = simulator
        self.histories: list[np.ndarray] = []
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        return getattr(self.simulator, name)

    def predict(self, items, inputs, slates, member=-1, user_features=None, beliefs=None):
        self.histories.append(items.copy())
        self.calls.append(
            (
                items.copy(),
                inputs.copy(),
                slates.copy(),
                user_features,
                None if beliefs is None else beliefs.copy(),
            )
        )
        return self.simulator.predict(items, inputs, slates, member, user_features, beliefs)


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


def test_world_metrics_scores_a_filter_simulator_as_it_runs(world_logs):
    """The filter's state is carried over the episode: from the prior in the logged view, from the warm
    start in the observed one; while the history fits the window it predicts as the window does."""
    from simulators import SimulatorConfig, fit
    from simulators.report import world_metrics

    from .conftest import TINY

    simulator = fit(
        world_logs, SimulatorConfig(**{**TINY, "epochs": 1}, interest_filter=True, filter_dim=4)
    ).simulator
    spy = _Spy(simulator)
    world_metrics(spy, steps=256 * 40, seed=3)  # episodes end and restart meanwhile
    assert all(call[4] is not None for call in spy.calls)
    # The first observation fits the window, and so does the logged view while an episode has shown fewer
    # than L items (later observations have dropped warm-start items the carried state has read).
    compared = 0  # logged-view rows of episodes that started after the first step
    for j, (items, inputs, slates, features, beliefs) in enumerate(spy.calls):
        rows = (
            np.arange(len(items))
            if j == 0
            else np.flatnonzero((items < simulator.n_items).sum(1) < items.shape[1])
        )
        if j and j % 2 == 0:
            continue
        windowed = simulator.predict(items[rows], inputs[rows], slates[rows], -1, features[rows])["click"]
        carried = simulator.predict(
            items[rows], inputs[rows], slates[rows], -1, features[rows], beliefs[rows]
        )
        np.testing.assert_allclose(carried["click"], windowed, rtol=1e-4, atol=1e-6)
        if j > 1:  # new episodes after the first ones
            compared += int(((items[rows] < simulator.n_items).sum(1) == 0).sum())
    assert compared > 100
