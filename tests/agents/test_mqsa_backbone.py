"""MQSA-TED as the policy backbone of `seqrec train --encoder mqsa`: PPO trains, saves and evaluates."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from agents.cli import evaluate_command, train_command
from tests.agents.test_cli import TINY

app = typer.Typer()
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)


def test_ppo_trains_and_evaluates_with_the_mqsa_encoder(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    arguments = ["train", "--backend", "sb3", "--algo", "ppo", "--encoder", "mqsa", "--out", str(out), *TINY]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "trained 128 steps" in result.output
    saved = json.loads((out / "policy" / "policy.json").read_text())["config"]["train_config"]
    assert saved["encoder"] == "mqsa" and saved["encoder_config"]["query_window"] == 3
    result = runner.invoke(
        app, ["evaluate", str(out), "--env-config", '{"max_steps": 10}', "--episodes", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["episodes"] == 2
