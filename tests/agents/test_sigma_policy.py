"""`seqrec train --encoder sigma`: a PPO policy on a SIGMA backbone trains, saves and evaluates."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from agents.cli import evaluate_command, train_command
from tests.agents.test_cli import TINY

app = typer.Typer()
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
runner = CliRunner()


def test_ppo_with_a_sigma_backbone_trains_and_evaluates(tmp_path):
    out = tmp_path / "run"
    arguments = ["train", "--backend", "sb3", "--algo", "ppo", "--encoder", "sigma", "--out", str(out), *TINY]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "trained 128 steps" in result.output
    assert json.loads((out / "state" / "train_config.json").read_text())["encoder"] == "sigma"
    result = runner.invoke(
        app, ["evaluate", str(out), "--env-config", '{"max_steps": 10}', "--episodes", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["episodes"] == 2
