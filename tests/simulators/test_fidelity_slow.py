"""Acceptance checks that need real training (pytest -m slow; minutes on 2 CPU cores)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_click_model_learned_from_200k_world_steps_matches_the_world():
    """AUC within 0.02 of the world's own true-probability AUC on fresh world logs; ECE below 0.02."""
    from recsim_env.world.logging import log_world
    from simulators import SimulatorConfig, fit
    from simulators.report import world_metrics

    logs = log_world("uniform", steps=200_000, seed=0, progress=False)
    simulator = fit(logs, SimulatorConfig(seed=0)).simulator
    metrics = world_metrics(simulator, steps=50_000, seed=1)
    assert metrics["auc_gap"] <= 0.02, metrics
    assert metrics["learned"]["ece"] < 0.02, metrics


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
