"""SIGMA's scans: the vectorised PF read-out equals a literal scan over each prefix's partial flip, the
hand-written backward passes gradcheck, and the model's PF branch, gates and config behave as documented."""

from __future__ import annotations

import pytest
import torch

from recsim_env import encoders
from recsim_env.encoders.sigma import SIGMAConfig, linear_scan, selective_scans
from tests.recsim_env.encoders.conftest import MAX_LEN, N_ITEMS, left_padded


def build(**overrides):
    torch.manual_seed(0)
    config = {"n_items": N_ITEMS, "max_len": MAX_LEN, "d_model": 16, "d_state": 4, **overrides}
    return encoders.build("sigma", config).eval()


def scan_inputs(batch=2, length=9, inner=3, n_state=4, padding=2):
    g = torch.Generator().manual_seed(0)
    kw = {"dtype": torch.float64, "generator": g}
    dt, dt_rev = torch.rand(batch, length, inner, **kw), torch.rand(batch, length, inner, **kw)
    u, u_rev = torch.randn(batch, length, inner, **kw), torch.randn(batch, length, inner, **kw)
    for x in (dt, dt_rev, u, u_rev):
        x[0, :padding] = 0.0  # row 0 is left-padded
    b, c, b_rev = (torch.randn(batch, length, n_state, **kw) for _ in range(3))
    a = -3.0 * torch.rand(inner, n_state, **kw)
    return dt, u, b, c, dt_rev, u_rev, b_rev, a


def literal_scans(dt, u, b, c, dt_rev, u_rev, b_rev, a, keep):
    """For each t: the SSM over e_1..e_t in order, and over e_{t-r}, ..., e_1, e_{t-r+1}, ..., e_t."""

    def run(steps):
        h = torch.zeros(dt.shape[0], dt.shape[2], a.shape[1], dtype=dt.dtype)
        for k, rev in steps:
            d, x, m = (dt_rev, u_rev, b_rev) if rev else (dt, u, b)
            h = torch.exp(d[:, k, :, None] * a) * h + (d[:, k] * x[:, k])[:, :, None] * m[:, k, None, :]
        return h

    forward, flipped = [], []
    for t in range(dt.shape[1]):
        read = c[:, t, None, :]
        forward.append((run([(k, False) for k in range(t + 1)]) * read).sum(-1))
        order = [(k, True) for k in range(t - keep, -1, -1)] + [
            (k, False) for k in range(max(t - keep + 1, 0), t + 1)
        ]
        flipped.append((run(order) * read).sum(-1))
    return torch.stack(forward, 1), torch.stack(flipped, 1)


@pytest.mark.parametrize("keep", (1, 3, 5, 20))
def test_pf_read_out_equals_a_literal_scan_over_each_prefix(keep):
    inputs = scan_inputs()
    y, y_flip = selective_scans(*inputs, keep=keep)
    expected, expected_flip = literal_scans(*inputs, keep)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(y_flip, expected_flip)
    if keep < 7:  # some prefix is long enough to flip, so the two read-outs differ there
        assert not torch.allclose(y_flip[1, -1], y[1, -1])
    else:
        torch.testing.assert_close(y_flip, y)


def test_hand_written_backward_passes_gradcheck():
    inputs = [x.requires_grad_() for x in scan_inputs(length=7)]
    assert torch.autograd.gradcheck(lambda *x: selective_scans(*x, keep=2), inputs)
    g = torch.Generator().manual_seed(1)
    decay = torch.rand(2, 6, 3, 2, dtype=torch.float64, generator=g).requires_grad_()
    x = torch.randn(2, 6, 3, 2, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(linear_scan, (decay, x))


def test_float32_scans_match_float64():
    inputs = scan_inputs(length=50, inner=8, n_state=8)
    y, y_flip = selective_scans(*(x.float() for x in inputs), keep=5)
    expected, expected_flip = selective_scans(*inputs, keep=5)
    torch.testing.assert_close(y.double(), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(y_flip.double(), expected_flip, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_pf_branch_is_the_forward_branch_until_a_prefix_has_more_than_r_items():
    enc = build(flip_keep=4, n_layers=1)
    layer = enc.layers[0]
    # a trained-looking SSM: dt ~ 0.13 (a memory of several steps) and B, C large enough that the state counts
    layer.mamba.dt_proj.bias.fill_(-2.0)
    layer.mamba.x_proj.weight.mul_(30.0)
    layer.mamba.skip.zero_()  # compare the SSM read-outs themselves, not the D u skip both branches share
    ids = left_padded([list(range(1, 11))])
    x = enc.input_norm(enc.item_embedding(ids)) * enc.padding_mask(ids).unsqueeze(-1)
    forward, flipped = layer.mamba(x, enc.padding_mask(ids))
    real = slice(MAX_LEN - 10, None)
    torch.testing.assert_close(
        flipped[0, real][:4], forward[0, real][:4]
    )  # prefixes of <= 4 items: nothing flips
    difference = (flipped[0, real][4:] - forward[0, real][4:]).abs().max()
    assert difference > 0.01 * forward[0, real].abs().max()


@torch.no_grad()
@pytest.mark.parametrize("n_layers", (1, 2))
def test_every_branch_reaches_the_state(n_layers):
    """Zeroing the last layer's forward Mamba, PF-Mamba or FE-GRU weight changes the user state. (Bitwise: at
    initialisation, behind a residual connection, a branch's share of the state is about 1e-5 of it.)"""
    enc = build(n_layers=n_layers)
    ids = left_padded([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3]])
    base = enc.user_state(ids)
    for branch in range(3):
        changed = build(n_layers=n_layers)
        changed.layers[-1].mixing[branch] = 0.0
        assert not torch.equal(changed.user_state(ids), base), branch


def test_config_validation():
    with pytest.raises(ValueError, match="flip_keep"):
        SIGMAConfig(n_items=5, flip_keep=2, d_conv=4)
    with pytest.raises(ValueError, match="d_state"):
        SIGMAConfig(n_items=5, d_state=0)
    config = SIGMAConfig(n_items=5, d_model=40, expand=2)
    assert config.d_inner == 80 and config.dt_rank == 3
    assert SIGMAConfig.from_dict(config.to_dict()) == config


def test_checkpoint_round_trip(tmp_path):
    import numpy as np

    from recsim_env import data

    enc = build(n_layers=2)
    with torch.no_grad():  # Mamba's own parameters (A, D) are part of the saved weights
        enc.layers[0].mamba.a_log.add_(0.5)
        enc.layers[1].mamba.skip.mul_(3.0)
    ids = left_padded([[1, 2, 3], [4, 8, 15, 16, 23, 29, 0, 7]])
    out = encoders.save(tmp_path / "ckpt", enc, item_ids=data.IdMap(np.arange(N_ITEMS) + 100))
    loaded = encoders.load(out)
    assert type(loaded) is type(enc) and loaded.config == enc.config
    torch.testing.assert_close(loaded.user_state(ids), enc.user_state(ids))
