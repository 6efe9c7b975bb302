"""LoRec's calibrator: it ranks planted fake users above real ones, its weight rule, its determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.attacks import PoisonConfig, poison
from evaluation.attacks.defence import (
    Calibrator,
    CalibratorScores,
    DefenceConfig,
    LoRecWeights,
    defend,
    flag_threshold,
    flagged_users,
    text_embeddings,
    train_defended,
)
from evaluation.attacks.measure import detection_auc
from recsim_env.data import LoggedInteractions
from recsim_env.errors import ArgumentError


def genre_logs(n_users: int = 80, seed: int = 0) -> LoggedInteractions:
    """Users who each like one of four genres of 15 items (Zipf popularity within the genre), items
    titled by genre: real sequences are coherent, random fillers are not."""
    rng = np.random.default_rng(seed)
    genres = ("space war", "love story", "funny animals", "dark crime")
    p = 1.0 / np.arange(1, 16)
    p /= p.sum()
    rows = []
    for u in range(n_users):
        genre = u % 4
        items = genre * 15 + rng.choice(15, size=int(rng.integers(8, 14)), replace=False, p=p)
        rows += [(u, int(i), 1000.0 * t, float(rng.integers(3, 6))) for t, i in enumerate(items)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    titles = pd.DataFrame({"item_id": np.arange(60), "title": [f"{genres[i // 15]} {i}" for i in range(60)]})
    return LoggedInteractions.from_frame(frame, items=titles, name="genres")


@pytest.fixture(scope="module")
def attacked():
    logs = genre_logs()
    return poison(logs, PoisonConfig(kind="random", fraction=0.1, targets=(59,), target_share=0.2, seed=2))


@pytest.mark.parametrize("use_text", [False, True])
def test_the_calibrator_ranks_planted_fake_users_above_real_ones(attacked, use_text):
    config = DefenceConfig(use_text=use_text, steps=100, folds=3, seed=0)
    calibrator = Calibrator(attacked.data, config)
    scores = calibrator.score()
    assert scores.logged.shape == calibrator.users.shape
    assert scores.simulated.shape == (len(calibrator.fakes.groups),)
    assert detection_auc(scores.logged, attacked.fake_users[calibrator.users]) > 0.8
    # Held out, the simulated fakes still score above the logged users' median.
    assert np.median(scores.simulated) > np.median(scores.logged)


@pytest.mark.parametrize("rule", [{}, {"flag_recall": None}])
def test_defence_weights_fall_on_the_fake_users_and_repeat_per_seed(attacked, rule):
    # 8 fake users of 88: the defender's bound on the fake share must allow them.
    config = DefenceConfig(steps=100, folds=3, updates=6, seed=0, max_flagged_fraction=0.15, **rule)
    weights = defend(attacked.data, config)
    assert weights.shape == (attacked.data.n_users,)
    assert weights[attacked.fake_users].mean() < 0.5 < weights[~attacked.fake_users].mean()
    assert np.array_equal(weights, defend(attacked.data, config))


def test_lorec_weights_need_four_flags_and_skip_when_a_third_would_be_flagged():
    weights = LoRecWeights(10, initial_weight=3.0)
    users = np.arange(10)
    suspicious = np.where(users == 0, 0.9, 0.01)
    for flags in range(1, 5):
        assert weights.update(suspicious, users)
        below = weights.weights()[0] < 0.5
        assert below == (flags >= 4)
    assert np.all(weights.weights()[1:] >= 1.0)
    before = weights.coefficients.copy()
    assert not weights.update(np.where(users < 4, 0.9, 0.01), users)  # 4 of 10 >= a third: skipped
    assert np.array_equal(weights.coefficients, before)


def fixed(logged, simulated=(0.5,)) -> CalibratorScores:
    return CalibratorScores(np.asarray(logged, dtype=float), np.asarray(simulated, dtype=float))


def test_flagging_needs_the_threshold_and_respects_the_defenders_bound():
    users = np.arange(100, 120)
    scores = fixed(np.r_[0.9, 0.8, 0.7, 0.45, np.full(16, 0.01)])
    config = DefenceConfig(flag_recall=None, flag_threshold=0.5, max_flagged_fraction=0.25)
    assert flagged_users(scores, users, config).tolist() == [100, 101, 102]
    capped = DefenceConfig(flag_recall=None, flag_threshold=0.5, max_flagged_fraction=0.1)  # 2 of 20
    assert flagged_users(scores, users, capped).tolist() == [100, 101]
    assert flagged_users(fixed(np.full(20, 0.3)), users, config).size == 0  # nobody is likely fake
    lorec = DefenceConfig(flag_recall=None, flag_threshold=None)  # above the mean: 0.45 too
    assert flagged_users(scores, users, lorec).tolist() == [100, 101, 102, 103]


def test_the_recall_rule_takes_its_threshold_from_the_held_out_simulated_fakes():
    users = np.arange(20)
    logged = np.r_[0.9, 0.6, 0.35, 0.2, np.full(16, 0.01)]
    simulated = np.linspace(0.3, 1.0, 11)  # 0.30, 0.37, ..., 1.0
    config = DefenceConfig(flag_recall=0.9, max_flagged_fraction=0.25)
    # 90% of the simulated fakes score 0.37 or more: 0.9 and 0.6 pass, 0.35 does not.
    assert flag_threshold(fixed(logged, simulated), config) == pytest.approx(0.37)
    assert flagged_users(fixed(logged, simulated), users, config).tolist() == [0, 1]
    # Simulated fakes the calibrator finds hard lower the threshold, so more users are flagged...
    hard = np.r_[simulated, np.full(11, 0.1)]
    assert flagged_users(fixed(logged, hard), users, config).tolist() == [0, 1, 2, 3]
    # ... but never more than the defender's bound (2 of 20 here).
    capped = DefenceConfig(flag_recall=0.9, max_flagged_fraction=0.1)
    assert flagged_users(fixed(logged, hard), users, capped).tolist() == [0, 1]
    # A full recall reaches down to the lowest simulated fake, which is then flagged at equality.
    full = DefenceConfig(flag_recall=1.0, max_flagged_fraction=0.25)
    assert flagged_users(fixed([0.3, 0.29, 0.0, 0.0], [0.3, 0.9]), np.arange(4), full).tolist() == [0]
    # The recall rule ignores flag_threshold.
    both = DefenceConfig(flag_recall=0.9, flag_threshold=0.95, max_flagged_fraction=0.25)
    assert flagged_users(fixed(logged, simulated), users, both).tolist() == [0, 1]


def test_simulations_cover_the_target_counts():
    from evaluation.attacks.defence import simulate_fakes

    logs = genre_logs()
    config = DefenceConfig(simulated_kinds=("insertion",), simulated_target_shares=(0.3,) * 3, seed=1)
    fakes = simulate_fakes(logs, config)
    seen = []
    for g in range(3):
        offsets, items, _, _ = fakes.group(g)
        repeated = set()  # an insertion fake user repeats its targets only (real users repeat nothing)
        for lo, hi in zip(offsets[:-1], offsets[1:], strict=True):
            values, counts = np.unique(items[lo:hi], return_counts=True)
            repeated |= set(values[counts > 1].tolist())
        seen.append(len(repeated))
    assert seen == [1, 2, 3]


def test_text_embeddings_are_unit_rows_and_the_same_in_every_call():
    items = pd.DataFrame({"title": ["Toy Story", "GoldenEye", None], "year": [1995, 1995, 1996]})
    table = text_embeddings(items, 4, 32)
    assert table.shape == (4, 32)
    assert np.allclose(np.linalg.norm(table[:2], axis=1), 1.0) and not table[2:].any()
    assert np.array_equal(table, text_embeddings(items, 4, 32))


def test_train_defended_alternates_and_retrains_with_the_final_weights(attacked):
    from recsim_env import encoders
    from recsim_env.encoders.trainer import TrainerConfig

    data = attacked.data

    def build():
        return encoders.build("sasrec", {"n_items": data.n_items, "max_len": 8, "d_model": 16})

    trainer = TrainerConfig(epochs=6, batch_size=64, seed=0, progress=False, num_threads=1)
    config = DefenceConfig(steps=60, folds=2, start_epoch=1, update_every=1, updates=4, seed=0)
    encoder, run = train_defended(data, build, trainer, config, eval_users=attacked.real_users)
    assert [t["epoch"] for t in run.trace] == [1, 2, 3, 4]
    assert run.score_history.shape == (4, data.n_users)
    assert [len(f) for f in run.flagged_history] == [t["flagged"] for t in run.trace]
    applied = [f for f, t in zip(run.flagged_history, run.trace, strict=True) if t["applied"]]
    expected = np.bincount(np.concatenate(applied), minlength=data.n_users) if applied else 0
    assert np.array_equal(run.flag_counts, expected + np.zeros(data.n_users, dtype=np.int64))
    assert all(0.0 <= t["threshold"] <= 1.0 for t in run.trace)
    assert run.calibration.epochs_run == config.calibration_epochs
    assert run.weights[attacked.fake_users].mean() < run.weights[~attacked.fake_users].mean()
    assert run.result is not run.calibration


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"simulated_fraction": 0.0}, "simulated_fraction"),
        ({"simulated_kinds": ("random", "bogus")}, "simulated_kinds"),
        ({"simulated_target_shares": (0.0,)}, "simulated_target_shares"),
        ({"updates": 0}, "updates"),
        ({"flag_threshold": 1.5}, "flag_threshold"),
        ({"flag_recall": 0.0}, "flag_recall"),
        ({"flag_recall": 1.2}, "flag_recall"),
        ({"max_flagged_fraction": 0.0}, "max_flagged_fraction"),
        ({"simulated_target_counts": (0,)}, "simulated_target_counts"),
    ],
)
def test_bad_defence_configs_are_refused(kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        DefenceConfig(**kwargs)


def test_update_schedule_starts_repeats_and_stops():
    config = DefenceConfig(start_epoch=2, update_every=2, updates=3)
    due = []
    for epoch in range(1, 12):
        if config.update_due(epoch, len(due)):
            due.append(epoch)
    assert due == [2, 4, 6]
