"""Per-user training weights of `simulators.fit`: None and equal weights fit alike, a weight scales a user's
share of every loss, 0 removes the user, and bad weights are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.simulators.conftest import TINY


def _same_weights(a, b) -> None:
    for x, y in zip(a.simulator.members, b.simulator.members):
        for (name, p), (_, q) in zip(x.state_dict().items(), y.state_dict().items()):
            torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def _differs(a, b) -> bool:
    return any(
        not torch.equal(p, q)
        for x, y in zip(a.simulator.members, b.simulator.members)
        for p, q in zip(x.state_dict().values(), y.state_dict().values())
    )


def test_equal_weights_fit_exactly_what_no_weights_fit(world_logs):
    from simulators import SimulatorConfig, fit

    config = SimulatorConfig(**{**TINY, "epochs": 1})
    plain = fit(world_logs, config)
    _same_weights(plain, fit(world_logs, config, user_weights=np.ones(world_logs.n_users)))
    # Only relative weights count: scaling them all by 4 (exact in floating point) changes nothing.
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.1, 1.0, world_logs.n_users)
    _same_weights(
        fit(world_logs, config, user_weights=weights), fit(world_logs, config, user_weights=4 * weights)
    )
    assert _differs(plain, fit(world_logs, config, user_weights=weights))


def test_a_window_weight_scales_its_share_of_the_loss(world_logs):
    """With 0 / 1 window weights the weighted loss is the unweighted loss of the weight-1 windows alone."""
    from simulators import SimulatorConfig
    from simulators.batches import window_batch as _tensors
    from simulators.data import build_schema, exposures, windows
    from simulators.response_model import ResponseModel

    schema = build_schema(world_logs, session_gap_hours=1.0)
    log = exposures(world_logs, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0)
    w = windows(log, schema, TINY["history_len"], 4)
    torch.manual_seed(0)
    model = ResponseModel(SimulatorConfig(**TINY), schema).eval()
    rows = np.arange(64)
    weights = np.zeros(len(w.items))
    weights[rows[::3]] = 1.0
    items, inputs, features, batch = _tensors(w, rows, schema, weights)
    kept = rows[::3]
    k_items, k_inputs, k_features, k_batch = _tensors(w, kept, schema)
    torch.testing.assert_close(
        model.loss(items, inputs, batch, features), model.loss(k_items, k_inputs, k_batch, k_features)
    )
    # Weight 2 on some windows counts each of their targets twice in the mean (click term).
    weights[rows[::3]] = 2.0
    weights[rows[1::3]] = 1.0
    _, _, _, doubled = _tensors(w, rows, schema, weights)
    plain_mask = w.target_mask(rows).astype(np.float32)
    expected = plain_mask * weights[rows, None]
    np.testing.assert_array_equal(doubled["mask"].numpy(), expected.astype(np.float32))


def test_window_users_names_the_sequence_each_window_comes_from(world_logs):
    from simulators.data import build_schema, exposures, window_users, windows

    schema = build_schema(world_logs, session_gap_hours=1.0)
    log = exposures(world_logs, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0)
    w = windows(log, schema, 6, 3)
    owner = window_users(log, w)
    for j in range(0, len(owner), 7):
        real = w.rows[j][w.rows[j] >= 0]
        assert log.offsets[owner[j]] <= real.min() and real.max() < log.offsets[owner[j] + 1]


def test_zero_weight_users_do_not_lift_the_item_they_click(world_logs):
    """Users whose every exposure is a click on item 0 lift its predicted click rate over other items'; with
    weight 0 they leave it where a fit without them puts it."""
    import pandas as pd

    from recsim_env.data import LoggedInteractions
    from simulators import SimulatorConfig, fit
    from simulators.data import model_inputs

    frame = world_logs.frame
    n_real = world_logs.n_users
    templates = frame[frame["user_id"] < 40]
    extra = templates.assign(
        user_id=templates["user_id"] + n_real,
        item_id=0,
        click=1.0,
        session_id=templates["session_id"] + 10**9,
    )
    users = world_logs.users
    fake_users = users.iloc[:40].copy()
    fake_users.index = pd.RangeIndex(n_real, n_real + 40)
    logs = LoggedInteractions(
        pd.concat([frame, extra], ignore_index=True).astype(frame.dtypes.to_dict()),
        user_ids=type(world_logs.user_ids)(np.arange(n_real + 40)),
        item_ids=world_logs.item_ids,
        feedback_columns=world_logs.feedback_columns,
        items=world_logs.items,
        users=pd.concat([users, fake_users]),
        name="planted",
    )
    weights = np.r_[np.ones(n_real), np.zeros(40)]
    config = SimulatorConfig(**{**TINY, "epochs": 3})

    def lift_of_item_0(result) -> float:
        """Mean logit P(click) of item 0 over the mean of items 1..49, after the real users' first 8
        exposures (a difference of logits: calibration shifts cancel)."""
        simulator = result.simulator
        pool = simulator.start_pool
        real = np.flatnonzero(pool.lengths()[:n_real] >= 8)
        index = pool.offsets[real][:, None] + np.arange(8)[None, :]
        inputs = model_inputs(
            pool.feedback[index], pool.gap_before[index], np.asarray(simulator.schema.scales)
        )
        slates = np.broadcast_to(np.arange(50), (len(real), 50)).copy()
        p = simulator.predict(pool.items[index], inputs, slates, user_features=pool.user_features[real])[
            "click"
        ]
        logit = np.log(p) - np.log1p(-p)
        return float((logit[:, 0] - logit[:, 1:].mean(axis=1)).mean())

    planted = lift_of_item_0(fit(logs, config))
    weighted = lift_of_item_0(fit(logs, config, user_weights=weights))
    clean = lift_of_item_0(fit(world_logs, config))
    # Measured at the commit that added weights: lifts 0.63 planted, -0.04 weighted, -0.01 clean.
    assert planted > weighted + 0.4
    assert abs(weighted - clean) < 0.25


@pytest.mark.parametrize(
    "weights, match",
    [
        (np.ones(3), r"shape \("),
        ("ones", "array of numbers"),
        (-1.0, ">= 0"),
        (np.nan, "finite"),
        (0.0, "weights are all 0"),
    ],
)
def test_bad_user_weights_are_refused_naming_the_argument(world_logs, weights, match):
    from recsim_env.errors import ArgumentError
    from simulators import SimulatorConfig, fit

    if isinstance(weights, float):
        weights = (
            np.full(world_logs.n_users, weights)
            if weights == 0.0
            else np.r_[weights, np.ones(world_logs.n_users - 1)]
        )
    with pytest.raises(ArgumentError, match=match):
        fit(world_logs, SimulatorConfig(**{**TINY, "epochs": 1}), user_weights=weights)
