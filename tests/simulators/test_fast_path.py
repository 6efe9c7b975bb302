"""The last-position fast path equals the encoder's full forward."""

from __future__ import annotations

import pytest
import torch

from recsim_env.encoders import build
from simulators.fast_path import last_state


@pytest.mark.parametrize("n_layers, n_heads, block", [(1, 1, "paper"), (2, 2, "paper"), (1, 1, "reference")])
def test_last_state_matches_forward(n_layers, n_heads, block):
    torch.manual_seed(0)
    n_items, length = 50, 12
    encoder = build("sasrec", {"n_items": n_items, "max_len": length, "d_model": 16, "feedback_dim": 3,
                               "n_layers": n_layers, "n_heads": n_heads, "block": block}).eval()  # fmt: skip
    items = torch.randint(0, n_items, (9, length))
    items[:4, :5] = n_items  # left padding
    items[4, :-1] = n_items  # a one-item history
    inputs = torch.randn(9, length, 3)
    with torch.inference_mode():
        expected = encoder(items, feedback=inputs)[:, -1]
        torch.testing.assert_close(last_state(encoder, items, inputs), expected, rtol=1e-5, atol=1e-5)
