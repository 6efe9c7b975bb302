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


def test_report_has_a_policy_value_section(tiny_fit, world_logs, tmp_path):
    import json

    import pytest

    from recsim_env.policies import GreedyPolicy, LoggedItemStats, MyopicOracle, UniformPolicy
    from recsim_env.world import UserWorld
    from simulators.report import write_report

    panel = {
        "uniform": UniformPolicy(500),
        "myopic-oracle": MyopicOracle(UserWorld()),
        "greedy": GreedyPolicy(LoggedItemStats.from_logs(world_logs)),
    }
    metrics = write_report(
        tiny_fit, tmp_path, world="default", episodes=32, world_steps=2000, panel=panel, panel_episodes=16
    )
    values = metrics["policy_values"]
    assert list(values["policies"]) == list(panel) and values["episodes"] == 16
    saved = json.loads((tmp_path / "fidelity.json").read_text())["policy_values"]
    assert saved["compared"] == values["compared"]
    text = (tmp_path / "fidelity.md").read_text()
    assert "## Policy values (world vs simulator)" in text and "Spearman rank correlation" in text
    uniform = values["policies"]["uniform"]
    row = f"| uniform | {uniform['world']['mean_return']:.2f} | {uniform['simulator']['mean_return']:.2f} |"
    assert row in text
    assert "| myopic-oracle |" in text and "- myopic-oracle: no simulated value" in text
    assert (tmp_path / "policy_values.png").is_file()
    with pytest.raises(ValueError, match="needs the world"):
        write_report(tiny_fit, tmp_path, world=None, panel=panel)


def test_simulator_report_command_runs_the_world_panel(saved_simulator, tmp_path):
    import shutil

    import typer
    from typer.testing import CliRunner

    from simulators.cli import simulator_report_command

    directory = tmp_path / "sim"
    shutil.copytree(saved_simulator, directory)
    app = typer.Typer()
    app.command()(simulator_report_command)
    app.command(name="unused")(lambda: None)  # two commands: typer then expects the command's name
    args = ["simulator-report-command", str(directory), "--world", "yes", "--episodes", "16", "--world-steps",
            "1000", "--panel-episodes", "4", "--panel-log-steps", "1000"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = (directory / "fidelity.md").read_text()
    for name in (
        "uniform",
        "popularity",
        "greedy",
        "filter-myopic",
        "filter-farsighted",
        "farsighted-oracle",
    ):
        assert f"| {name} |" in text
    result = CliRunner().invoke(app, [*args[:-2], "--panel-log-steps", "0"])
    assert result.exit_code == 1 and "panel_log_steps" in result.output
