"""`evaluation.attacks.world`: the clean / poisoned / defended pipeline end to end on a tiny world log."""

from __future__ import annotations

import json

import numpy as np
import pytest

TINY_SIMULATOR = {"d_model": 16, "history_len": 8, "batch_size": 128, "dropout": 0.0}


def _length_defence(data, seed: int, item_table: np.ndarray) -> np.ndarray:
    """A stand-in defence that sees the logs only: longer sequences weigh less (deterministic)."""
    assert item_table.shape[0] == data.n_items
    lengths = np.bincount(data.frame["user_id"].to_numpy(), minlength=data.n_users).astype(np.float64)
    return 1.0 / (1.0 + lengths / lengths.mean())


def _config(**changes):
    from evaluation.attacks.world import WorldAttackConfig

    fields = dict(
        steps=2000,
        epochs=1,
        fraction=0.05,
        simulator=TINY_SIMULATOR,
        probe_episodes=32,
        policy_episodes=32,
        sessions_per_episode=1,
        max_steps=15,
        seed=0,
    )
    return WorldAttackConfig(**{**fields, **changes})


@pytest.fixture(scope="module")
def tiny_run():
    from evaluation.attacks.world import run_world_attack

    return run_world_attack(_config(), defence=_length_defence)


def _without_timings(d: dict) -> dict:
    d = json.loads(json.dumps(d))
    d.pop("seconds")
    for arm in d["arms"].values():
        arm.pop("fit_seconds")
    return d


def test_the_pipeline_fits_every_arm_and_counts_within_bounds(tiny_run):
    d = tiny_run.to_dict()
    assert list(d["arms"]) == ["clean", "poisoned", "defended", "oracle"]
    assert d["n_fake_users"] == max(1, round(0.05 * d["n_real_users"]))
    assert len(d["targets"]) == 1
    counted = [d["world_probe"], d["uniform_in_world"]]
    counted += [arm[key] for arm in d["arms"].values() for key in ("probe_in_simulator", "policy_in_world")]
    for c in counted:
        assert c["episodes"] == 32
        assert 0 <= c["target_clicked"] <= c["target_shown"] <= c["steps"]
        for key in ("target_shown_per_1000", "target_clicked_per_1000"):
            low, high = c[f"{key}_ci95"]
            assert 0.0 <= low <= c[key] <= high <= 1000.0
        assert c["target_clicked_per_1000"] <= c["target_shown_per_1000"]
        assert 0.0 <= c["click_rate"] <= 1.0
    # The probe shows a target at about half of the steps, in the world and in every simulator.
    for c in [d["world_probe"]] + [arm["probe_in_simulator"] for arm in d["arms"].values()]:
        assert 400 < c["target_shown_per_1000"] < 600
        assert 0.0 <= c["target_click_rate_when_shown"] <= 1.0
    # Uniform shows the one target at 1 step in 500.
    assert d["uniform_in_world"]["target_shown_per_1000"] < 10
    for arm in d["arms"].values():
        probe = arm["probe_in_simulator"]["target_click_rate_when_shown"]
        assert arm["target_click_rate_error"] == pytest.approx(
            probe - d["world_probe"]["target_click_rate_when_shown"]
        )
        deployed = arm["policy_in_world"]
        assert (deployed["target_click_rate_when_shown"] is None) == (deployed["target_shown"] == 0)
    # The defence's weights are scored against the labels it never saw.
    assert 0.0 <= d["defence"]["fake_auc"] <= 1.0


def test_a_run_is_reproducible_for_a_seed(tiny_run):
    from evaluation.attacks.world import run_world_attack

    again = run_world_attack(_config(), defence=_length_defence)
    assert _without_timings(again.to_dict()) == _without_timings(tiny_run.to_dict())


def test_poisoning_changes_the_simulator_and_equal_weights_do_not_defend(tiny_run):
    """The poisoned arm trains on other data than the clean one; a defence that weighs everyone alike
    fits exactly the poisoned simulator (same data, same seed)."""
    import torch

    from evaluation.attacks.world import run_world_attack

    def state(simulator):
        return [p.clone() for m in simulator.members for p in m.state_dict().values()]

    clean, poisoned = state(tiny_run.simulators["clean"]), state(tiny_run.simulators["poisoned"])
    assert any(p.shape != q.shape or not torch.equal(p, q) for p, q in zip(clean, poisoned))
    equal = run_world_attack(_config(oracle=False), defence=lambda data, seed, table: np.ones(data.n_users))
    assert list(equal.arms) == ["clean", "poisoned", "defended"]
    for p, q in zip(state(equal.simulators["defended"]), state(equal.simulators["poisoned"])):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert equal.arms["defended"]["policy_in_world"] == equal.arms["poisoned"]["policy_in_world"]


def test_world_report_writes_markdown_json_and_a_plot(tiny_run, tmp_path):
    from evaluation.attacks.world import REPORT_FILES, world_report

    out = tmp_path / "report"
    paths = world_report(tiny_run, out)
    assert sorted(paths) == sorted(REPORT_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)  # no temporaries left
    saved = json.loads((out / "report.json").read_text())
    assert saved["arms"]["poisoned"]["policy_in_world"] == tiny_run.arms["poisoned"]["policy_in_world"]
    text = (out / "report.md").read_text()
    assert "| world (truth) |" in text and "| poisoned simulator's |" in text
    assert (out / "world_attack.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_probe_shows_targets_at_its_share():
    from evaluation.attacks.world import TargetProbePolicy

    obs = {"item_ids": np.zeros((4000, 5), np.int64)}
    targets = np.array([3, 17])
    probe = TargetProbePolicy(500, targets, 0.25)
    actions = probe.act(obs)
    assert actions.shape == (4000,)
    share = np.isin(actions, targets).mean()
    assert 0.22 < share < 0.28  # 0.25 plus the uniform draws' 2 in 500
    assert probe.action_distribution(obs)[0, targets].sum() == pytest.approx(0.25 + 0.75 * 2 / 500)
    assert np.isin(TargetProbePolicy(500, targets, 1.0).act(obs), targets).all()


def test_weight_separation_is_the_auc_of_a_low_weight_for_being_fake():
    from evaluation.attacks.world import weight_separation

    fake = np.array([False, False, False, True, True])
    assert weight_separation(np.array([1.0, 0.9, 0.8, 0.1, 0.2]), fake)["fake_auc"] == 1.0
    assert weight_separation(np.array([0.1, 0.2, 0.3, 0.9, 0.8]), fake)["fake_auc"] == 0.0
    # Fake 0.5 ties one real 0.5 and lies below one of three; fake 0.1 below all three: (1.5 + 3) / 6.
    separation = weight_separation(np.array([0.5, 0.9, 0.2, 0.5, 0.1]), fake)
    assert separation["fake_auc"] == pytest.approx(4.5 / 6)
    assert separation["mean_weight_fake"] == pytest.approx(0.3)


def test_targets_come_from_the_least_popular_half():
    from evaluation.attacks.world import pick_targets
    from recsim_env.world import UserWorld

    world = UserWorld()
    targets = pick_targets(world, 5, seed=3)
    popularity = world.item_popularity()
    assert len(set(targets.tolist())) == 5 and (popularity[targets] < np.median(popularity)).all()
    np.testing.assert_array_equal(targets, pick_targets(world, 5, seed=3))


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"fraction": 1.5}, "fraction"),
        ({"kind": "bogus"}, "kind"),
        ({"simulator": {"seed": 3}}, "seed"),
        ({"simulator": {"d_modle": 8}}, "d_modle"),
        ({"simulator": {"d_model": 0}}, "d_model"),
        ({"targets": "7"}, "targets"),
        ({"logger": "nobody"}, "logger"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(changes, match):
    from recsim_env.errors import ArgumentError

    with pytest.raises((ArgumentError, ValueError), match=match):
        _config(**changes)


def test_an_unknown_target_or_bad_defence_weights_are_refused():
    from evaluation.attacks.world import run_world_attack
    from recsim_env.errors import ArgumentError

    with pytest.raises(ArgumentError, match="targets"):
        run_world_attack(_config(targets=(500,)), defence=_length_defence)
    with pytest.raises(ArgumentError, match="defence"):
        run_world_attack(_config(), defence=lambda data, seed, table: np.ones(3))


def test_the_command_writes_the_report(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from evaluation.attacks import world
    from evaluation.attacks.world_cli import app

    monkeypatch.setattr(world, "default_defence", _length_defence)  # LoRec's own: the slow test below

    out = tmp_path / "world"
    args = ["world", "--out", str(out), "--steps", "2000", "--epochs", "1", "--fraction", "0.05"]
    args += ["--simulator", json.dumps(TINY_SIMULATOR), "--probe-episodes", "16", "--policy-episodes", "16"]
    args += ["--sessions-per-episode", "1", "--max-steps", "10", "--no-oracle", "--target", "7"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["targets"] == [7] and list(line["arms"]) == ["clean", "poisoned", "defended"]
    saved = json.loads((out / "report.json").read_text())
    assert saved["config"]["targets"] == [7]
    assert 0.0 <= saved["defence"]["fake_auc"] <= 1.0


@pytest.mark.slow
def test_lorecs_calibrator_weighs_the_defended_arm():
    """The default defence (`evaluation.attacks.defence.defend`, about 25 s on a shared CPU)."""
    from evaluation.attacks.world import default_defence, run_world_attack

    result = run_world_attack(_config(oracle=False))
    separation = result.defence
    assert 0.0 <= separation["fake_auc"] <= 1.0
    assert 0.0 < separation["mean_weight_real"] <= 1.0 + 1e-9
    # The defence weighs the defended arm: its weights are LoRec's for these logs and this seed.
    from evaluation.attacks.poisoning import PoisonConfig, poison
    from recsim_env.world.logging import log_world

    logs = log_world("uniform", steps=2000, seed=0, progress=False)
    poisoned = poison(
        logs, PoisonConfig(kind="sequential", fraction=0.05, targets=tuple(result.targets), seed=0)
    )
    from evaluation.attacks.world import _item_table

    weights = default_defence(poisoned.data, 0, _item_table(result.simulators["poisoned"]))
    assert weights[~poisoned.fake_users].mean() == pytest.approx(separation["mean_weight_real"])


def test_the_command_refuses_a_bad_fraction(tmp_path):
    from typer.testing import CliRunner

    from evaluation.attacks.world_cli import app

    result = CliRunner().invoke(app, ["world", "--out", str(tmp_path / "x"), "--fraction", "1.5"])
    assert result.exit_code != 0 and "fraction" in result.output
    assert not (tmp_path / "x").exists()
