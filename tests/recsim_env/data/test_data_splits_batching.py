import numpy as np
import pandas as pd
import pytest

from recsim_env.data import (
    LoggedInteractions,
    SequenceLoader,
    leave_one_out,
    pad_sequences,
    temporal_split,
)


def make_data() -> LoggedInteractions:
    # user a: 5 events (two tied at t=3), user b: 2 events, user c: 3 events; items named by letters
    rows = [
        ("a", "i1", 1.0), ("b", "i2", 4.0), ("a", "i2", 2.0), ("a", "i3", 3.0), ("c", "i1", 6.0),
        ("a", "i4", 3.0), ("c", "i5", 7.0), ("a", "i5", 9.0), ("b", "i3", 5.0), ("c", "i2", 8.0),
    ]  # fmt: skip
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    df["rating"] = np.arange(len(df), dtype=float)
    return LoggedInteractions.from_frame(df, item_catalogue=["i1", "i2", "i3", "i4", "i5", "i6"])


def tokens(data: LoggedInteractions, user: str) -> list[str]:
    u = data.user_ids.to_index([user])[0]
    return data.item_ids.to_token(data.frame.item_id[data.frame.user_id == u]).tolist()


def test_leave_one_out_picks_last_two_events():
    data = make_data()
    split = leave_one_out(data)
    assert tokens(split.test, "a") == ["i5"] and tokens(split.valid, "a") == [
        "i4"
    ]  # i4 follows i3 (tie, file order)
    assert tokens(split.train, "a") == ["i1", "i2", "i3"]
    assert (
        tokens(split.test, "c") == ["i2"]
        and tokens(split.valid, "c") == ["i5"]
        and tokens(split.train, "c") == ["i1"]
    )
    # fewer than 3 events: everything in train
    assert (
        tokens(split.train, "b") == ["i2", "i3"]
        and tokens(split.test, "b") == []
        and tokens(split.valid, "b") == []
    )
    assert (
        split.train.n_interactions + split.valid.n_interactions + split.test.n_interactions
        == data.n_interactions
    )
    assert split.test.n_items == 6 and split.test.user_ids == data.user_ids
    assert split.test.frame.rating.tolist() == [7.0, 9.0]


def test_temporal_split_boundaries():
    data = make_data()
    split = temporal_split(data, valid_fraction=0.2, test_fraction=0.2)
    ts = data.frame.timestamp.to_numpy()
    t_valid, t_test = np.quantile(ts, [0.6, 0.8])
    assert split.train.frame.timestamp.max() < t_valid
    assert split.valid.frame.timestamp.min() >= t_valid and split.valid.frame.timestamp.max() < t_test
    assert split.test.frame.timestamp.min() >= t_test
    assert sorted(split.test.frame.timestamp) == [8.0, 9.0]
    assert sum(len(p.frame) for p in split) == data.n_interactions
    assert (
        temporal_split(data, valid_fraction=0.0, test_fraction=0.0).train.n_interactions
        == data.n_interactions
    )
    with pytest.raises(ValueError, match="valid_fraction"):
        temporal_split(data, valid_fraction=-0.1)
    with pytest.raises(ValueError, match="must be < 1"):
        temporal_split(data, valid_fraction=0.5, test_fraction=0.5)


def test_pad_sequences_left_pads_and_truncates():
    data = make_data()
    seqs = data.sequences()
    pad = data.n_items
    a, b = data.user_ids.to_index(["a", "b"])
    batch = pad_sequences(seqs, [a, b], max_len=3, pad_id=pad)
    i = data.item_ids.to_index
    np.testing.assert_array_equal(batch.item_ids, [i(["i3", "i4", "i5"]), [pad, *i(["i2", "i3"])]])
    assert batch.lengths.tolist() == [3, 2] and batch.user_ids.tolist() == [a, b]
    assert batch.timestamps.tolist() == [[3.0, 3.0, 9.0], [0.0, 4.0, 5.0]]
    assert batch.feedback.shape == (2, 3, 1) and batch.feedback.dtype == np.float32
    assert batch.feedback[1, 0, 0] == 0.0 and batch.feedback[1, 2, 0] == 8.0
    assert batch.item_ids.dtype == np.int64 and batch.timestamps.dtype == np.float64
    # end hides the last events (leave-one-out training view): user a -> first 3 events
    ends = seqs.lengths() - 2
    cut = pad_sequences(seqs, [a, b], max_len=4, pad_id=pad, end=ends)
    np.testing.assert_array_equal(cut.item_ids[0], [pad, *i(["i1", "i2", "i3"])])
    np.testing.assert_array_equal(cut.item_ids[1], [pad] * 4)
    assert cut.lengths.tolist() == [3, 0]
    with pytest.raises(ValueError, match="shape"):
        pad_sequences(seqs, [a], max_len=2, pad_id=pad, end=[1, 2])


def test_sequence_loader_is_seeded_and_covers_all_users():
    data = make_data()
    seqs = data.sequences()
    loader = SequenceLoader(seqs, max_len=4, batch_size=2, pad_id=data.n_items, seed=3)
    again = SequenceLoader(seqs, max_len=4, batch_size=2, pad_id=data.n_items, seed=3)
    first = list(loader)
    assert len(first) == len(loader) == 2
    for x, y in zip(first, list(again), strict=True):
        for field_x, field_y in zip(x, y, strict=True):
            np.testing.assert_array_equal(field_x, field_y)
    assert sorted(np.concatenate([b.user_ids for b in first]).tolist()) == [0, 1, 2]
    orders = {tuple(np.concatenate([b.user_ids for b in loader])) for _ in range(20)}
    assert len(orders) > 1  # epochs reshuffle
    fixed = SequenceLoader(seqs, max_len=4, batch_size=2, pad_id=6, shuffle=False, drop_last=True)
    assert len(fixed) == 1 and [b.user_ids.tolist() for b in fixed] == [[0, 1]]


def test_history_windows_show_each_row_the_users_earlier_rows():
    import pandas as pd

    from recsim_env.data import LoggedInteractions, history_windows

    frame = pd.DataFrame(
        {"user_id": [7, 7, 7, 9], "item_id": [1, 2, 3, 1], "timestamp": [1, 2, 3, 1], "click": [1, 0, 1, 1]}
    )
    data = LoggedInteractions.from_frame(frame, item_catalogue=[1, 2, 3])
    windows = history_windows(data, history_len=2)
    pad = data.n_items
    before = windows.item_ids[windows.before]
    np.testing.assert_array_equal(before, [[pad, pad], [pad, 0], [0, 1], [pad, pad]])
    np.testing.assert_array_equal(windows.item_ids[windows.after], [[pad, 0], [0, 1], [1, 2], [pad, 0]])
    np.testing.assert_array_equal(windows.feedback[windows.before][2, :, 0], [1, 0])
    with pytest.raises(ValueError, match="history_len"):
        history_windows(data, history_len=0)
