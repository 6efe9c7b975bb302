"""ReaRec's reasoning steps: K = 0 is SASRec, the cached passes equal a plain causal pass over the history
with the reasoning tokens appended, and the ERL / PRL states and objectives."""

from __future__ import annotations

import pytest
import torch

from recsim_env import encoders
from recsim_env.encoders.base import attention_mask
from recsim_env.encoders.rearec import ReaRecConfig, _pairwise_kl
from tests.recsim_env.encoders.conftest import MAX_LEN, N_ITEMS, left_padded, tiny_encoder

build = tiny_encoder


IDS = left_padded([[1, 2, 3], [4, 8, 15, 16, 23, 29, 0, 7], list(range(MAX_LEN))])


@pytest.mark.parametrize("block", ("paper", "reference"))
def test_zero_reasoning_steps_is_sasrec(block):
    sasrec = build("sasrec", block=block)
    rearec = build("rearec", block=block, reasoning_steps=0)
    rearec.load_state_dict(sasrec.state_dict())  # K = 0 has no parameters of its own
    torch.testing.assert_close(rearec(IDS), sasrec(IDS))
    torch.testing.assert_close(rearec.user_state(IDS), sasrec.user_state(IDS))


def plain_reasoning(enc, ids: torch.Tensor) -> torch.Tensor:
    """`[B, K + 1, D]` step states after the last item, recomputed without a cache: SASRec's blocks run
    causally over the history followed by the reasoning tokens produced so far."""
    padding = enc.padding_mask(ids)
    x = enc.block_input(ids, None, padding)
    states = []
    for step in range(enc.config.reasoning_steps + 1):
        mask = attention_mask(padding, causal=True)
        h = x
        for block in enc.blocks:
            h = block(h, mask) * padding.unsqueeze(-1)
        last = enc.final_norm(h)[:, -1]
        states.append(last)
        if step < enc.config.reasoning_steps:
            token = last + enc.reasoning_position_embedding.weight[step]
            x = torch.cat([x, token[:, None]], dim=1)
            padding = torch.cat([padding, torch.ones_like(padding[:, :1])], dim=1)
    return torch.stack(states, dim=1)


@pytest.mark.parametrize("block", ("paper", "reference"))
@pytest.mark.parametrize("k", (1, 3))
def test_cached_reasoning_equals_a_plain_causal_pass(block, k):
    enc = build("rearec", block=block, reasoning_steps=k)
    with torch.no_grad():
        steps = enc.step_states(IDS, None, enc.padding_mask(IDS))
        assert steps.shape == (3, MAX_LEN, k + 1, 16)
        torch.testing.assert_close(steps[:, -1], plain_reasoning(enc, IDS), rtol=1e-5, atol=1e-5)


def test_erl_state_is_the_mean_of_the_steps_and_prl_the_last():
    erl = build("rearec", reasoning_steps=2, method="erl")
    prl = build("rearec", reasoning_steps=2, method="prl")
    prl.load_state_dict(erl.state_dict())
    with torch.no_grad():
        steps = erl.step_states(IDS, None, erl.padding_mask(IDS))
        torch.testing.assert_close(erl.user_state(IDS), steps[:, -1].mean(1))
        torch.testing.assert_close(prl.user_state(IDS), steps[:, -1, -1])
        assert not torch.allclose(steps[:, -1, 0], steps[:, -1, -1])  # the reasoning steps change the state


def test_reasoning_is_causal_per_position():
    enc = build("rearec", reasoning_steps=2)
    changed = IDS.clone()
    changed[:, -2:] = torch.tensor([21, 22])
    with torch.no_grad():
        before = enc.step_states(IDS, None, enc.padding_mask(IDS))
        after = enc.step_states(changed, None, enc.padding_mask(changed))
    torch.testing.assert_close(before[:, :-2], after[:, :-2])
    assert not torch.allclose(before[:, -1], after[:, -1])


def test_pairwise_kl_by_hand():
    logits = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])  # one row, two steps, two items
    p = torch.softmax(logits[0], dim=-1)
    kl = lambda a, b: float((a * (a.log() - b.log())).sum())  # noqa: E731
    assert float(_pairwise_kl(logits)) == pytest.approx((kl(p[0], p[1]) + kl(p[1], p[0])) / 2)
    assert float(_pairwise_kl(torch.zeros(3, 3, 5))) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("method", ("erl", "prl"))
@torch.no_grad()
def test_objectives_differ_from_the_plain_next_item_loss(method):
    enc = build("rearec", reasoning_steps=2, method=method)
    windows = torch.randint(0, N_ITEMS, (8, MAX_LEN + 1), generator=torch.Generator().manual_seed(3))
    batch = enc.training_batch(windows, None, None)
    g = torch.Generator().manual_seed(0)
    full = enc.loss(batch, generator=g)
    plain = encoders.build(
        "rearec",
        {**enc.config.to_dict(), "kl_weight": 0.0, "temperature_scale": 1.0, "contrastive_weight": 0.0},
    )
    plain.load_state_dict(enc.state_dict())
    plain.eval()
    selected = batch.targets >= 0
    state = plain(batch.item_ids)[selected]
    base = torch.nn.functional.cross_entropy(plain.score(state), batch.targets[selected])
    if method == "erl":  # minus a positive diversity term
        assert float(full) < float(base)
        torch.testing.assert_close(plain.loss(batch), base)
    else:  # plus the earlier steps' losses and the contrastive term
        assert float(full) > float(base)


def test_config_validation():
    with pytest.raises(ValueError, match="reasoning_steps"):
        ReaRecConfig(n_items=5, reasoning_steps=-1)
    with pytest.raises(ValueError, match="method"):
        ReaRecConfig(n_items=5, method="both")
    with pytest.raises(ValueError, match="temperature_scale"):
        ReaRecConfig(n_items=5, temperature_scale=0.5)
    assert ReaRecConfig.from_dict(ReaRecConfig(n_items=5).to_dict()) == ReaRecConfig(n_items=5)


@pytest.mark.parametrize("method", ("erl", "prl"))
def test_checkpoint_round_trip(tmp_path, method):
    import numpy as np

    from recsim_env import data

    enc = build("rearec", reasoning_steps=2, method=method)
    with torch.no_grad():  # the reasoning positions are part of the saved weights
        enc.reasoning_position_embedding.weight.mul_(3.0)
    out = encoders.save(tmp_path / "ckpt", enc, item_ids=data.IdMap(np.arange(N_ITEMS) + 100))
    loaded = encoders.load(out)
    assert type(loaded) is type(enc) and loaded.config == enc.config
    torch.testing.assert_close(loaded.user_state(IDS), enc.user_state(IDS))
