"""`seqrec train-simulator` and `seqrec simulator-report` through typer's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys

import typer
from typer.testing import CliRunner

from simulators.cli import simulator_report_command, train_simulator_command


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command(name="train-simulator")(train_simulator_command)
    app.command(name="simulator-report")(simulator_report_command)
    return app


def test_train_then_report(world_logs, tmp_path):
    import simulators

    logs = tmp_path / "logs.parquet"
    world_logs.to_parquet(logs)
    out = tmp_path / "sim"
    runner = CliRunner()
    args = ["train-simulator", "--data", str(logs), "--out", str(out), "--d-model", "16", "--history-len", "8",
            "--epochs", "1", "--world", "no", "--episodes", "64", "--no-progress",
            "--window-stride", "4", "--click-loss-weight", "3", "--early-stopping", "click",
            "--no-user-features", "--no-item-features"]  # fmt: skip
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    chosen = config["window_stride"], config["click_loss_weight"], config["early_stopping"]
    assert (
        chosen == (4, 3.0, "click") and config["user_features"] is False and config["item_features"] is False
    )
    schema = json.loads((out / "schema.json").read_text())
    for table in ("user_features", "item_features"):
        assert schema[table] == {"numeric": [], "categorical": [], "token_sets": []}
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert 0.0 <= summary["click_auc"] <= 1.0
    for name in (
        "config.json",
        "weights.safetensors",
        "item_ids.json",
        "manifest.json",
        "fidelity.md",
        "sessions.png",
    ):
        assert (out / name).is_file(), name
    simulators.load(out)  # the manifest covers the report
    (out / "fidelity.md").unlink()
    result = runner.invoke(_app(), ["simulator-report", str(out), "--world", "no", "--episodes", "64"])
    assert result.exit_code == 0, result.output
    text = (out / "fidelity.md").read_text()
    assert "| click |" in text and "session_length" in text


def test_bad_input_exits_with_a_clear_error(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        _app(), ["train-simulator", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "missing.csv" in result.output
    result = runner.invoke(_app(), ["simulator-report", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert "nothing: not a saved artifact (no such directory)" in result.output


def test_cli_and_recsim_env_stay_light():
    code = (
        "import sys, recsim_env, simulators, simulators.cli; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "import gymnasium; gymnasium.make; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
