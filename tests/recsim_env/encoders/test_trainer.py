"""Training: the leave-one-out split, windows, a learning test, reproducibility, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recsim_env import data, encoders
from recsim_env.encoders.trainer import (
    TrainerConfig,
    leave_one_out_split,
    seed_everything,
    train,
    training_windows,
)
from recsim_env.errors import DataError


@pytest.fixture
def cyclic(cyclic_logs):
    return cyclic_logs


def test_split_matches_the_data_layer_leave_one_out(cyclic):
    seqs = cyclic.sequences()
    split = leave_one_out_split(seqs, max_len=8, pad_id=cyclic.n_items)
    parts = data.leave_one_out(cyclic)
    valid_frame = parts.valid.frame.sort_values("user_id")
    test_frame = parts.test.frame.sort_values("user_id")
    assert split.valid.users.tolist() == valid_frame["user_id"].tolist()
    assert split.valid.targets.tolist() == valid_frame["item_id"].tolist()
    assert split.test.targets.tolist() == test_frame["item_id"].tolist()
    train_seqs = parts.train.sequences()
    assert split.train_lengths.tolist() == train_seqs.lengths().tolist()
    # the test history is the training history plus the valid item, most recent last
    assert (split.test.item_ids[:, -1] == split.valid.targets).all()
    assert (split.test.item_ids[:, -2] == split.valid.item_ids[:, -1]).all()
    # seen items: the whole history, not only the last max_len
    assert np.diff(split.valid.seen_offsets).tolist() == train_seqs.lengths().tolist()


def test_sliding_windows_make_every_training_event_after_the_first_a_target_once(cyclic):
    seqs = cyclic.sequences()
    lengths = np.diff(seqs.offsets) - 2
    windows = training_windows(seqs, lengths, max_len=5, pad_id=cyclic.n_items, mode="sliding")
    targets = (windows.item_ids[:, 1:] != cyclic.n_items) & (windows.item_ids[:, :-1] != cyclic.n_items)
    assert targets.sum() == (lengths - 1).sum()
    last = training_windows(seqs, lengths, max_len=5, pad_id=cyclic.n_items, mode="last")
    assert last.item_ids.shape == (cyclic.n_users, 6)


@pytest.mark.parametrize("stride", [1, 2, 3, 5])
def test_overlapping_windows_count_each_target_once_with_a_nearly_full_context(cyclic, stride):
    seqs = cyclic.sequences()
    lengths = np.diff(seqs.offsets) - 2
    max_len, pad = 5, cyclic.n_items
    windows = training_windows(seqs, lengths, max_len=max_len, pad_id=pad, mode="sliding", stride=stride)
    real = windows.item_ids != pad
    position = np.arange(max_len)[None]
    counted = real[:, 1:] & real[:, :-1] & (position >= windows.first_target[:, None])
    assert counted.sum() == (lengths - 1).sum()  # every training event after a user's first, once
    context = np.cumsum(real[:, :-1], axis=1)  # real inputs up to and including each target's position
    whole_history = ~real[:, 0:1]  # a left-padded window starts at the user's first event
    assert (~counted | whole_history | (context >= max_len - stride + 1)).all()
    if stride < max_len:  # more windows than without overlap, each a real slice of one user's events
        plain = training_windows(seqs, lengths, max_len=max_len, pad_id=pad, mode="sliding")
        assert len(windows.item_ids) > len(plain.item_ids)


def run(cyclic, name="sasrec", seed=0, **trainer):
    seed_everything(seed)
    config = {"n_items": cyclic.n_items, "max_len": 8, "d_model": 32, "dropout": 0.1}
    if name == "h2rec":  # semantic IDs need content embeddings: fixed random ones
        config["item_text_dim"] = 8
    enc = encoders.build(name, config)
    if name == "h2rec":
        enc.set_item_text(torch.randn(cyclic.n_items, 8, generator=torch.Generator().manual_seed(2)))
    cfg = TrainerConfig(
        epochs=trainer.pop("epochs", 30), lr=5e-3, batch_size=32, seed=seed, progress=False, **trainer
    )
    return enc, train(enc, cyclic.sequences(), cfg)


@pytest.mark.parametrize("name", sorted(encoders.ENCODERS))
def test_every_encoder_learns_a_deterministic_cycle(cyclic, name):
    _, result = run(cyclic, name, epochs=40 if name == "bert4rec" else 25)
    # random ranking of 20 items would give HR@1 ~ 0.05; the cycle is fully predictable
    assert result.test["seen_included"]["hr@10"] > 0.95
    assert result.test["seen_excluded"]["mrr@10"] > 0.7
    assert result.best_epoch >= 1 and result.epochs_run >= result.best_epoch


def test_training_on_overlapping_windows_learns_and_is_reproducible(cyclic):
    enc_a, result = run(cyclic, "sasrec", seed=1, epochs=15, window_stride=2)
    assert result.test["seen_excluded"]["mrr@10"] > 0.7
    enc_b, again = run(cyclic, "sasrec", seed=1, epochs=15, window_stride=2)
    assert again.test == result.test
    for a, b in zip(enc_a.state_dict().values(), enc_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_cpu_training_is_bit_for_bit_reproducible(cyclic):
    enc_a, res_a = run(cyclic, seed=3, epochs=3)
    enc_b, res_b = run(cyclic, seed=3, epochs=3)
    assert [h["loss"] for h in res_a.history] == [h["loss"] for h in res_b.history]
    for (k, a), b in zip(enc_a.state_dict().items(), enc_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    _, res_c = run(cyclic, seed=4, epochs=3)
    assert [h["loss"] for h in res_a.history] != [h["loss"] for h in res_c.history]


def test_early_stopping_restores_the_best_epoch(cyclic):
    enc, result = run(cyclic, epochs=30, patience=2)
    assert result.epochs_run <= result.best_epoch + 2
    best = max(h["valid_ndcg@10"] for h in result.history)
    assert result.valid["seen_excluded"]["ndcg@10"] == pytest.approx(best)


@pytest.mark.parametrize("protocol", ["seen_excluded", "seen_included"])
def test_early_stopping_selects_on_the_chosen_protocol(cyclic, protocol):
    _, result = run(cyclic, epochs=8, patience=8, selection_protocol=protocol)
    scores = [h[f"valid_{protocol}_ndcg@10"] for h in result.history]
    assert [h["valid_ndcg@10"] for h in result.history] == scores
    assert result.best_epoch == 1 + int(np.argmax(scores))  # the first epoch with the best score
    assert result.valid[protocol]["ndcg@10"] == pytest.approx(max(scores))


def test_evaluation_scores_in_fp32_under_bf16_autocast(cyclic, monkeypatch):
    """On a GPU the encoder runs under bf16 autocast; the full-ranking scores must not (ties in bf16 would
    rank the target above items it merely ties with)."""
    from recsim_env.encoders import trainer

    enc, _ = run(cyclic, epochs=1)
    split = leave_one_out_split(cyclic.sequences(), max_len=8, pad_id=cyclic.n_items)
    monkeypatch.setattr(trainer, "autocast", lambda device: torch.autocast("cpu", dtype=torch.bfloat16))
    seen = []
    score = enc.score

    def spy(state, items=None):
        seen.append((torch.is_autocast_enabled("cpu"), state.dtype))
        return score(state, items)

    monkeypatch.setattr(enc, "score", spy)
    trainer.evaluate_full_ranking(enc, split.test)
    assert seen and all(flag is False and dtype == torch.float32 for flag, dtype in seen)


@pytest.mark.parametrize("name", sorted(encoders.ENCODERS))
def test_checkpoint_round_trip_and_catalogue_check(cyclic, tmp_path, rehash, name):
    enc, result = run(cyclic, name, epochs=2)
    out = encoders.save(
        tmp_path / "ckpt", enc, item_ids=cyclic.item_ids, user_ids=cyclic.user_ids, metadata={"a": 1}
    )
    assert json.loads((out / "config.json").read_text()) == enc.config.to_dict()
    ckpt = encoders.load_checkpoint(out, item_ids=cyclic.item_ids)
    assert ckpt.metadata == {"a": 1}
    assert ckpt.item_tokens == cyclic.item_ids.tokens.tolist()
    assert ckpt.user_tokens == cyclic.user_ids.tokens.tolist()
    loaded = encoders.load(out)
    assert type(loaded) is type(enc) and loaded.config == enc.config
    enc.eval()
    ids = torch.tensor([[cyclic.n_items, 0, 1, 2, 3, 4, 5, 6]])
    torch.testing.assert_close(loaded.user_state(ids), enc.user_state(ids))
    # a catalogue in another order, or of another size, is refused with the place it differs
    shuffled = data.IdMap(cyclic.item_ids.tokens[::-1].copy())
    with pytest.raises(DataError, match="catalogue mismatch at item index 0"):
        encoders.load(out, item_ids=shuffled)
    with pytest.raises(DataError, match="trained on 20 items, the data has 3"):
        encoders.load(out, item_ids=[100, 101, 102])
    # an unknown key in config.json is an error, not silently ignored
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "hidden_size": 3}))
    with pytest.raises(ValueError, match="config.json: truncated or altered"):
        encoders.load(out)
    rehash(out)
    with pytest.raises(ValueError, match="unknown config key"):
        encoders.load(out)


def test_train_rejects_items_outside_the_encoder_catalogue(cyclic):
    enc = encoders.build("gru4rec", {"n_items": 5})
    with pytest.raises(ValueError, match="n_items=5"):
        train(enc, cyclic.sequences(), TrainerConfig(epochs=1, progress=False))


def test_trainer_config_validation():
    with pytest.raises(ValueError, match="windows"):
        TrainerConfig(windows="all")
    with pytest.raises(ValueError, match="device"):
        TrainerConfig(device="tpu")
    with pytest.raises(ValueError, match="lr"):
        TrainerConfig(lr=0)
    with pytest.raises(ValueError, match="selection_protocol"):
        TrainerConfig(selection_protocol="recbole")
