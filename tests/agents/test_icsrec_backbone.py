"""ICSRec as the policy backbone of `seqrec train --encoder icsrec`: the run trains, saves an ICSRec
policy, and the saved policy evaluates."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from agents.cli import evaluate_command, train_command

app = typer.Typer()
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
runner = CliRunner()


def test_seqrec_train_with_the_icsrec_encoder_saves_and_evaluates(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train", "--backend", "sb3", "--algo", "ppo", "--out", str(out), "--encoder", "icsrec",
            "--num-envs", "2", "--stop-timesteps", "64", "--eval-interval", "64", "--eval-episodes", "1",
            "--encoder-config", '{"d_model": 16, "n_layers": 1, "n_intents": 8}',
            "--algo-config", '{"n_steps": 32, "batch_size": 32}', "--env-config", '{"max_steps": 10}',
            "--no-progress",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "trained 64 steps" in result.output
    train_config = json.loads((out / "policy" / "policy.json").read_text())["config"]["train_config"]
    assert train_config["encoder"] == "icsrec" and train_config["encoder_config"]["n_intents"] == 8
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(out),
            "--env-config",
            '{"max_steps": 10}',
            "--episodes",
            "2",
            "--seed",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["episodes"] == 2
