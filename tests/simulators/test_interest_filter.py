"""The learned interest filter: a Bayesian belief that reads history in order, and a simulator that carries it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simulators.interest_filter import InterestFilter

N_ITEMS, D, K = 12, 8, 4


def _filter(drift: bool = True) -> InterestFilter:
    torch.manual_seed(0)
    model = InterestFilter(D, N_ITEMS, n_user_features=3, continuous_index=(1,), dim=K)
    with torch.no_grad():
        model.item_map.weight.mul_(4.0)  # make the items' filter vectors differ clearly
        if not drift:
            model.drift_logit.fill_(-30.0)
            model.log_process_noise.fill_(-30.0)
    return model.eval()


def _history(batch: int = 6, length: int = 9, seed: int = 0, padding: int = 2):
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(0, N_ITEMS, (batch, length), generator=g)
    items[:, :padding] = N_ITEMS  # left padding
    inputs = torch.rand(batch, length, 3, generator=g)
    inputs[..., 0] = (inputs[..., 0] > 0.5).float()
    inputs[..., 2] = torch.log1p(inputs[..., 2] * 2.0)  # days since the last session
    vectors = torch.randn(N_ITEMS + 1, D, generator=g)
    features = torch.randn(batch, 3, generator=g)
    return items, vectors[items], inputs, (items != N_ITEMS).float(), features


def test_state_read_in_parts_equals_state_read_at_once():
    """What a running simulator relies on: advancing the state over new exposures gives the state of the
    whole history, and the state after each position is the teacher-forced one."""
    model = _filter()
    items, vectors, inputs, real, features = _history()
    with torch.inference_mode():
        every = model(items, vectors, inputs, real, features)
        prior = model.initial(len(items), features)
        last = model.advance(prior, items, vectors, inputs, real)
        part = model.advance(prior, items[:, :5], vectors[:, :5], inputs[:, :5], real[:, :5])
        resumed = model.advance(part, items[:, 5:], vectors[:, 5:], inputs[:, 5:], real[:, 5:])
    torch.testing.assert_close(every[:, -1], last)
    torch.testing.assert_close(resumed, last, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(every[:, 4], part)


@pytest.mark.parametrize("drift", [True, False])
@pytest.mark.parametrize("continuous_index", [(), (1,), (1, 2)])
def test_compiled_updates_equal_the_torch_form(drift, continuous_index):
    """A simulator step's filter (one compiled pass per user) gives the torch form's state: clicks,
    padding, continuous signals, drift and satiation included."""
    torch.manual_seed(0)
    model = InterestFilter(D, N_ITEMS, n_user_features=3, continuous_index=continuous_index, dim=K).eval()
    with torch.no_grad():
        model.item_map.weight.mul_(4.0)
        model.satiation_penalty.weight.normal_()
        model.signal_offset.weight.normal_()
        if not drift:
            model.drift_logit.fill_(-30.0)
    items, vectors, inputs, real, features = _history(batch=16, length=7, seed=3)
    with torch.inference_mode():
        prior = model.initial(len(items), features)
        by_torch = model.advance(prior, items, vectors, inputs, real, compiled=False)
        compiled = model.advance(prior, items, vectors, inputs, real, compiled=True)
        default = model.advance(prior, items, vectors, inputs, real)  # compiled: CPU, no autograd
    torch.testing.assert_close(compiled, by_torch, rtol=1e-4, atol=1e-5)
    assert torch.equal(default, compiled)
    assert not torch.equal(prior, compiled)


@pytest.mark.parametrize("user_features", [True, False])
def test_padding_is_no_exposure(user_features):
    """Also from the zero prior mean a filter without user features starts at (padding once blew its
    covariance up, and training went NaN)."""
    torch.manual_seed(0)
    model = InterestFilter(
        D, N_ITEMS, n_user_features=3 if user_features else 0, continuous_index=(1,), dim=K
    )
    items, vectors, inputs, real, features = _history()
    features = features if user_features else None
    start = model.initial(len(items), features)
    after_padding = model.advance(start, items[:, :2], vectors[:, :2], inputs[:, :2], real[:, :2])
    torch.testing.assert_close(after_padding, start)
    model(items, vectors, inputs, real, features).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("clicked", [1.0, 0.0])
def test_a_click_raises_the_items_score_and_a_skip_lowers_it(clicked):
    """The Laplace step: a click moves the belief towards the item, a skip away from it, and either one
    makes the belief about that item more certain."""
    model = _filter(drift=False)
    with torch.no_grad():
        model.log_signal_noise.fill_(30.0)  # the click alone: a watch time this noisy says nothing
    items, vectors, inputs, real, features = _history(batch=8, length=1, padding=0)
    inputs[..., 0] = clicked
    with torch.inference_mode():
        before = model.initial(len(items), features)
        after = model.advance(before, items, vectors, inputs, real)
        a = model.item_map(vectors[:, 0])
        (m0, p0, _), (m1, p1, _) = model.unpack(before), model.unpack(after)
    score_change = ((m1 - m0) * a).sum(-1)
    assert (score_change > 0).all() if clicked else (score_change < 0).all()
    variance = lambda p: torch.einsum("bi,bij,bj->b", a, p, a)  # noqa: E731
    assert (variance(p1) < variance(p0)).all()


def test_satiation_lowers_what_was_just_clicked_and_fades_with_time():
    model = _filter(drift=False)
    with torch.no_grad():
        model.satiation_map.weight.copy_(torch.eye(K, D))
        model.satiation_penalty.weight.copy_(torch.eye(K, D))
    vectors = torch.zeros(1, 1, D)
    vectors[..., 0] = 1.0
    items = torch.zeros(1, 1, dtype=torch.long)
    features = torch.zeros(1, 3)
    with torch.inference_mode():
        start = model.initial(1, features)
        clicked = model.advance(start, items, vectors, torch.tensor([[[1.0, 0.0, 0.0]]]), torch.ones(1, 1))
        # the same click after a 5-day break: satiation left from before the break is mostly gone
        later = model.advance(
            clicked, items, vectors, torch.tensor([[[0.0, 0.0, float(np.log1p(5.0))]]]), torch.ones(1, 1)
        )
        logit = torch.zeros(1, 1)
        fresh, sated = (model.click_logit(logit, s, vectors) for s in (start, clicked))
        rested = model.click_logit(logit, later, vectors)
    assert sated < fresh
    assert sated < rested


@pytest.fixture(scope="module")
def filter_fit(world_logs):
    from simulators import SimulatorConfig, fit

    from .conftest import TINY

    config = SimulatorConfig(**{**TINY, "epochs": 1}, ensemble_size=2, interest_filter=True, filter_dim=4)
    return fit(world_logs, config)


@pytest.fixture(scope="module")
def filter_simulator(filter_fit):
    return filter_fit.simulator


@pytest.mark.parametrize("budget", [None, 0], ids=["checkpoint-every-exposure", "checkpoint-every-16th"])
def test_simulator_carries_each_members_filter_state(filter_simulator, budget, monkeypatch):
    """Episodes start from the filter state of the user's whole logged prefix (whether the start pool's
    checkpoints fit every exposure or only every 16th, the rest read at the start), each step reads the new
    exposures once, and while the episode fits the window the carried state gives the window's predictions."""
    import simulators.start_pool
    from simulators.ensemble import EnsembleSimulator, members_of

    base = filter_simulator
    # Its own checkpoints, under this budget.
    simulator = EnsembleSimulator(
        members_of(base.config, base.schema, base.members, base.start_pool, base.item_tokens)
    )
    if budget is not None:
        monkeypatch.setattr(simulators.start_pool, "BELIEF_CHECKPOINT_BYTES", budget)
    assert simulator.simulators[0].checkpoints.get()[0] == (16 if budget == 0 else 1)
    pool = simulator.start_pool
    rng = np.random.default_rng(0)
    n = 16
    users = rng.integers(0, simulator.n_users, n)
    uniforms = rng.random((n, simulator.n_start_uniforms))
    uniforms[: n // 2, 0] = 0.0  # half the rows start from a one-exposure prefix
    state = simulator.initial_state(users, uniforms).state
    assert state.beliefs().shape == (n, 2, simulator.members[0].interest_filter.state_width)

    rows = simulator.simulators[0]._users[users]
    lo = pool.offsets[rows]
    end = lo + 1 + np.floor(uniforms[:, 0] * (pool.offsets[rows + 1] - lo - 1)).astype(np.int64)
    for row in range(n):
        span = np.arange(lo[row], end[row])
        items = torch.from_numpy(pool.items[span][None])
        inputs = torch.from_numpy(
            simulator_inputs(simulator, pool.feedback[span], pool.gap_before[span])[None]
        )
        features = torch.from_numpy(pool.user_features[rows[row]][None])
        for k, member in enumerate(simulator.members):
            with torch.inference_mode():
                expected = member.filter_state(items, inputs, features)[0].numpy()
            np.testing.assert_allclose(state.carried[k].beliefs[row], expected, rtol=1e-4, atol=1e-5)

    start = state.beliefs()
    step_items, step_inputs = [], []
    for _ in range(3):
        slates = rng.integers(0, simulator.n_items, (n, 1))
        response = simulator.respond(state, slates, rng.random((n, simulator.n_step_uniforms)))
        step_items.append(slates)
        step_inputs.append(state.inputs[:, -1:].copy())
        assert response.feedback.shape == (n, 1, len(simulator.signals))
    new_items = torch.from_numpy(np.concatenate(step_items, axis=1))
    new_inputs = torch.from_numpy(np.concatenate(step_inputs, axis=1))
    for k, member in enumerate(simulator.members):
        with torch.inference_mode():
            expected = member.advance_filter(torch.from_numpy(start[:, k]), new_items, new_inputs).numpy()
        np.testing.assert_allclose(state.carried[k].beliefs, expected, rtol=1e-4, atol=1e-5)

    short = np.arange(n // 2)  # 1 + 3 exposures: the episode fits the window of 8
    slates = rng.integers(0, simulator.n_items, (len(short), 3))
    carried = simulator.predict(
        state.items[short],
        state.inputs[short],
        slates,
        -1,
        state.user_features[short],
        state.beliefs()[short],
    )
    windowed = simulator.predict(
        state.items[short], state.inputs[short], slates, -1, state.user_features[short]
    )
    np.testing.assert_allclose(carried["click"], windowed["click"], rtol=1e-4, atol=1e-6)


def simulator_inputs(simulator, feedback, gap_before):
    from simulators.data import model_inputs

    return model_inputs(feedback, gap_before, np.asarray(simulator.schema.scales, dtype=np.float32))


def test_wrappers_of_the_same_members_share_the_start_pool_checkpoints(filter_simulator):
    from simulators.simset import SimulatorSet

    view = SimulatorSet.of(filter_simulator, {"leave_shift": (-0.5, 0.5)})
    shared = filter_simulator.simulators[0].checkpoints
    assert all(
        s.checkpoints is shared for s in (*view.simulators, *filter_simulator.with_disagreement().simulators)
    )
    assert [s.checkpoint_column for s in view.simulators] == [0, 1]
    assert view.simulators[1].checkpoints.get() is filter_simulator.simulators[0].checkpoints.get()


def test_a_saved_filter_simulator_loads_with_identical_states_and_predictions(filter_simulator, tmp_path):
    import simulators

    loaded = simulators.load(simulators.save(filter_simulator, tmp_path / "sim"))
    rng = np.random.default_rng(1)
    users = rng.integers(0, filter_simulator.n_users, 32)
    uniforms = rng.random((32, filter_simulator.n_start_uniforms))
    before = filter_simulator.initial_state(users, uniforms).state
    after = loaded.initial_state(users, uniforms).state
    np.testing.assert_array_equal(before.beliefs(), after.beliefs())
    slates = rng.integers(0, filter_simulator.n_items, (32, 4))
    args = (before.items, before.inputs, slates, -1, before.user_features, before.beliefs())
    np.testing.assert_array_equal(filter_simulator.predict(*args)["click"], loaded.predict(*args)["click"])


def test_a_simulator_set_carries_only_each_rows_own_member(filter_simulator):
    """A simulator-set row reads its own member alone, so it carries that member's filter state alone (one
    column); that state equals the ensemble simulator's for that member, and `predict` with that member
    and that one column gives the step's predictions."""
    from simulators.simset import SimulatorSet

    simset = SimulatorSet.of(filter_simulator, {"leave_shift": (0.0, 0.0)})
    rng = np.random.default_rng(2)
    n = 24
    users = rng.integers(0, filter_simulator.n_users, n)
    uniforms = rng.random((n, simset.n_start_uniforms))
    state = simset.initial_state(users, uniforms).state
    ensemble = filter_simulator.initial_state(users, uniforms[:, :1]).state
    own = state.parameters["member"]
    assert len(np.unique(own)) == 2
    for _ in range(3):
        slates = rng.integers(0, filter_simulator.n_items, (n, 2))
        step_uniforms = rng.random((n, simset.n_step_uniforms))
        simset.respond(state, slates, step_uniforms)
        # The ensemble's state, advanced over the same exposures (its responses would differ: feed the set's).
        with torch.inference_mode():
            for k, member in enumerate(filter_simulator.members):
                ensemble.carried[k].beliefs[:] = member.advance_filter(
                    torch.from_numpy(ensemble.carried[k].beliefs),
                    torch.from_numpy(slates),
                    torch.from_numpy(state.inputs[:, -2:].copy()),
                ).numpy()
    rows = np.arange(n)
    beliefs = state.carried.beliefs
    assert beliefs.shape == ensemble.carried[0].beliefs.shape and np.isfinite(beliefs).all()
    np.testing.assert_allclose(beliefs, ensemble.beliefs()[rows, own], rtol=1e-5, atol=1e-6)
    slates = rng.integers(0, filter_simulator.n_items, (n, 2))
    step = simset.predict_step(state, slates)["click"]
    for k in (0, 1):
        mine = np.flatnonzero(own == k)
        alone = simset.predict(
            state.items[mine],
            state.inputs[mine],
            slates[mine],
            k,
            state.user_features[mine],
            beliefs[mine][:, None],
        )
        np.testing.assert_allclose(step[mine], alone["click"], rtol=1e-5, atol=1e-6)


def test_the_filter_reads_the_users_whole_history_in_training_and_in_the_report(filter_fit):
    """A window's filter starts from the state the user's earlier exposures leave (as a running simulator
    carries it): held-out clicks get the same prediction as from the window alone where the history fits
    the window, another one where it does not; the report also scores the window-only view."""
    from simulators.data import windows
    from simulators.report import WINDOW_CLICK, log_metrics, teacher_forced

    simulator = filter_fit.simulator
    log = filter_fit.log.select(filter_fit.test_users)
    scales = np.asarray(simulator.schema.scales, dtype=np.float32)
    member = simulator.members[1]
    before = member.filter_state_before_rows(log, np.arange(len(log.items)), scales, batch_size=3, chunk=5)
    for user in range(min(log.n_users, 4)):
        lo, hi = log.offsets[user], log.offsets[user + 1]
        features = torch.from_numpy(log.user_features[user : user + 1])
        for row in (lo, lo + 1, (lo + hi) // 2, hi - 1):
            span = np.arange(lo, row)
            with torch.inference_mode():
                expected = (
                    member.interest_filter.initial(1, features)
                    if row == lo
                    else member.filter_state(
                        torch.from_numpy(log.items[span][None]),
                        torch.from_numpy(
                            simulator_inputs(simulator, log.feedback[span], log.gap_before[span])[None]
                        ),
                        features,
                    )
                )[0].numpy()
            np.testing.assert_allclose(before[row], expected, rtol=1e-4, atol=1e-5)

    w = windows(log, simulator.schema, simulator.history_len, simulator.config.window_stride)
    starts = member.window_filter_starts(log, w, scales)
    first = np.array([r[r >= 0].min() for r in w.rows])
    at_start = np.isin(first, log.offsets[:-1])  # these start from the prior, which the model computes
    assert at_start.any() and (~at_start).any()
    np.testing.assert_array_equal(starts.from_prior.numpy(), at_start)
    assert torch.isfinite(starts.state).all()
    np.testing.assert_allclose(
        starts.state[~at_start].numpy(), before[first[~at_start]], rtol=1e-4, atol=1e-5
    )

    carried, windowed = (teacher_forced(simulator, log, carried=c)["pred"]["click"] for c in (True, False))
    # The window holds the target's whole history where it starts at the user's first exposure.
    user_start = log.offsets[np.searchsorted(log.offsets, first, side="right") - 1]
    mask = w.target_mask()
    fits = np.broadcast_to((first == user_start)[:, None], mask.shape)[mask]
    assert fits.any() and (~fits).any()
    np.testing.assert_allclose(carried[fits], windowed[fits], rtol=1e-4, atol=1e-6)
    assert not np.allclose(carried[~fits], windowed[~fits], rtol=1e-3, atol=1e-4)
    assert WINDOW_CLICK in log_metrics(simulator, log)


def test_training_starts_each_windows_filter_where_the_users_earlier_exposures_left_it(
    world_logs, monkeypatch
):
    from simulators import SimulatorConfig, fit
    from simulators.response_model import ResponseModel

    from .conftest import TINY

    seen = []
    loss = ResponseModel.loss

    def spy(self, items, inputs, batch, user_features=None, filter_start=None):
        seen.append((filter_start, self.interest_filter.initial(len(items), user_features).detach()))
        return loss(self, items, inputs, batch, user_features, filter_start)

    monkeypatch.setattr(ResponseModel, "loss", spy)
    config = SimulatorConfig(**{**TINY, "epochs": 1}, interest_filter=True, filter_dim=4)
    model = fit(world_logs, config).simulator.members[0]
    assert seen and all(start is not None for start, _ in seen)
    # Windows at a sequence's start begin at the prior (`from_prior`: the model computes it, so it is
    # trained); later ones from the state the earlier exposures left, which is not the prior.
    at_start = np.concatenate([start.from_prior.numpy() for start, _ in seen])
    assert at_start.any() and (~at_start).any()
    later = np.concatenate([(s.state - i).abs().amax(dim=1).numpy() > 1e-6 for s, i in seen])[~at_start]
    assert later.all()
    # The prior is learned: its scale moved from its initial value.
    assert not torch.equal(model.interest_filter.prior_scale, torch.eye(4) * 0.5)


def test_click_logit_of_one_candidate_is_the_same_outside_autograd():
    """A simulator step's one-candidate variance (a broadcast sum) equals training's matmul form."""
    model = _filter()
    items, vectors, inputs, real, features = _history()
    with torch.no_grad():
        belief = model.advance(model.initial(len(items), features), items, vectors, inputs, real)
    candidates = torch.randn(len(items), 1, D)
    logits = torch.randn(len(items), 1)
    trained = model.click_logit(logits, belief, candidates).detach()  # autograd on: the matmul
    with torch.inference_mode():
        stepped = model.click_logit(logits, belief, candidates)
    torch.testing.assert_close(stepped, trained)
