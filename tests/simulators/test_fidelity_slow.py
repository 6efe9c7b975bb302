"""Acceptance checks that need real training (pytest -m slow; minutes on 2 CPU cores)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def world_click_metrics():
    """The default simulator trained on 200,000 uniform world steps, scored on 50,000 fresh ones."""
    from recsim_env.world.logging import log_world
    from simulators import SimulatorConfig, fit
    from simulators.report import world_metrics

    logs = log_world("uniform", steps=200_000, seed=0, progress=False)
    simulator = fit(logs, SimulatorConfig(seed=0)).simulator
    return world_metrics(simulator, steps=50_000, seed=1)


@pytest.mark.slow
def test_click_model_is_calibrated_on_fresh_world_logs(world_click_metrics):
    """ECE below 0.02, from the observation and from the history a world log holds."""
    assert world_click_metrics["learned"]["ece"] < 0.02, world_click_metrics
    assert world_click_metrics["logged_history"]["learned"]["ece"] < 0.02, world_click_metrics


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="issue 4 open: click AUC 0.035 below the world's (default with the interest filter, 2026-12-01); a "
    "filter told the world's equations is 0.018 below (benchmarks/RESULTS.md)",
)
def test_click_model_auc_is_within_002_of_the_worlds(world_click_metrics):
    """Issue 4's bar; not met (0.035 short on 2026-12-01, benchmarks/RESULTS.md)."""
    assert world_click_metrics["logged_history"]["auc_gap"] <= 0.02, world_click_metrics


@pytest.mark.slow
def test_train_simulator_on_ml100k_in_under_10_minutes(tmp_path):
    import time

    from tests.simulators.conftest import ML100K

    if not ML100K.is_dir():
        pytest.skip(f"MovieLens 100K not found at {ML100K}")
    from typer.testing import CliRunner

    from tests.simulators.test_cli import _app

    started = time.perf_counter()
    result = CliRunner().invoke(
        _app(), ["train-simulator", "--data", str(ML100K), "--out", str(tmp_path / "sim"), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - started < 600
    assert (tmp_path / "sim" / "fidelity.md").is_file()
