"""The cold-item map: unseen items' missing ID rows replaced by a ridge regression from their text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsim_env import data, encoders
from recsim_env.encoders.item_text import cold_start_sequences, hold_out_items
from recsim_env.encoders.trainer import TrainerConfig, seed_everything, train
from recsim_env.errors import ArgumentError
from tests.recsim_env.encoders.conftest import fake_text as random_text
from tests.recsim_env.encoders.conftest import text_encoder

N_ITEMS = 12
MAX_LEN = 6
TEXT = 8
COLD = (2, 5, 9)
IDS = torch.tensor([[N_ITEMS, 1, 3, 4, 6, 7], [N_ITEMS, N_ITEMS, N_ITEMS, 8, 10, 11], [0, 1, 0, 1, 0, 1]])


def fake_text(n_items: int = N_ITEMS, width: int = TEXT, seed: int = 0) -> torch.Tensor:
    return random_text(n_items, width, seed)


def unseen_mask(n_items: int = N_ITEMS, cold=COLD) -> torch.Tensor:
    seen = torch.ones(n_items, dtype=torch.bool)
    seen[list(cold)] = False
    return seen


def build(name: str, **overrides) -> encoders.SequenceEncoder:
    fields = {"n_items": N_ITEMS, "max_len": MAX_LEN, **overrides}
    return text_encoder(name, width=TEXT, cold=list(COLD), **fields)


def scores(enc: encoders.SequenceEncoder) -> torch.Tensor:
    with torch.no_grad():
        return enc.score(enc.user_state(IDS))


@pytest.mark.parametrize("name", sorted(encoders.ENCODERS))
def test_the_map_leaves_warm_scores_bit_identical_and_scores_cold_items(name):
    plain = build(name)
    mapped = build(name, cold_item_map="ridge")
    assert plain.item_text_map is None and mapped.item_text_map.abs().sum() == 0
    before = scores(mapped)
    assert torch.equal(before, scores(plain))  # an unfitted map is no map
    mapped.fit_cold_item_map()
    assert mapped.item_text_map.abs().sum() > 0
    after = scores(mapped)
    warm = unseen_mask()
    assert torch.equal(after[:, warm], before[:, warm])
    cold = list(COLD)
    assert torch.isfinite(after).all() and not torch.allclose(after[:, cold], before[:, cold])
    # non-degenerate: each user's scores differ between cold items, whose mapped ID rows differ
    assert after[:, cold].std(dim=1).min() > 1e-4
    rows = mapped.mapped_id_rows(torch.tensor(COLD))
    assert torch.cdist(rows, rows)[~torch.eye(len(COLD), dtype=torch.bool)].min() > 1e-3


@pytest.mark.parametrize("name", sorted(set(encoders.ENCODERS) - {"h2rec", "hstu"}))
def test_a_cold_item_is_its_mapped_id_row_plus_its_projected_text(name):
    enc = build(name, cold_item_map="ridge")
    enc.fit_cold_item_map()
    with torch.no_grad():
        expected = enc.mapped_id_rows(torch.tensor(COLD)) + enc.text_projection(enc.item_text[list(COLD)])
        torch.testing.assert_close(enc.item_table()[list(COLD)], expected)
        # the inputs read the same vectors (a cold item in a history), padding keeps its ID row
        history = torch.tensor([[N_ITEMS, COLD[0], 1, COLD[2]]])
        vectors = enc.item_vectors(history)
        torch.testing.assert_close(vectors[0, 1:], enc.item_table()[[COLD[0], 1, COLD[2]]])
        torch.testing.assert_close(vectors[0, 0], enc.item_embedding.weight[N_ITEMS])


def test_the_map_is_the_ridge_solution():
    """ID rows that are an exact affine function of the text: a small ridge recovers it on unseen items;
    a large one shrinks the map to the seen items' mean ID row."""
    enc = build("sasrec", cold_item_map="ridge")
    generator = torch.Generator().manual_seed(1)
    weights, intercept = torch.randn(TEXT, 16, generator=generator), torch.randn(16, generator=generator)
    with torch.no_grad():
        enc.item_embedding.weight[:N_ITEMS] = enc.item_text @ weights + intercept
    cold = torch.tensor(COLD)
    enc.fit_cold_item_map(1e-9)
    torch.testing.assert_close(enc.mapped_id_rows(cold), enc.item_text[cold] @ weights + intercept)
    enc.fit_cold_item_map(1e9)
    seen_mean = enc.item_embedding.weight[:N_ITEMS][unseen_mask()].mean(0)
    torch.testing.assert_close(enc.mapped_id_rows(cold), seen_mean.expand(len(COLD), -1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "hstu", "h2rec"])
def test_the_map_round_trips_through_a_checkpoint(tmp_path, name):
    enc = build(name, cold_item_map="ridge", cold_item_map_ridge=0.5)
    enc.fit_cold_item_map()
    out = encoders.save(tmp_path / "ckpt", enc, item_ids=data.IdMap(np.arange(N_ITEMS) + 100))
    loaded = encoders.load(out)
    assert loaded.config == enc.config
    assert torch.equal(loaded.item_text_map, enc.item_text_map)
    assert torch.equal(scores(loaded), scores(enc))


def test_bad_maps_are_refused():
    base = {"n_items": N_ITEMS, "item_text_dim": TEXT}
    with pytest.raises(ArgumentError, match="cold_item_map must be one of"):
        encoders.build("sasrec", {**base, "cold_item_map": "linear"})
    for ridge in (0.0, -1.0, float("nan"), "1"):
        with pytest.raises(ArgumentError, match="cold_item_map_ridge"):
            encoders.build("sasrec", {**base, "cold_item_map": "ridge", "cold_item_map_ridge": ridge})
    with pytest.raises(ArgumentError, match="needs item_text_dim > 0"):
        encoders.build("sasrec", {"n_items": N_ITEMS, "cold_item_map": "ridge"})
    with pytest.raises(ArgumentError, match="no cold-item map"):
        build("sasrec").fit_cold_item_map()
    enc = build("sasrec", cold_item_map="ridge")
    with pytest.raises(ArgumentError, match="ridge"):
        enc.fit_cold_item_map(-2.0)
    with torch.no_grad():
        enc.item_embedding.weight[0, 0] = float("inf")
    with pytest.raises(ArgumentError, match="not all finite"):
        enc.fit_cold_item_map()
    enc.set_seen_items(torch.arange(N_ITEMS) == 0)
    with pytest.raises(ArgumentError, match="at least 2 seen items"):
        enc.fit_cold_item_map()


def test_training_fits_the_map_and_trains_the_same_model(cyclic_logs):
    """The map is fitted after training: the "ridge" and "none" runs of one seed train the same weights."""
    n = cyclic_logs.n_items
    cold = hold_out_items(n, 0.1, seed=1)
    sequences = cold_start_sequences(cyclic_logs.sequences(), cold)
    runs = {}
    for cold_map in ("none", "ridge"):
        seed_everything(0)
        enc = encoders.build(
            "gru4rec",
            {"n_items": n, "max_len": 8, "d_model": 16, "item_text_dim": TEXT, "cold_item_map": cold_map},
        )
        enc.set_item_text(fake_text(n))
        result = train(enc, sequences, TrainerConfig(epochs=2, batch_size=32, progress=False))
        runs[cold_map] = (enc.eval(), result)
    (plain, plain_result), (mapped, mapped_result) = runs["none"], runs["ridge"]
    assert plain_result.valid == mapped_result.valid
    assert mapped.item_text_map.abs().sum() > 0
    with torch.no_grad():
        plain_table, mapped_table = plain.item_table(), mapped.item_table()
        assert torch.equal(plain_table[~torch.from_numpy(cold)], mapped_table[~torch.from_numpy(cold)])
        assert not torch.allclose(plain_table[torch.from_numpy(cold)], mapped_table[torch.from_numpy(cold)])
        expected = mapped.mapped_id_rows(torch.from_numpy(np.flatnonzero(cold)))
        expected = expected + mapped.text_projection(mapped.item_text[torch.from_numpy(cold)])
        torch.testing.assert_close(mapped_table[torch.from_numpy(cold)], expected)


def test_train_encoder_fits_the_map_when_asked(tmp_path, monkeypatch):
    """`seqrec train-encoder --item-text --cold-item-map ridge` saves a fitted map; the default saves none."""
    import typer
    from typer.testing import CliRunner

    from recsim_env.encoders import item_text
    from recsim_env.encoders.cli import train_encoder_command
    from tests.recsim_env.encoders.conftest import write_titled_recbole

    folder = write_titled_recbole(tmp_path / "toy", lambda i: f"film {i}")
    monkeypatch.setattr(
        item_text,
        "embed",
        lambda texts: np.stack([fake_text(1, 384, seed=i)[0].numpy() for i in range(len(texts))]),
    )
    app = typer.Typer()
    app.command("train-encoder")(train_encoder_command)
    app.command("unused")(lambda: None)
    args = ["train-encoder", "--data", str(folder), "--max-len", "8", "--epochs", "1", "--device", "cpu"]
    args += ["--no-progress", "--item-text", "title", "--item-text-cache", str(tmp_path / "cache")]
    ridge = ["--cold-item-map", "ridge", "--cold-item-map-ridge", "0.5"]
    for extra, fitted in (ridge, True), ([], False):
        out = tmp_path / f"ckpt-{fitted}"
        result = CliRunner().invoke(app, [*args, "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        encoder = encoders.load(out)
        if fitted:
            assert encoder.config.cold_item_map_ridge == 0.5 and encoder.item_text_map.abs().sum() > 0
        else:
            assert encoder.config.cold_item_map == "none" and encoder.item_text_map is None
