"""Contract tests every encoder passes: shapes, causality, padding invariance, masking, scoring."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from recsim_env import encoders
from recsim_env.encoders.base import IGNORE_TARGET
from tests.recsim_env.encoders.conftest import MAX_LEN, N_ITEMS, left_padded

VARIANTS = {
    "sasrec:reference": {"block": "reference"},
    "rearec:prl": {"method": "prl"},
    "mqsa:reference": {"block": "reference"},
    "sasrec:text": {"item_text_dim": 8},
    "sigma:released": {"n_layers": 2, "expand": 2, "d_state": 32},
    "sigma:one_layer": {"n_layers": 1},
    "h2rec:aligned": {"item_alignment_weight": 0.1, "sequence_alignment_weight": 0.1},
}
"""Extra configurations of a registered encoder: SASRec's and MQSA's block layouts, ReaRec's PRL objective,
SIGMA's released width and a single layer, H2Rec with its alignment terms on, the item tower with text embeddings
(tests/recsim_env/encoders/test_item_text.py fills them for every encoder)."""
ALL = [*sorted(encoders.ENCODERS), *VARIANTS]
CAUSAL = (
    "sasrec",
    "sasrec:reference",
    "hstu",
    "gru4rec",
    "rearec",
    "rearec:prl",
    "mqsa",
    "mqsa:reference",
    "icsrec",
    "sasrec:text",
    "sigma",
    "sigma:released",
    "sigma:one_layer",
    "h2rec",
    "h2rec:aligned",
)


def make(name: str, **overrides) -> encoders.SequenceEncoder:
    torch.manual_seed(0)
    config = {"n_items": N_ITEMS, "max_len": MAX_LEN, "d_model": 16, **VARIANTS.get(name, {}), **overrides}
    name = name.partition(":")[0]
    if name in ("hstu",):
        config.update(attention_dim=8, linear_dim=8)
    if name == "h2rec":  # semantic IDs need content embeddings (the fixed random text vectors below)
        config.setdefault("item_text_dim", 8)
    enc = encoders.build(name, config)
    if enc.has_item_text:  # fixed random text vectors, so that the text projection shapes the items
        enc.set_item_text(
            torch.randn(N_ITEMS, enc.config.item_text_dim, generator=torch.Generator().manual_seed(2))
        )
    return enc.eval()


def times_for(ids: torch.Tensor) -> torch.Tensor:
    # Irregular, increasing gaps so that HSTU's time buckets differ between positions.
    return torch.cumsum(
        torch.rand(ids.shape, generator=torch.Generator().manual_seed(1)) * 1e5, dim=1
    ).double()


@pytest.mark.parametrize("name", ALL)
def test_shapes_and_scores(name):
    enc = make(name)
    ids = left_padded([[1, 2, 3], list(range(MAX_LEN))])
    hidden = enc(ids, timestamps=times_for(ids))
    assert hidden.shape == (2, MAX_LEN, 16)
    state = enc.user_state(ids, timestamps=times_for(ids))
    assert state.shape == (2, 16)
    logits = enc.score(state)
    assert logits.shape == (2, N_ITEMS) and torch.isfinite(logits).all()
    candidates = torch.tensor([[4, 7, 9], [0, 1, 2]])
    torch.testing.assert_close(enc.score(state, candidates), logits.gather(1, candidates))
    shared = torch.tensor([5, 0, 29])
    torch.testing.assert_close(enc.score(state, shared), logits[:, shared])


@pytest.mark.parametrize("name", CAUSAL)
def test_causality_later_items_do_not_change_earlier_outputs(name):
    enc = make(name)
    ids = left_padded([[3, 5, 7, 9, 11, 13, 15, 17]])
    changed = ids.clone()
    changed[0, -3:] = torch.tensor([21, 22, 23])
    t = times_for(ids)
    t_changed = t.clone()
    t_changed[0, -3:] += 12345.0
    before = enc(ids, timestamps=t)
    after = enc(changed, timestamps=t_changed)
    torch.testing.assert_close(before[:, :-3], after[:, :-3])
    assert not torch.allclose(before[:, -1], after[:, -1])


@pytest.mark.parametrize("name", ALL)
def test_left_padding_does_not_change_the_user_state(name):
    enc = make(name)
    history = [4, 8, 15, 16, 23]
    short = left_padded([history], length=len(history))
    long = left_padded([history], length=MAX_LEN)
    t_short = torch.arange(len(history), dtype=torch.float64)[None] * 3600.0
    t_long = torch.cat([torch.zeros(1, MAX_LEN - len(history), dtype=torch.float64), t_short], dim=1)
    torch.testing.assert_close(
        enc.user_state(short, timestamps=t_short),
        enc.user_state(long, timestamps=t_long),
        rtol=1e-5,
        atol=1e-5,
    )
    # and the padding id's embedding plays no part: garbage in the padded timestamps changes nothing
    t_noise = t_long.clone()
    t_noise[0, : MAX_LEN - len(history)] = 9e9
    torch.testing.assert_close(
        enc.user_state(long, timestamps=t_long), enc.user_state(long, timestamps=t_noise)
    )


@pytest.mark.parametrize("name", ALL)
def test_user_state_keeps_the_most_recent_max_len_items(name):
    enc = make(name)
    long_history = torch.arange(MAX_LEN + 5)[None] % N_ITEMS
    torch.testing.assert_close(enc.user_state(long_history), enc.user_state(long_history[:, -MAX_LEN:]))
    with pytest.raises(ValueError, match="max_len"):
        enc(long_history)


def test_bert4rec_masking_rate_and_targets():
    enc = make("bert4rec", mask_prob=0.3, last_item_mask_prob=0.0)
    windows = torch.randint(0, N_ITEMS, (4000, MAX_LEN + 1), generator=torch.Generator().manual_seed(0))
    windows[:, :4] = N_ITEMS  # some padding, never masked
    batch = enc.training_batch(windows, None, None, generator=torch.Generator().manual_seed(0))
    masked = batch.item_ids == enc.mask_id
    real = windows[:, 1:] != N_ITEMS
    assert not (masked & ~real).any()
    rate = masked[real].float().mean().item()
    assert abs(rate - 0.3) < 0.01
    # targets are exactly the original items at masked positions
    assert torch.equal(batch.targets[masked], windows[:, 1:][masked])
    assert (batch.targets[~masked] == IGNORE_TARGET).all()


def test_bert4rec_last_item_only_rows_and_inference_mask():
    enc = make("bert4rec", mask_prob=0.2, last_item_mask_prob=1.0)
    windows = torch.randint(0, N_ITEMS, (50, MAX_LEN + 1))
    batch = enc.training_batch(windows, None, None, generator=torch.Generator().manual_seed(0))
    masked = batch.item_ids == enc.mask_id
    assert masked[:, -1].all() and not masked[:, :-1].any()
    # inference appends the mask token: the state of [a, b] equals the hidden state at the mask of [a, b, mask]
    ids = left_padded([[1, 2]])
    explicit = left_padded([[1, 2, enc.mask_id]])
    torch.testing.assert_close(enc.user_state(ids), enc(explicit)[:, -1])


@pytest.mark.parametrize("name", ("sasrec", "hstu", "gru4rec", "rearec", "mqsa", "sigma"))
def test_next_item_training_targets(name):
    enc = make(name)
    windows = left_padded([[1, 2, 3, 4]], length=MAX_LEN + 1)
    batch = enc.training_batch(windows, None, None)
    assert batch.item_ids.shape == (1, MAX_LEN)
    assert batch.targets[0, -3:].tolist() == [2, 3, 4]
    assert (batch.targets[0, :-3] == IGNORE_TARGET).all()


@pytest.mark.parametrize("loss", ("ce", "bce", "sampled_softmax"))
@pytest.mark.parametrize("name", ALL)
def test_losses_are_finite_and_differentiable(name, loss):
    enc = make(name, loss=loss, n_negatives=8).train()
    windows = torch.randint(0, N_ITEMS, (6, MAX_LEN + 1))
    windows[0, :5] = N_ITEMS
    ts = torch.arange(MAX_LEN + 1, dtype=torch.float64).expand(6, -1) * 60.0
    g = torch.Generator().manual_seed(0)
    value = enc.loss(enc.training_batch(windows, ts, None, generator=g), generator=g)
    assert torch.isfinite(value)
    value.backward()
    assert enc.item_embedding.weight.grad is not None


@pytest.mark.parametrize("name", ALL)
def test_bf16_autocast_trains_and_ranks(name):
    """The mixed-precision path `--device auto` takes on a GPU (bf16 autocast), run here on the CPU: no
    dtype clash in masks, attention or scores, finite losses and gradients, rankings close to fp32's."""
    enc = make(name).train()
    windows = torch.randint(0, N_ITEMS, (6, MAX_LEN + 1), generator=torch.Generator().manual_seed(2))
    windows[0, :5] = N_ITEMS
    ts = torch.arange(MAX_LEN + 1, dtype=torch.float64).expand(6, -1) * 60.0
    g = torch.Generator().manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = enc.loss(enc.training_batch(windows, ts, None, generator=g), generator=g)
    assert torch.isfinite(value)
    value.backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)
    enc.eval()
    ids = left_padded([[1, 2, 3], list(range(MAX_LEN))])
    with torch.no_grad():
        full = enc.score(enc.user_state(ids, timestamps=times_for(ids)))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = enc.score(enc.user_state(ids, timestamps=times_for(ids)))
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), full, atol=0.1, rtol=0.05)


def test_feedback_is_used_when_configured():
    enc = make("sasrec", feedback_dim=2)
    ids = left_padded([[1, 2, 3]])
    fb = torch.zeros(1, MAX_LEN, 2)
    fb2 = fb.clone()
    fb2[0, -1] = torch.tensor([5.0, -1.0])
    assert not torch.allclose(enc.user_state(ids, feedback=fb), enc.user_state(ids, feedback=fb2))
    with pytest.raises(ValueError, match="feedback"):
        enc(ids)


def test_build_and_config_validation():
    enc = encoders.build("SASRec", encoders.SASRecConfig(n_items=5))
    assert isinstance(enc, encoders.SASRec)
    with pytest.raises(ValueError, match="unknown encoder"):
        encoders.build("transformer", {"n_items": 5})
    with pytest.raises(ValueError, match="unknown config key"):
        encoders.build("sasrec", {"n_items": 5, "hidden": 3})
    with pytest.raises(ValueError, match="n_heads"):
        encoders.SASRecConfig(n_items=5, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="block"):
        encoders.SASRecConfig(n_items=5, block="post-ln")
    ids = left_padded([[1, 2, 3, 4]])  # the same weights, laid out as the paper or the authors' code
    assert not torch.allclose(make("sasrec").user_state(ids), make("sasrec:reference").user_state(ids))
    with pytest.raises(ValueError, match="loss"):
        encoders.GRU4RecConfig(n_items=5, loss="bpr")
    with pytest.raises(ValueError, match="mask_prob"):
        encoders.BERT4RecConfig(n_items=5, mask_prob=0.0)
    cfg = encoders.HSTUConfig(n_items=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_items = 6  # type: ignore[misc]
    assert encoders.HSTUConfig.from_dict(cfg.to_dict()) == cfg
