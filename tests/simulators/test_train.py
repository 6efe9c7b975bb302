"""Training: seeded and bit-for-bit reproducible, calibration by temperature, heads that learn."""

from __future__ import annotations

import numpy as np
import torch

from tests.simulators.conftest import TINY


def test_fit_is_reproducible_for_a_seed(world_logs):
    from simulators import SimulatorConfig, fit

    config = SimulatorConfig(**{**TINY, "epochs": 1})
    a, b = fit(world_logs, config), fit(world_logs, config)
    for x, y in zip(a.simulator.members, b.simulator.members):
        for (name, p), (_, q) in zip(x.state_dict().items(), y.state_dict().items()):
            torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def test_platt_scaling_recovers_an_overconfident_scale_and_a_shift():
    from simulators.calibration import platt as _platt

    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(20_000, generator=generator) * 1.5
    targets = (torch.rand(20_000, generator=generator) < torch.sigmoid(true_logits)).float()
    # The model's logits are 3x too confident and shifted by +0.6 (in units of the model's logit / T).
    t, b = _platt(3.0 * true_logits + 1.8, targets, bias=True)
    assert abs(t - 3.0) < 0.2 and abs(b + 0.6) < 0.1
    t, b = _platt(3.0 * true_logits, targets, bias=False)  # temperature alone
    assert abs(t - 3.0) < 0.2 and b == 0.0


def test_tiny_fit_learns_the_click_rate(tiny_fit):
    from simulators.report import log_metrics

    metrics = log_metrics(tiny_fit.simulator, tiny_fit.log.select(tiny_fit.valid_users))
    click = metrics["click"]
    # Calibrated on these users: the mean predicted click rate matches the observed one.
    assert abs(click["mean_predicted"] - click["mean_observed"]) < 0.05
    assert np.isfinite(click["log_loss"])


def test_expected_calibration_error_by_hand():
    from simulators.report import expected_calibration_error

    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0.0, 1.0, 1.0, 1.0])
    # Bin of 0.1: mean y 0.5 (gap 0.4); bin of 0.9: mean y 1 (gap 0.1); weights 1/2 each.
    assert abs(expected_calibration_error(p, y) - 0.25) < 1e-12


def test_click_loss_weight_scales_only_the_click_term(world_logs):
    from simulators import SimulatorConfig
    from simulators.batches import window_batch as _tensors
    from simulators.data import build_schema, exposures, windows
    from simulators.response_model import ResponseModel, nll_terms

    schema = build_schema(world_logs, session_gap_hours=1.0)
    log = exposures(world_logs, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0)
    w = windows(log, schema, TINY["history_len"])
    items, inputs, features, batch = _tensors(w, np.arange(32), schema)
    torch.manual_seed(0)
    model = ResponseModel(SimulatorConfig(**TINY, click_loss_weight=7.0), schema).eval()
    terms = nll_terms(model.head_outputs(items, inputs, features), batch, model.n_binary)
    expected = 7.0 * terms["click"] + sum(v for k, v in terms.items() if k != "click")
    torch.testing.assert_close(model.loss(items, inputs, batch, features), expected)
    assert set(terms) >= {"click", "binary", "continuous", "leave"}


def test_the_gap_term_reads_the_gaps_the_mask_marks_known_only(world_logs):
    """`log_gap_known` marks the return-gap targets: a gap where it is 0 is never read, where 1 it is."""
    from simulators import SimulatorConfig
    from simulators.batches import window_batch
    from simulators.data import build_schema, exposures, windows
    from simulators.response_model import ResponseModel, nll_terms

    schema = build_schema(world_logs, session_gap_hours=1.0)
    log = exposures(world_logs, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0)
    w = windows(log, schema, TINY["history_len"], stride=4)
    _, _, _, batch = window_batch(w, np.arange(len(w.items)), schema)
    known = (batch["mask"] * batch["log_gap_known"]) > 0
    assert 0 < known.sum() < (batch["mask"] > 0).sum() and torch.isfinite(batch["log_gap"]).all()
    rows = np.flatnonzero(known.any(1).numpy())[:64]
    items, inputs, features, batch = window_batch(w, rows, schema)
    known = batch["log_gap_known"] > 0
    torch.manual_seed(0)
    model = ResponseModel(SimulatorConfig(**TINY), schema).eval()
    with torch.no_grad():
        out = model.head_outputs(items, inputs, features)
    gap = nll_terms(out, batch, model.n_binary)["gap"]
    far = torch.full_like(batch["log_gap"], 1e6)
    unknown_moved = {**batch, "log_gap": torch.where(known, batch["log_gap"], far)}
    known_moved = {**batch, "log_gap": torch.where(known, far, batch["log_gap"])}
    assert nll_terms(out, unknown_moved, model.n_binary)["gap"] == gap
    assert nll_terms(out, known_moved, model.n_binary)["gap"] > gap + 1e6
    none_known = {**batch, "log_gap_known": torch.zeros_like(batch["log_gap_known"])}
    assert "gap" not in nll_terms(out, none_known, model.n_binary)


def test_config_refuses_a_bad_window_stride_or_click_weight():
    import pytest

    from simulators import SimulatorConfig

    with pytest.raises(ValueError, match="window_stride"):
        SimulatorConfig(window_stride=0)
    with pytest.raises(ValueError, match="click_loss_weight"):
        SimulatorConfig(click_loss_weight=0.0)
    assert SimulatorConfig(window_stride=None).window_stride is None


def test_predictions_read_the_user_features(tiny_fit):
    import pytest

    simulator = tiny_fit.simulator
    assert simulator.n_user_features == 11  # the world logs' feature_0 .. feature_10
    rng = np.random.default_rng(0)
    start = simulator.initial_state(
        rng.integers(0, simulator.n_users, 16), rng.random((16, simulator.n_start_uniforms))
    )
    slates = rng.integers(0, simulator.n_items, size=(16, 2))
    state = start.state
    assert np.array_equal(start.user_features, state.user_features) and start.user_features.shape == (16, 11)
    same = simulator.predict(state.items, state.inputs, slates, user_features=state.user_features)["click"]
    other = simulator.predict(state.items, state.inputs, slates, user_features=-state.user_features)["click"]
    assert not np.allclose(same, other)
    with pytest.raises(ValueError, match="reads 11 user features"):
        simulator.predict(state.items, state.inputs, slates)


def test_predictions_read_the_item_features(tiny_fit):
    """The world logs' items table (category, duration) feeds every candidate's vector and every history
    position: changing one item's features changes its predictions and the states of histories holding it."""
    import torch

    simulator = tiny_fit.simulator
    model = simulator.members[0]
    assert simulator.schema.item_features.names[:2] == ("duration_s", "category=0")
    table = model.item_feature_table
    assert table.shape == (simulator.n_items + 1, 11) and not table[-1].any()  # padding row stays zero
    rng = np.random.default_rng(0)
    start = simulator.initial_state(
        rng.integers(0, simulator.n_users, 8), rng.random((8, simulator.n_start_uniforms))
    )
    state = start.state
    item = int(state.items[0, -1])  # the first user's most recent item, also the candidate
    slates = np.full((8, 1), item)
    before = simulator.predict(state.items, state.inputs, slates, user_features=state.user_features)["click"]
    with torch.no_grad():
        table[item] = torch.roll(table[item], 1)
    after = simulator.predict(state.items, state.inputs, slates, user_features=state.user_features)["click"]
    assert not np.allclose(before, after)
    with torch.no_grad():
        hidden = model.last_state(
            torch.from_numpy(state.items),
            torch.from_numpy(state.inputs),
            torch.from_numpy(state.user_features),
        )
        table[item] = torch.roll(table[item], -1)
        restored = model.last_state(
            torch.from_numpy(state.items),
            torch.from_numpy(state.inputs),
            torch.from_numpy(state.user_features),
        )
    assert not torch.allclose(hidden.hidden[0], restored.hidden[0])
