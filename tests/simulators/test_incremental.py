"""Incremental inference: what a simulator step computes from the state it carries equals the plain forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsim_env.encoders import build
from recsim_env.encoders.sasrec import last_block_from_cache


@pytest.mark.parametrize(
    "n_layers, n_heads, block",
    [(1, 1, "paper"), (1, 2, "paper"), (2, 2, "paper"), (1, 1, "reference"), (2, 1, "reference")],
)
def test_sasrec_encode_last_matches_forward(n_layers, n_heads, block):
    torch.manual_seed(0)
    n_items, length = 50, 12
    encoder = build("sasrec", {"n_items": n_items, "max_len": length, "d_model": 16, "feedback_dim": 3,
                               "n_layers": n_layers, "n_heads": n_heads, "block": block}).eval()  # fmt: skip
    items = torch.randint(0, n_items, (9, length))
    items[:4, :5] = n_items  # left padding
    items[4, :-1] = n_items  # a one-item history
    items[5] = n_items  # no history at all
    inputs = torch.randn(9, length, 3)
    padding_mask = items != n_items
    with torch.inference_mode():
        expected = encoder(items, feedback=inputs)[:, -1]
        events = encoder.cache_events(encoder.embed_inputs(items, inputs, padding_mask), padding_mask)
        assert len(events) == (4 if (n_layers, block) == (1, "paper") else 1)  # `caches_keys`
        torch.testing.assert_close(encoder.encode_last(events, padding_mask), expected, rtol=1e-5, atol=1e-5)
        if encoder.caches_keys:  # the torch form of the cached attention, as on a GPU
            torch.testing.assert_close(
                last_block_from_cache(encoder, events, padding_mask, compiled=False),
                expected,
                rtol=1e-5,
                atol=1e-5,
            )
        for start in (1, 5):  # the cache as a ring whose window begins at slot `start`
            ring = tuple(torch.roll(e, start, dims=1) for e in events)
            torch.testing.assert_close(
                encoder.encode_last(ring, padding_mask, start=start), expected, rtol=1e-5, atol=1e-5
            )
        if encoder.caches_keys:  # one event's cache does not depend on the window around it
            alone = encoder.cache_events(
                encoder.embed_inputs(items[:, -1:], inputs[:, -1:], padding_mask[:, -1:]),
                padding_mask[:, -1:],
            )
            for whole, last in zip(events, alone, strict=True):
                torch.testing.assert_close(whole[:, -1:], last)


def _model(world_logs, **options):
    from simulators import SimulatorConfig
    from simulators.data import build_schema
    from simulators.response_model import ResponseModel

    config = SimulatorConfig(d_model=16, history_len=8, filter_dim=4, **options)
    schema = build_schema(world_logs, session_gap_hours=1.0)
    torch.manual_seed(0)
    model = ResponseModel(config, schema)
    model.set_item_features(schema.item_features.encode(world_logs.items, world_logs.n_items))
    with torch.no_grad():  # untrained pooling weights are all equal: make them differ by distance
        if model.click_pooling:
            model.pool_distance.copy_(torch.linspace(0.0, -2.0, 8))
    return model.eval(), schema


@pytest.mark.parametrize(
    ("click_pooling", "interest_filter", "encoder"),
    [
        (False, False, "sasrec"),
        (True, False, "sasrec"),
        (True, True, "sasrec"),
        (True, True, "gru4rec"),
        (True, True, "rearec"),  # a SASRec subclass whose reasoning steps the SASRec shortcut would skip
        (True, True, "mqsa"),  # two towers; the L-query reads the last L positions of each step
    ],
)
def test_response_model_last_state_matches_its_states(world_logs, click_pooling, interest_filter, encoder):
    """A simulator step's state (from the embedded history it keeps and the item table, item features,
    optional click pooling and interest filter, the filter's state passed in or recomputed) is the
    teacher-forced state at the last position, and a position never sees the exposures after it."""
    from simulators.data import exposures, windows

    model, schema = _model(
        world_logs, click_pooling=click_pooling, interest_filter=interest_filter, encoder=encoder
    )
    w = windows(exposures(world_logs, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0), schema, 8, 1)
    rows = np.arange(0, len(w.items), max(1, len(w.items) // 64))
    items = torch.from_numpy(w.items[rows, 1:])
    inputs = torch.from_numpy(w.inputs[rows, 1:])
    features = torch.from_numpy(w.user_features[rows])
    with torch.inference_mode():
        full = model.states(items, inputs, features).last()
        table = model.item_vectors(torch.arange(schema.n_items + 1))
        carried = model.filter_state(items, inputs, features) if interest_filter else None
        events = model.embed_history(items, inputs)
        for kwargs in ({}, {"belief": carried, "events": events, "item_table": table}):
            step = model.last_state(items, inputs, features, **kwargs)
            torch.testing.assert_close(step.hidden, full.hidden, rtol=1e-5, atol=1e-5)
            if interest_filter:
                torch.testing.assert_close(step.belief, full.belief, rtol=1e-5, atol=1e-5)
            else:
                assert step.belief is None and full.belief is None
        changed = inputs.clone()
        changed[:, -1, 0] = 1.0 - changed[:, -1, 0]  # flip the last exposure's click
        other = model.states(items, changed, features)
        every = model.states(items, inputs, features)
    torch.testing.assert_close(other.hidden[:, :-1], every.hidden[:, :-1])
    assert not torch.allclose(other.hidden[:, -1], every.hidden[:, -1])


@pytest.mark.parametrize("view", ["ensemble", "simset"])
def test_the_simulator_keeps_the_embedded_history_of_its_state(tiny_fit, view):
    """After steps, the per-event cache each row carries is the cache of its history, and the step's
    predictions equal `predict` from the history alone (no carried state but the filter's)."""
    from simulators.simset import SimulatorSet

    simulator = tiny_fit.simulator
    if view == "simset":
        simulator = SimulatorSet.of(simulator, {"leave_shift": (0.0, 0.0)})
    rng = np.random.default_rng(0)
    n = 20
    state = simulator.initial_state(
        rng.integers(0, simulator.n_users, n), rng.random((n, simulator.n_start_uniforms))
    ).state
    for _ in range(4):
        slates = np.argsort(rng.random((n, simulator.n_items)), axis=1)[:, :2]
        simulator.respond(state, slates, rng.random((n, simulator.n_step_uniforms)))
    if view == "simset":  # each row carries its own member's
        carried = [(state.carried, np.flatnonzero(state.parameters["member"] == k)) for k in (0, 1)]
    else:  # every row carries every member's
        carried = [(c, slice(None)) for c in state.carried]
    for k, (member_state, rows) in enumerate(carried):
        with torch.inference_mode():
            expected = simulator.members[k].embed_history(
                torch.from_numpy(state.items[rows]), torch.from_numpy(state.inputs[rows])
            )
        for kept, fresh in zip(member_state.window(), expected, strict=True):
            torch.testing.assert_close(torch.from_numpy(kept[rows]), fresh, rtol=1e-5, atol=1e-5)
    slates = np.argsort(rng.random((n, simulator.n_items)), axis=1)[:, :3]
    step = simulator.predict_step(state, slates)
    for member_state, _ in carried:  # as an encoder without `encode_last`: read the history
        member_state.events = ()
    plain = simulator.predict_step(state, slates)
    for key in ("click", "leave", "mean"):
        np.testing.assert_allclose(step[key], plain[key], rtol=1e-5, atol=1e-6)


def test_cached_last_block_runs_under_cpu_bf16_autocast():
    """Under autocast the projections come in bfloat16; the compiled attention reads them as float32."""
    torch.manual_seed(0)
    encoder = build("sasrec", {"n_items": 30, "max_len": 8, "d_model": 16, "n_layers": 1}).eval()
    items = torch.randint(0, 30, (5, 8))
    padding_mask = items != 30
    with torch.inference_mode():
        expected = encoder(items)[:, -1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            events = encoder.cache_events(encoder.embed_inputs(items, None, padding_mask), padding_mask)
            hidden = encoder.encode_last(events, padding_mask)
    assert torch.isfinite(hidden).all()
    torch.testing.assert_close(hidden.float(), expected, rtol=0.05, atol=0.05)


def test_member_state_ring_moves_on_like_a_shifted_window():
    """Writing new exposures over the oldest slots and moving the ring's start gives, in window order,
    the window shifted by them; rows from another ring land in window order too."""
    from simulators.state import MemberState

    rng = np.random.default_rng(0)
    n, length = 4, 6
    window = rng.random((n, length, 3)).astype(np.float32)
    ring = MemberState(np.zeros((n, 0), np.float32), (window.copy(),))
    for k in (1, 2, 1, 6, 8, 3):
        new = rng.random((n, k, 3)).astype(np.float32)
        half = slice(0, 2)
        ring.write_new(half, (new[half],))
        ring.write_new(np.array([2, 3]), (new[2:],))
        ring.move_on(k)
        window = np.concatenate([window, new], axis=1)[:, -length:]
        np.testing.assert_array_equal(ring.window()[0], window)
    fresh = MemberState(np.zeros((2, 0), np.float32), (rng.random((2, length, 3)).astype(np.float32),))
    ring.set_rows(np.array([0, 3]), fresh)
    window[[0, 3]] = fresh.events[0]
    np.testing.assert_array_equal(ring.window()[0], window)
