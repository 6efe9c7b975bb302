"""H2Rec: semantic IDs by residual K-means of the item text, the dual-level alignment, checkpoints, cold items."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsim_env import data, encoders
from recsim_env.encoders.base import TrainingBatch
from recsim_env.encoders.h2rec import info_nce, residual_kmeans
from recsim_env.errors import ArgumentError

N_ITEMS = 40
MAX_LEN = 6
TEXT = 8
COLD = 5
IDS = torch.tensor([[N_ITEMS, 1, 2, 3, 4, 6], [N_ITEMS, N_ITEMS, N_ITEMS, 7, 8, 9]])


def fake_text(seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(N_ITEMS, TEXT, generator=torch.Generator().manual_seed(seed)), dim=-1
    )


def build(**overrides) -> encoders.SequenceEncoder:
    torch.manual_seed(0)
    config = {
        "n_items": N_ITEMS,
        "max_len": MAX_LEN,
        "d_model": 16,
        "item_text_dim": TEXT,
        "codebook_size": 4,
        **overrides,
    }
    enc = encoders.build("h2rec", config)
    enc.set_item_text(fake_text())
    seen = torch.ones(N_ITEMS, dtype=torch.bool)
    seen[COLD] = False
    enc.set_seen_items(seen)
    return enc.eval()


def test_codes_are_deterministic_for_a_seed_and_quantise_the_residuals():
    text = fake_text()
    first = residual_kmeans(text, n_levels=3, codebook_size=4, iterations=10, seed=0)
    again = residual_kmeans(text.clone(), n_levels=3, codebook_size=4, iterations=10, seed=0)
    other = residual_kmeans(text, n_levels=3, codebook_size=4, iterations=10, seed=1)
    assert first.shape == (N_ITEMS, 3) and first.dtype == torch.long
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert int(first.min()) >= 0 and int(first.max()) < 4
    assert len(set(map(tuple, first.tolist()))) > 4  # the deeper levels split the first level's clusters
    # identical content, identical codes
    twins = text.clone()
    twins[1] = twins[0]
    codes = residual_kmeans(twins, n_levels=3, codebook_size=4, iterations=10, seed=0)
    assert torch.equal(codes[0], codes[1])
    # the encoder's codes are the same function of its content and code_seed, whatever the global seed
    torch.manual_seed(123)
    assert torch.equal(build().item_codes, build().item_codes)
    assert torch.equal(
        build().item_codes, residual_kmeans(text, n_levels=3, codebook_size=4, iterations=25, seed=0)
    )


def test_each_level_reduces_the_quantisation_error():
    text = fake_text()
    residual = text.double()
    errors = []
    for level in range(1, 4):
        codes = residual_kmeans(text, n_levels=level, codebook_size=4, iterations=25, seed=0)
        # reconstruction: per level, the mean of the residuals sharing the code (the final centroids)
        residual = text.double().clone()
        for depth in range(level):
            means = torch.zeros(4, TEXT, dtype=torch.float64).index_add_(0, codes[:, depth], residual)
            means /= torch.bincount(codes[:, depth], minlength=4).clamp(min=1)[:, None]
            residual = residual - means[codes[:, depth]]
        errors.append(float(residual.pow(2).sum()))
    assert errors[0] > errors[1] > errors[2]


def test_item_representation_is_the_hash_id_plus_the_code_embeddings():
    enc = build()
    table = enc.item_table()
    with torch.no_grad():
        i = 3
        codes = enc.item_codes[i] + torch.arange(3) * 4
        expected = enc.item_embedding.weight[i] + enc.code_embedding.weight[codes].sum(0)
    torch.testing.assert_close(table[i], expected)
    inputs = enc.item_vectors(IDS)
    torch.testing.assert_close(inputs[0, 1:], table[IDS[0, 1:]])
    torch.testing.assert_close(inputs[0, 0], enc.item_embedding.weight[N_ITEMS])  # padding: its ID row


def test_a_cold_item_is_scored_through_its_codes():
    enc = build()
    with torch.no_grad():
        torch.testing.assert_close(enc.item_table()[COLD], enc.semantic_vectors(torch.tensor(COLD)))
    state = enc.user_state(IDS)
    scores = enc.score(state)
    assert torch.isfinite(scores).all()
    with torch.no_grad():  # the cold item's ID row plays no part ...
        enc.item_embedding.weight[COLD].mul_(-5.0)
    torch.testing.assert_close(enc.score(state)[:, COLD], scores[:, COLD])
    with torch.no_grad():  # ... its first-level code does
        enc.code_embedding.weight[enc.item_codes[COLD, 0]].mul_(-3.0)
    assert not torch.allclose(enc.score(state)[:, COLD], scores[:, COLD])
    # once seen, its ID row is part of it again
    enc.set_seen_items(torch.ones(N_ITEMS, dtype=torch.bool))
    with torch.no_grad():
        expected = enc.item_embedding.weight[COLD] + enc.semantic_vectors(torch.tensor(COLD))
    torch.testing.assert_close(enc.item_table()[COLD], expected)


def test_info_nce_prefers_matched_pairs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 8, generator=g)
    matched = info_nce(x, x + 0.01 * torch.randn(16, 8, generator=g), 0.2)
    shuffled = info_nce(x, x[torch.randperm(16, generator=g)], 0.2)
    assert float(matched) < 0.5 and float(shuffled) > 2.0  # ln(16) = 2.77: chance
    # the formula: mean over rows of -log softmax(cos / tau) at the match, in both directions
    q, k = torch.nn.functional.normalize(x, dim=-1), torch.nn.functional.normalize(x.flip(0), dim=-1)
    logits = q @ k.T / 0.2
    rows = -(logits.diagonal() - logits.logsumexp(1)).mean()
    cols = -(logits.diagonal() - logits.logsumexp(0)).mean()
    torch.testing.assert_close(info_nce(x, x.flip(0), 0.2), (rows + cols) / 2)


def batch_of(enc) -> TrainingBatch:
    windows = torch.tensor(
        [
            [N_ITEMS, 1, 2, 3, 4, 6, 7],
            [N_ITEMS, N_ITEMS, 9, 7, 8, 9, 10],
            [N_ITEMS, 11, 12, 13, 14, 15, 16],
        ]
    )
    return enc.training_batch(windows, None, None)


def test_the_alignment_terms_add_to_the_next_item_loss_and_train_the_codes():
    # eval mode: no dropout, so the losses differ by the alignment terms alone
    off = {"item_alignment_weight": 0.0, "sequence_alignment_weight": 0.0}
    plain = build(**off)
    batch = batch_of(plain)
    reference = plain.loss(batch)
    hidden = plain(batch.item_ids)
    selected = batch.targets != -100
    torch.testing.assert_close(reference, plain.next_item_loss(hidden[selected], batch.targets[selected]))
    for weights in ({"item_alignment_weight": 1.0}, {"sequence_alignment_weight": 1.0}):
        enc = build(**{**off, **weights})
        value = enc.loss(batch)
        assert torch.isfinite(value) and value.item() > reference.item()
        enc.zero_grad()
        (value - enc.loss(batch).detach()).backward()  # the gradient of the full objective
        assert enc.code_embedding.weight.grad.abs().sum() > 0
        assert enc.item_embedding.weight.grad.abs().sum() > 0


def test_h2rec_round_trips_through_a_checkpoint(tmp_path):
    enc = build()
    out = encoders.save(tmp_path / "ckpt", enc, item_ids=data.IdMap(np.arange(N_ITEMS) + 100))
    loaded = encoders.load(out)
    assert loaded.config == enc.config
    assert torch.equal(loaded.item_codes, enc.item_codes) and not loaded.item_seen[COLD]
    torch.testing.assert_close(loaded.score(loaded.user_state(IDS)), enc.score(enc.user_state(IDS)))


def test_h2rec_without_item_text_names_the_option():
    with pytest.raises(ArgumentError, match="--item-text"):
        encoders.build("h2rec", {"n_items": N_ITEMS})
    enc = encoders.build("h2rec", {"n_items": N_ITEMS, "item_text_dim": TEXT})  # text never attached
    with pytest.raises(ArgumentError, match="--item-text"):
        enc.user_state(IDS)


def test_train_encoder_h2rec_needs_and_uses_item_text(tmp_path, monkeypatch):
    """`seqrec train-encoder --model h2rec`: refused without --item-text; with it (the sentence encoder
    replaced by fixed random vectors) the checkpoint carries the semantic IDs."""
    import typer
    from typer.testing import CliRunner

    from recsim_env.encoders import item_text
    from recsim_env.encoders.cli import train_encoder_command
    from tests.recsim_env.encoders.conftest import write_titled_recbole

    folder = write_titled_recbole(tmp_path / "toy", lambda i: f"film {i % 4}")
    monkeypatch.setattr(
        item_text,
        "embed",
        lambda texts: np.stack(
            [np.random.default_rng(len(set(t))).normal(size=item_text.TEXT_DIM) for t in texts]
        ).astype(np.float32),
    )
    app = typer.Typer()
    app.command("train-encoder")(train_encoder_command)
    app.command("unused")(lambda: None)
    out = tmp_path / "ckpt"
    args = ["train-encoder", "--data", str(folder), "--out", str(out), "--model", "h2rec", "--max-len", "8"]
    args += ["--epochs", "1", "--device", "cpu", "--no-progress"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code != 0 and "--item-text" in refused.output
    result = CliRunner().invoke(
        app, [*args, "--item-text", "title", "--item-text-cache", str(tmp_path / "cache")]
    )
    assert result.exit_code == 0, result.output
    loaded = encoders.load(out)
    assert type(loaded).name == "h2rec" and int(loaded.item_codes.min()) >= 0
