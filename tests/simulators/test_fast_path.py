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


@pytest.mark.parametrize(("click_pooling", "interest_filter"), [(False, False), (True, False), (True, True)])
def test_response_model_last_state_matches_its_states(world_logs, click_pooling, interest_filter):
    """A simulator step's state (fast path, item features, optional click pooling and interest filter, the
    filter's state passed in or recomputed) is the teacher-forced state at the last position, and a
    position never sees the exposures after it."""
    import numpy as np

    from simulators import SimulatorConfig
    from simulators.data import build_schema, exposures, windows
    from simulators.response_model import ResponseModel

    config = SimulatorConfig(
        d_model=16, history_len=8, click_pooling=click_pooling, interest_filter=interest_filter, filter_dim=4
    )
    schema = build_schema(world_logs, session_gap_hours=1.0)
    torch.manual_seed(0)
    model = ResponseModel(config, schema)
    model.set_item_features(schema.item_features.encode(world_logs.items, world_logs.n_items))
    with torch.no_grad():  # untrained pooling weights are all equal: make them differ by distance
        if click_pooling:
            model.pool_distance.copy_(torch.linspace(0.0, -2.0, 8))
    model.eval()
    w = windows(exposures(world_logs, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0), schema, 8, 1)
    rows = np.arange(0, len(w.items), max(1, len(w.items) // 64))
    items = torch.from_numpy(w.items[rows, 1:])
    inputs = torch.from_numpy(w.inputs[rows, 1:])
    features = torch.from_numpy(w.user_features[rows])
    with torch.inference_mode():
        full = model.states(items, inputs, features)
        torch.testing.assert_close(
            model.last_state(items, inputs, features), full[:, -1], rtol=1e-5, atol=1e-5
        )
        carried = model.filter_state(items, inputs, features)
        torch.testing.assert_close(
            model.last_state(items, inputs, features, carried), full[:, -1], rtol=1e-5, atol=1e-5
        )
        changed = inputs.clone()
        changed[:, -1, 0] = 1.0 - changed[:, -1, 0]  # flip the last exposure's click
        other = model.states(items, changed, features)
    torch.testing.assert_close(other[:, :-1], full[:, :-1])
    assert not torch.allclose(other[:, -1], full[:, -1])
