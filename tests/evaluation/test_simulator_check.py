"""The simulator check: panel values in a learned simulator beside their off-policy estimates on the log."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.simulator_check import (
    EpsilonMixturePolicy,
    LoggedSteps,
    SimulatorCheckConfig,
    StepReward,
    item_frequency_pscore,
    logged_steps,
    off_policy_estimates,
    verdict,
)
from recsim_env.errors import ArgumentError
from recsim_env.policies import GreedyPolicy, LoggedItemStats, UniformPolicy
from simulators.data import ExposureLog

TINY = {"d_model": 16, "history_len": 8, "epochs": 2, "batch_size": 128, "dropout": 0.0, "seed": 0}


@pytest.fixture(scope="module")
def tiny_simulator():
    import torch

    from recsim_env.world.logging import log_world
    from simulators import SimulatorConfig, fit

    torch.set_num_threads(1)
    logs = log_world("uniform", steps=3000, seed=0, progress=False, num_envs=64)
    return fit(logs, SimulatorConfig(**TINY)).simulator


def test_step_reward_thresholds_a_signal():
    feedback = np.array([[1.0, 5.0], [1.0, 3.0], [0.0, 0.0]])
    assert StepReward(signal="rating", threshold=4).of(feedback, ("click", "rating")).tolist() == [1, 0, 0]
    assert StepReward().of(feedback, ("click", "rating")).tolist() == [1, 1, 0]
    with pytest.raises(ArgumentError, match="'watch' is not a signal"):
        StepReward(signal="watch").of(feedback, ("click", "rating"))


def test_config_refuses_an_unknown_estimator():
    with pytest.raises(ArgumentError, match="verdict_estimator"):
        SimulatorCheckConfig(verdict_estimator="MIPS")


def test_logged_steps_read_only_the_users_earlier_rows():
    log = ExposureLog(
        offsets=np.array([0, 3, 5]),
        items=np.array([4, 5, 6, 7, 8]),
        feedback=np.arange(10, dtype=np.float32).reshape(5, 2),
        gap_before=np.zeros(5, np.float32),
        leave=np.zeros(5, np.float32),
        leave_known=np.ones(5, bool),
        return_gap=np.zeros(5, np.float32),
        return_gap_known=np.zeros(5, bool),
        user_features=np.zeros((2, 0), np.float32),
    )
    steps = logged_steps(log, np.array([0, 1]), history_len=2, n_items=9, reward=np.arange(5.0))
    assert steps.action.tolist() == [4, 5, 6, 7, 8]
    assert steps.item_ids.tolist() == [[9, 9], [9, 4], [4, 5], [9, 9], [9, 7]]  # user 1 never sees user 0
    assert steps.feedback[2].tolist() == [[0, 1], [2, 3]] and not steps.feedback[3].any()
    assert steps.reward.tolist() == [0, 1, 2, 3, 4]


def test_off_policy_estimates_cover_a_known_value():
    """A context-free logger with unknown propensities: the item-frequency behaviour model is then right,
    and every interval covers the uniform policy's true value, mean_a q(a)."""
    rng = np.random.default_rng(3)
    n_items, n = 6, 20_000
    p_b = rng.dirichlet(np.ones(n_items) * 2)
    q = rng.uniform(0.1, 0.9, n_items)
    action = rng.choice(n_items, size=n, p=p_b)
    reward = (rng.random(n) < q[action]).astype(float)
    steps = LoggedSteps(np.full((n, 1), n_items), np.zeros((n, 1, 1), np.float32), action, reward)
    pscore = item_frequency_pscore(action, n_items)
    np.testing.assert_allclose(pscore, p_b[action], atol=0.01)
    uniform = np.full((n, n_items), 1.0 / n_items)
    out = off_policy_estimates(steps, uniform, pscore, q, alpha=0.05, n_bootstrap=200, seed=0)
    truth = q.mean()
    for name, e in out["estimates"].items():
        assert e["lower"] <= truth <= e["upper"], (name, e, truth)
    assert out["estimates"]["DM"]["value"] == pytest.approx(truth)
    frequency = np.bincount(action, minlength=n_items) / n  # ESS share = 1 / E_b[w^2] for these weights
    assert out["ess_share"] == pytest.approx(1.0 / np.sum((1.0 / n_items) ** 2 / frequency))
    # A wrong behaviour model (uniform propensities) moves IPS off the truth: the estimate depends on it.
    wrong = off_policy_estimates(
        steps, uniform, np.full(n, 1 / n_items), q, alpha=0.05, n_bootstrap=200, seed=0
    )
    assert not wrong["estimates"]["IPS"]["lower"] <= truth <= wrong["estimates"]["IPS"]["upper"]


def test_verdict_reads_the_interval_then_the_tolerance():
    estimate = {"value": 0.5, "lower": 0.45, "upper": 0.55}
    assert verdict(0.52, estimate, 0.0)["verdict"] == "agree"
    assert verdict(0.58, estimate, 0.2) == {
        "verdict": "agree",
        "relative_difference": pytest.approx(0.16),
        "reason": "outside the interval, within 20% of the estimate",
    }
    far = verdict(0.9, estimate, 0.1)
    assert far["verdict"] == "disagree" and far["reason"].startswith("above the interval, +80%")
    assert verdict(0.1, estimate, 0.1)["reason"].startswith("below")


def test_epsilon_mixture_distribution_matches_its_actions():
    stats = LoggedItemStats(np.arange(10.0), np.full(10, 20.0), None, None, None)
    policy = EpsilonMixturePolicy(GreedyPolicy(stats), 0.4)
    obs = {"item_ids": np.full((4000, 3), 10), "feedback": np.zeros((4000, 3, 1), np.float32)}
    dist = policy.action_distribution(obs)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0)
    assert dist[0, 9] == pytest.approx(0.6 + 0.04)
    policy.seed(0)
    shown = policy.act(obs)
    assert np.mean(shown == 9) == pytest.approx(0.64, abs=0.03)
    assert policy.action_distribution(obs).shape == UniformPolicy(10).action_distribution(obs).shape


def test_check_values_every_panel_policy_reproducibly(tiny_simulator):
    from evaluation.simulator_check import simulator_check

    config = SimulatorCheckConfig(episodes=32, max_steps=8, num_envs=16, n_bootstrap=100, seed=2)
    result = simulator_check(tiny_simulator, reward=StepReward(), config=config)
    assert list(result["policies"]) == ["uniform", "popularity", "greedy", "epsilon-greedy (0.3)"]
    for entry in result["policies"].values():
        sim = entry["simulated"]
        assert sim["episodes"] == 32 and sim["lower"] <= sim["value"] <= sim["upper"]
        assert 0.0 <= sim["value"] <= 1.0 and 0.0 <= sim["first_step"] <= 1.0
        assert set(entry["off_policy"]) == {"DM", "IPS", "SNIPS", "DR"}
        assert entry["verdict"] in ("agree", "disagree")
    # The world's uniform logger: uniform's weights are near 1, greedy's concentrate on few rows.
    assert result["policies"]["uniform"]["ess_share"] > 0.5 > 0.1 > result["policies"]["greedy"]["ess_share"]
    assert result["agree"] == sum(e["verdict"] == "agree" for e in result["policies"].values())
    assert result["log"]["rows"] <= config.max_rows
    again = simulator_check(tiny_simulator, reward=StepReward(), config=config)
    assert json.dumps(again, sort_keys=True) == json.dumps(result, sort_keys=True)


def test_command_writes_the_report(tiny_simulator, tmp_path):
    import typer
    from typer.testing import CliRunner

    from evaluation.simulator_check_report import simulator_check_command
    from simulators import save

    directory = save(tiny_simulator, tmp_path / "sim")
    app = typer.Typer()
    app.command()(simulator_check_command)
    out = tmp_path / "report"
    runner = CliRunner()
    args = [str(directory), "--out", str(out), "--episodes", "16", "--max-steps", "5", "--n-bootstrap", "50"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md", "values.png"]
    report = json.loads((out / "report.json").read_text())
    text = (out / "report.md").read_text()
    assert "**Verdict**" in text and "Spearman" in text and all(name in text for name in report["policies"])
    bad = runner.invoke(app, [*args[:3], "--out", str(tmp_path / "bad"), "--estimator", "MIPS"])
    assert bad.exit_code == 1 and "verdict_estimator" in bad.output
    assert not (tmp_path / "bad").exists()
