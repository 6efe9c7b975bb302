"""Per-user training weights and the evaluated users of `train`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsim_env import encoders
from recsim_env.data import LoggedInteractions
from recsim_env.encoders.trainer import (
    TrainerConfig,
    evaluate_full_ranking,
    leave_one_out_split,
    seed_everything,
    select_eval_users,
    train,
    window_copies,
)
from recsim_env.errors import ArgumentError

N_A = 30  # group A users walk items 0..9, group B users walk items 10..19


@pytest.fixture
def two_groups() -> LoggedInteractions:
    rows = []
    rng = np.random.default_rng(0)
    for u in range(50):
        base = 0 if u < N_A else 10
        start = int(rng.integers(10))
        rows += [(u, base + (start + t) % 10, 1000.0 * t) for t in range(12)]
    return LoggedInteractions.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))


def fit(logs, *, epochs=3, record=None, **kwargs):
    seed_everything(0)
    enc = encoders.build("sasrec", {"n_items": logs.n_items, "max_len": 6, "d_model": 16, "dropout": 0.1})
    if record is not None:
        original = enc.training_batch

        def spy(items, *args, **kw):
            record.append(items.clone())
            return original(items, *args, **kw)

        enc.training_batch = spy
    cfg = TrainerConfig(epochs=epochs, lr=5e-3, batch_size=16, seed=0, progress=False, patience=50)
    return enc, train(enc, logs.sequences(), cfg, **kwargs)


def state_bytes(enc) -> list[bytes]:
    return [t.detach().numpy().tobytes() for t in enc.state_dict().values()]


def test_all_ones_weights_train_bit_for_bit_as_no_weights(two_groups):
    plain, plain_result = fit(two_groups)
    ones, ones_result = fit(two_groups, user_weights=np.ones(two_groups.n_users))
    assert state_bytes(plain) == state_bytes(ones)
    assert plain_result.test == ones_result.test


def test_zero_weight_users_never_train_and_weight_two_trains_twice(two_groups):
    group_b = np.arange(two_groups.n_users) >= N_A
    seen_plain, seen_zero, seen_double = [], [], []
    fit(two_groups, epochs=1, record=seen_plain)
    fit(two_groups, epochs=1, record=seen_zero, user_weights=np.where(group_b, 0.0, 1.0))
    fit(two_groups, epochs=1, record=seen_double, user_weights=np.where(group_b, 2.0, 1.0))

    def b_windows(batches):
        rows = torch.cat(batches)
        return int(((rows >= 10) & (rows < 20)).any(dim=1).sum()), len(rows)

    b_plain, all_plain = b_windows(seen_plain)
    assert b_plain > 0
    assert b_windows(seen_zero) == (0, all_plain - b_plain)
    assert b_windows(seen_double) == (2 * b_plain, all_plain + b_plain)


def test_fractional_weights_keep_a_window_with_that_probability():
    generator = torch.Generator().manual_seed(0)
    copies = window_copies(np.full(20_000, 0.3), generator)
    assert set(copies.unique().tolist()) == {0, 1}
    assert abs(float(copies.double().mean()) - 0.3) < 0.02
    assert window_copies(np.array([2.0, 0.0, 1.0]), generator).tolist() == [2, 0, 1]


def test_eval_users_restrict_validation_and_test(two_groups):
    group_a = np.arange(two_groups.n_users) < N_A
    enc, result = fit(two_groups, eval_users=group_a)
    split = leave_one_out_split(two_groups.sequences(), max_len=6, pad_id=two_groups.n_items)
    only_a = select_eval_users(split.test, np.flatnonzero(group_a))
    assert len(only_a.users) == N_A and (only_a.targets < 10).all()
    assert evaluate_full_ranking(enc, only_a) == result.test
    assert evaluate_full_ranking(enc, split.test) != result.test


def test_reweight_applies_new_weights_from_the_next_epoch(two_groups):
    group_b = np.arange(two_groups.n_users) >= N_A
    seen, calls = [], []

    def reweight(epoch, encoder):
        calls.append((epoch, len(seen)))
        return np.where(group_b, 0.0, 1.0) if epoch == 1 else None

    fit(two_groups, epochs=2, record=seen, reweight=reweight)
    assert [epoch for epoch, _ in calls] == [1, 2]
    first_epoch = calls[0][1]
    earlier, later = torch.cat(seen[:first_epoch]), torch.cat(seen[first_epoch:])
    assert ((earlier >= 10) & (earlier < 20)).any()
    assert not ((later >= 10) & (later < 20)).any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"user_weights": np.ones(3)}, "shape"),
        ({"user_weights": -np.ones(50)}, ">= 0"),
        ({"user_weights": np.zeros(50)}, "every weight is 0"),
        ({"user_weights": np.full(50, np.nan)}, "finite"),
        ({"eval_users": np.array([0, 99])}, "out of range"),
        ({"eval_users": np.ones(3, dtype=bool)}, "mask"),
    ],
)
def test_bad_weights_and_users_are_refused(two_groups, kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        fit(two_groups, epochs=1, **kwargs)
