"""`seqrec leaderboard`: its config, a tiny run through the command, the files it writes, and continuing a run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from evaluation.leaderboard import LeaderboardConfig, row_names, run_leaderboard, write_leaderboard
from evaluation.leaderboard.report import t_interval
from recsim_env.errors import ArgumentError

runner = CliRunner()

TINY = {
    "seeds": 2,
    "episodes": 4,
    "time_budget_s": 2.0,
    "settings": ("default",),
    "references": ("uniform", "greedy"),
    "agents": ("ppo",),
    "agent_configs": {
        "ppo": {"num_envs": 2, "eval_interval": 10_000, "algo_config": {"n_steps": 16, "batch_size": 16}}
    },
    "log_steps": 400,
}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"seeds": 0}, "seeds"),
        ({"episodes": 1}, "episodes"),
        ({"time_budget_s": 0}, "time_budget_s"),
        ({"settings": ("weekly",)}, "settings"),
        ({"settings": ()}, "settings"),
        ({"references": ("greedy", "greedy")}, "references"),
        ({"agents": ("ppo", "alphazero")}, "agents"),
        ({"agents": "ppo"}, "agents"),
        ({"agent_configs": {"tscac": {}}}, "agent_configs"),
        ({"device": "tpu"}, "device"),
        ({"agents": ("ppo",), "agent_configs": {"ppo": {"n_stepz": 3}}}, "n_stepz"),
        ({"agents": ("dt4ier",), "agent_configs": {"dt4ier": {"train_steps": 3}}}, "train_steps"),
        ({"agents": ("ppo",), "agent_configs": {"ppo": {"seed": 3}}}, "set by the leaderboard"),
    ],
)
def test_bad_config_names_the_field(changes, named):
    with pytest.raises(ArgumentError, match=named):
        LeaderboardConfig(**changes)


def test_rows_settings_and_quick_defaults():
    config = LeaderboardConfig(agents=("ppo", "dqn", "supervised"), seeds=3)
    assert row_names(config)[-4:] == ["ppo", "ppo (sampled)", "dqn", "supervised"]
    assert config.env_kwargs("default") == {}
    assert config.env_kwargs("retention") == {"sessions_per_episode": 4, "retention_weight": 5.0}
    quick = config.with_quick_defaults(given={"seeds"})
    assert (quick.seeds, quick.episodes, quick.time_budget_s) == (3, 200, 60.0)  # a given value stays


def test_t_interval_matches_the_formula():
    low, high = t_interval([1.0, 2.0, 3.0])
    assert low == pytest.approx(2.0 - 4.302653 * 1.0 / 3**0.5, rel=1e-5)
    assert high == pytest.approx(2.0 + 4.302653 * 1.0 / 3**0.5, rel=1e-5)


def test_tiny_run_writes_every_file_and_continues_without_training_again(tmp_path):
    config = LeaderboardConfig(**TINY)
    results = run_leaderboard(config, tmp_path, progress=False, log=lambda line: None)
    assert [(r.row, r.seed) for r in results] == [
        (row, seed) for seed in range(2) for row in ("uniform", "greedy", "ppo", "ppo (sampled)")
    ]
    assert all(r.stats["episodes"] == 4 for r in results)
    train_file = tmp_path / "runs" / "default" / "ppo" / "seed-0" / "train.json"
    trained_at = train_file.stat().st_mtime_ns
    again = run_leaderboard(
        config, tmp_path, progress=False, log=lambda line: pytest.fail(f"retrained: {line}")
    )
    assert [r.to_dict() for r in again] == [r.to_dict() for r in results]
    assert train_file.stat().st_mtime_ns == trained_at

    summaries = write_leaderboard(results, config, tmp_path, command="test", wall_s=1.0)
    assert {s.row for s in summaries} == {"uniform", "greedy", "ppo", "ppo (sampled)"}
    greedy = next(s for s in summaries if s.row == "greedy")
    per_seed = [r.stats["mean_return"] for r in results if r.row == "greedy"]
    assert greedy.mean["mean_return"] == pytest.approx(sum(per_seed) / 2)
    low, high = greedy.ci95["mean_return"]
    assert low <= greedy.mean["mean_return"] <= high
    document = json.loads((tmp_path / "leaderboard.json").read_text())
    assert len(document["results"]) == 8 and document["config"]["seeds"] == 2
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "| greedy | baseline |" in markdown
    assert (tmp_path / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_of_another_protocol_are_not_reused(tmp_path):
    base = {**TINY, "agents": (), "agent_configs": {}}
    run_leaderboard(
        LeaderboardConfig(**{**base, "seeds": 1, "references": ("uniform",)}), tmp_path, progress=False
    )
    more = LeaderboardConfig(**{**base, "seeds": 2, "references": ("uniform", "popularity")})
    assert len(run_leaderboard(more, tmp_path, progress=False)) == 4  # seeds and rows may grow
    with pytest.raises(ArgumentError, match="episodes"):
        run_leaderboard(LeaderboardConfig(**{**base, "episodes": 5}), tmp_path, progress=False)


def test_a_run_stopped_mid_training_is_trained_again(tmp_path):
    config = LeaderboardConfig(**{**TINY, "seeds": 1, "references": ()})
    stale = tmp_path / "runs" / "default" / "ppo" / "seed-0"
    stale.mkdir(parents=True)
    (stale / "half-written").write_text("x")
    results = run_leaderboard(config, tmp_path, progress=False, log=lambda line: None)
    assert [r.row for r in results] == ["ppo", "ppo (sampled)"]
    assert not (stale / "half-written").exists()


def test_command_summaries_and_bad_option(tmp_path):
    from recsim_env.cli import build_app

    app = build_app()

    args = ["leaderboard", "--out", str(tmp_path), "--no-progress", "--seeds", "1", "--episodes", "4",
            "--settings", '["default"]', "--references", '["uniform", "popularity"]', "--agents", "[]",
            "--log-steps", "300"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| popularity | baseline |" in result.output
    bad = runner.invoke(app, [*args[:-2], "--log-steps", "0"])
    assert bad.exit_code == 2 and "log_steps" in bad.output
