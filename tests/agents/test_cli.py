"""`seqrec train` / `seqrec evaluate`: clear errors before any training, JSON output, any saved policy."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from agents.cli import evaluate_command, train_command

app = typer.Typer()
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
runner = CliRunner()

TINY = [
    "--num-envs", "2", "--stop-timesteps", "128", "--eval-interval", "64", "--eval-episodes", "2",
    "--encoder-config", '{"d_model": 16, "n_layers": 1}', "--algo-config", '{"n_steps": 32, "batch_size": 32}',
    "--env-config", '{"max_steps": 10}', "--no-progress",
]  # fmt: skip


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--env-config", '{"histroy_len": 5}'], "histroy_len"),
        (["--env-config", '{"world_config": {"n_itemz": 5}}'], "n_itemz"),
        (["--env-config", "[1, 2]"], "JSON object"),
        (["--encoder", "transformerxl"], "unknown encoder 'transformerxl'"),
        (["--algo", "sac"], "unknown algorithm 'sac'"),
        (["--backend", "tf"], "backend"),
        (["--env", "SeqRec-v9"], "v9"),
    ],
)
def test_bad_runs_fail_before_anything_starts(arguments, message, tmp_path):
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), *arguments])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "run").exists()


def test_every_train_config_field_is_an_option():
    import dataclasses

    from agents.training import TrainConfig

    result = runner.invoke(app, ["train", "--help"], terminal_width=200)
    for field in dataclasses.fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--resume", "{run}", "--encoder", "gru4rec"], "--encoder: --resume keeps the run's config"),
        (
            ["--agent", "dt4ier", "--data", "x.parquet", "--out", "{run}2", "--num-envs", "4"],
            "--num-envs: for --agent rl",
        ),
    ],
)
def test_options_that_would_be_ignored_are_refused(arguments, message, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    result = runner.invoke(app, ["train", *(a.replace("{run}", str(run)) for a in arguments)])
    assert result.exit_code == 2 and message in result.output


def test_a_time_budget_alone_trains_until_it_runs_out(tmp_path, monkeypatch):
    import agents.training

    seen = {}

    def fake_train(config, out, **kwargs):
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr(agents.training, "train", fake_train)
    runner.invoke(app, ["train", "--out", str(tmp_path / "a"), "--time-budget", "30"])
    assert seen["config"].stop_timesteps >= 10**12 and seen["config"].time_budget_s == 30
    runner.invoke(
        app, ["train", "--out", str(tmp_path / "b"), "--time-budget", "30", "--stop-timesteps", "500"]
    )
    assert seen["config"].stop_timesteps == 500
    runner.invoke(app, ["train", "--out", str(tmp_path / "c")])
    assert seen["config"].stop_timesteps == 100_000 and seen["config"].time_budget_s is None


def test_train_then_resume_then_evaluate_the_saved_policy(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--backend", "sb3", "--algo", "ppo", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert "trained 128 steps" in result.output
    result = runner.invoke(app, ["train", "--resume", str(out), "--stop-timesteps", "192", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "trained 192 steps" in result.output
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(out),
            "--env-config",
            '{"max_steps": 10}',
            "--episodes",
            "4",
            "--seed",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["policy"] == "sb3-ppo" and stats["episodes"] == 4


def test_evaluate_a_baseline_prints_return_interval_click_rate_session_length_and_gap():
    result = runner.invoke(app, ["evaluate", "--policy", "uniform", "--episodes", "20", "--seed", "0"])
    assert result.exit_code == 0, result.output
    for text in ("mean return", "95% CI", "click rate", "session length", "return gap"):
        assert text in result.output
    first = runner.invoke(
        app, ["evaluate", "--policy", "uniform", "--episodes", "20", "--seed", "0", "--json"]
    )
    second = runner.invoke(
        app, ["evaluate", "--policy", "uniform", "--episodes", "20", "--seed", "0", "--json"]
    )
    assert json.loads(first.output) == json.loads(second.output)  # seeded


def test_evaluate_fits_greedy_on_given_logs_and_loads_saved_baselines(world_logs, tmp_path):
    from agents.baselines import fit_baseline

    logs = tmp_path / "logs.parquet"
    world_logs.to_parquet(logs)
    result = runner.invoke(
        app, ["evaluate", "--policy", "greedy", "--logs", str(logs), "--episodes", "10", "--json"]
    )
    assert result.exit_code == 0, result.output
    from_logs = json.loads(result.output)
    fit_baseline("greedy", world_logs).save(tmp_path / "greedy")
    result = runner.invoke(app, ["evaluate", str(tmp_path / "greedy"), "--episodes", "10", "--json"])
    assert json.loads(result.output) == from_logs


def test_evaluate_needs_exactly_one_policy(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path), "--policy", "uniform"])
    assert result.exit_code == 2 and "one of them" in result.output
    result = runner.invoke(app, ["evaluate", "--policy", "best"])
    assert (
        result.exit_code == 2 and "unknown policy" in result.output and "filter-farsighted" in result.output
    )


def test_importing_agents_and_its_cli_loads_no_torch_ray_or_sb3():
    import subprocess
    import sys

    code = (
        "import sys, agents, agents.cli, agents.policy, agents.baselines, agents.training; "
        "print(sorted(m for m in ('torch', 'ray', 'stable_baselines3') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


@pytest.mark.parametrize(
    ("algo", "algo_config"),
    [("a2c", '{"n_steps": 16}'), ("dqn", '{"learning_starts": 16, "buffer_size": 500}')],
)
def test_a2c_and_dqn_train_resume_and_evaluate_through_the_commands(algo, algo_config, tmp_path):
    out = tmp_path / algo
    arguments = [a if a != '{"n_steps": 32, "batch_size": 32}' else algo_config for a in TINY]
    result = runner.invoke(app, ["train", "--backend", "sb3", "--algo", algo, "--out", str(out), *arguments])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--resume", str(out), "--stop-timesteps", "192", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "trained 192 steps" in result.output
    result = runner.invoke(
        app, ["evaluate", str(out), "--episodes", "3", "--env-config", '{"max_steps": 10}', "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["policy"] == f"sb3-{algo}"


@pytest.mark.parametrize("name", ["filter-farsighted", "myopic-oracle"])
def test_evaluate_runs_the_world_references(name):
    result = runner.invoke(
        app, ["evaluate", "--policy", name, "--episodes", "4", "--env-config", '{"max_steps": 10}', "--json"]
    )
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output.strip().splitlines()[-1])
    assert stats["episodes"] == 4 and stats["policy"] == name


def test_world_references_need_the_world():
    result = runner.invoke(
        app, ["evaluate", "--policy", "filter-myopic", "--env-config", '{"dataset": "ml-100k"}']
    )
    assert result.exit_code == 2 and "needs the world" in result.output


def test_options_a_world_reference_would_ignore_are_refused():
    result = runner.invoke(app, ["evaluate", "--policy", "filter-myopic", "--sample", "--episodes", "4"])
    assert result.exit_code == 2 and "--deterministic/--sample" in result.output
