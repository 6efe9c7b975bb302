"""Poisoning attacks on logged interactions: well-formed output, determinism, input untouched, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.attacks import ATTACK_KINDS, PoisonConfig, poison
from recsim_env.data import LoggedInteractions
from recsim_env.errors import ArgumentError


def synthetic_logs(n_users: int = 60, n_items: int = 40, seed: int = 0) -> LoggedInteractions:
    """Users with 6-20 distinct items drawn from a Zipf-like popularity, ratings 1-5, string user ids."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1)
    p /= p.sum()
    rows = []
    for u in range(n_users):
        n = int(rng.integers(6, 21))
        items = rng.choice(n_items, size=n, replace=False, p=p)
        for t, item in enumerate(items):
            rows.append((f"u{u}", 100 + int(item), 1_000_000.0 + 60.0 * t + u, float(rng.integers(1, 6))))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    items = pd.DataFrame(
        {"item_id": 100 + np.arange(n_items), "title": [f"movie {i}" for i in range(n_items)]}
    )
    return LoggedInteractions.from_frame(frame, items=items, name="synthetic")


@pytest.fixture
def logs():
    return synthetic_logs()


def revalidated(logs: LoggedInteractions) -> LoggedInteractions:
    """The poisoned table passed again through `from_frame`'s validation (ids as raw tokens)."""
    raw = logs.frame.copy()
    raw["user_id"] = logs.user_ids.to_token(raw["user_id"].to_numpy())
    raw["item_id"] = logs.item_ids.to_token(raw["item_id"].to_numpy())
    return LoggedInteractions.from_frame(
        raw, feedback_cols=logs.feedback_columns, item_catalogue=logs.item_ids.tokens
    )


@pytest.mark.parametrize("kind", ATTACK_KINDS)
def test_fake_users_are_appended_and_the_real_ones_untouched(logs, kind):
    frame_before = logs.frame.copy()
    tokens_before = logs.user_ids.tokens.copy()
    out = poison(logs, PoisonConfig(kind=kind, fraction=0.1, targets=(130, 135), seed=1))
    assert logs.frame.equals(frame_before) and np.array_equal(logs.user_ids.tokens, tokens_before)
    data = out.data
    assert out.n_fake == 6 and data.n_users == 66
    assert out.fake_users.tolist() == [False] * 60 + [True] * 6
    real = data.frame[data.frame["user_id"] < 60].reset_index(drop=True)
    assert real.equals(frame_before)
    assert np.array_equal(data.user_ids.tokens[:60], tokens_before)
    assert not set(data.user_ids.tokens[60:]) & set(tokens_before)
    assert data.item_ids == logs.item_ids and data.items.equals(logs.items)
    assert out.target_items.tolist() == logs.item_ids.to_index(np.array([130, 135])).tolist()
    fake = data.frame[data.frame["user_id"] >= 60]
    targets = fake["item_id"].isin(out.target_items)
    assert targets.groupby(fake["user_id"]).any().all()  # every fake user promotes a target
    assert (fake.loc[targets, "rating"] == 5.0).all()  # the feedback of a liked event (the top rating)
    non_target = fake.loc[~targets]
    assert not non_target.duplicated(["user_id", "item_id"]).any()  # filler items are distinct per user
    again = revalidated(data)
    assert again.n_interactions == data.n_interactions
    assert data.users is None


def test_the_same_seed_gives_the_same_attack_and_another_seed_another(logs):
    config = PoisonConfig(kind="sequential", fraction=0.1, targets=(130,), seed=3)
    first, second = poison(logs, config), poison(logs, config)
    assert first.data.frame.equals(second.data.frame)
    other = poison(logs, PoisonConfig(kind="sequential", fraction=0.1, targets=(130,), seed=4))
    assert not other.data.frame.equals(first.data.frame)


def test_sequential_targets_follow_popular_anchors(logs):
    out = poison(
        logs, PoisonConfig(kind="sequential", fraction=0.2, targets=(139,), anchor_pool=5, target_share=0.2)
    )
    seqs = out.data.sequences()
    counts = np.bincount(logs.frame["item_id"], minlength=logs.n_items)
    top5 = set(np.argsort(-counts, kind="stable")[:5].tolist())
    for u in np.flatnonzero(out.fake_users):
        items = seqs.item_ids[seqs.offsets[u] : seqs.offsets[u + 1]]
        at = np.flatnonzero(items == out.target_items[0])
        assert len(at) >= 1 and (at > 0).all()
        assert set(items[at - 1].tolist()) <= top5


@pytest.mark.parametrize("share", [0.1, 0.25, 0.5])
def test_insertion_keeps_a_real_sequence_and_inserts_targets_every_kth_event_and_last(logs, share):
    out = poison(logs, PoisonConfig(kind="insertion", fraction=0.1, targets=(130, 135), target_share=share))
    seqs = out.data.sequences()
    real = {
        tuple(seqs.item_ids[seqs.offsets[u] : seqs.offsets[u + 1]].tolist()): u
        for u in np.flatnonzero(~out.fake_users)
    }
    templates = []
    k = max(1, round((1 - share) / share))
    for u in np.flatnonzero(out.fake_users):
        items = seqs.item_ids[seqs.offsets[u] : seqs.offsets[u + 1]]
        is_target = np.isin(items, out.target_items)
        kept = tuple(items[~is_target].tolist())
        assert kept in real  # every event of a real user, in its order
        templates.append(real[kept])
        assert is_target[-1] and not is_target[0] and not (is_target[1:] & is_target[:-1]).any()
        runs = np.diff(np.flatnonzero(np.r_[True, is_target]))[1:-1]  # real events between two targets
        assert (runs - 1 == k).all()
    assert len(set(templates)) == len(templates)  # distinct real users are cloned
    other = poison(logs, PoisonConfig(kind="insertion", fraction=0.1, targets=(130,), seed=5))
    assert not other.data.frame.equals(out.data.frame)


def test_insertion_clones_users_who_never_consumed_a_target(logs):
    holders = logs.frame.groupby("item_id")["user_id"].nunique()
    half = int((holders - logs.n_users / 2).abs().idxmin())  # held by about half of the users
    popular = int(logs.item_ids.to_token([half])[0])
    out = poison(logs, PoisonConfig(kind="insertion", fraction=0.1, targets=(popular,), target_share=0.2))
    seqs = out.data.sequences()
    target = out.target_items[0]
    for u in np.flatnonzero(out.fake_users):
        items = seqs.item_ids[seqs.offsets[u] : seqs.offsets[u + 1]]
        kept = items[items != target]
        holders = [
            v
            for v in np.flatnonzero(~out.fake_users)
            if np.array_equal(seqs.item_ids[seqs.offsets[v] : seqs.offsets[v + 1]], kept)
        ]
        assert holders  # the template held no target event, so removing them gives it back exactly


@pytest.mark.parametrize("share", [0.2, 0.5])
def test_splice_puts_each_target_after_the_final_events_of_a_real_user(logs, share):
    out = poison(logs, PoisonConfig(kind="splice", fraction=0.1, targets=(130, 135), target_share=share))
    seqs = out.data.sequences()
    k = max(1, round((1 - share) / share))
    real = np.flatnonzero(~out.fake_users)
    holders = {
        int(u)
        for u in real
        if np.isin(seqs.item_ids[seqs.offsets[u] : seqs.offsets[u + 1]], out.target_items).any()
    }
    tails = {
        int(u): seqs.item_ids[seqs.offsets[u] : seqs.offsets[u + 1]].tolist()
        for u in real
        if u not in holders
    }
    for u in np.flatnonzero(out.fake_users):
        items = seqs.item_ids[seqs.offsets[u] : seqs.offsets[u + 1]]
        at = np.flatnonzero(np.isin(items, out.target_items))
        assert at.tolist() == list(range(k, len(items), k + 1))  # a target after every k filler events
        assert len(set(items[~np.isin(items, out.target_items)].tolist())) == len(items) - len(at)
        stretch = items[at[0] - k : at[0]].tolist()
        # The first stretch: a real user who never consumed a target, its k events before its last two.
        assert any(tail[-k - 2 : -2] == stretch for tail in tails.values())


def test_max_events_caps_every_fake_profile_targets_included(logs):
    for kind in ("insertion", "splice"):
        out = poison(
            logs, PoisonConfig(kind=kind, fraction=0.2, targets=(130,), target_share=0.25, max_events=8)
        )
        lengths = out.data.sequences().lengths()[out.fake_users]
        assert lengths.max() <= 8
        if kind == "splice":  # templates at least max_events long: every profile uses the whole budget
            assert (lengths == 8).all()


def test_world_logs_keep_their_columns_sessions_and_slates():
    from recsim_env.world.logging import log_world

    logs = log_world("uniform", steps=300, num_envs=8, progress=False, slate_size=3)
    for kind in ("sequential", "insertion", "splice"):
        check_world_poison(
            logs, poison(logs, PoisonConfig(kind=kind, fraction=0.25, targets=(3, 4), target_share=0.3))
        )


def check_world_poison(logs, out) -> None:
    frame = out.data.frame
    assert list(frame.columns) == list(logs.frame.columns)
    assert frame.dtypes.to_dict() == logs.frame.dtypes.to_dict()
    fake = frame["user_id"].to_numpy() >= logs.n_users
    for column in ("session_id", "slate_id"):
        assert not set(frame.loc[fake, column]) & set(frame.loc[~fake, column])
    assert not frame.groupby("slate_id")["item_id"].apply(lambda s: s.duplicated().any()).any()
    promoted = frame.loc[fake & frame["item_id"].isin(out.target_items)]
    assert (promoted["click"] == 1.0).all()
    assert len(out.data.users) == out.data.n_users
    assert revalidated(out.data).n_interactions == len(frame)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fraction": 0.0}, "fraction must lie in"),
        ({"fraction": 1.0}, "fraction must lie in"),
        ({"fraction": -0.5}, "fraction must lie in"),
        ({"kind": "nasty"}, "kind must be one of"),
        ({"targets": "130"}, "targets must be a tuple"),
        ({"target_share": 0.0}, "target_share"),
    ],
)
def test_bad_configs_are_refused(kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        PoisonConfig(**{"targets": (130,), **kwargs})


def test_unknown_or_missing_targets_are_refused(logs):
    with pytest.raises(ArgumentError, match="targets: item 99999 is not in the item catalogue"):
        poison(logs, PoisonConfig(targets=(99999,)))
    with pytest.raises(ArgumentError, match="at least one target"):
        poison(logs, PoisonConfig())
    assert poison(logs, PoisonConfig(targets=("130",))).target_items.tolist() == [30]  # "130" is item 130
