"""`EnsembleSimulator`: the members' probabilities averaged, the disagreement signal, loading."""

from __future__ import annotations

import numpy as np
import pytest


def _member_state(state, k):
    """Member k's view of an ensemble state: the users' side and what member k carries."""
    from simulators.simulator import SimulatorState, UserState

    users = {name: getattr(state, name) for name in UserState.__dataclass_fields__}
    return SimulatorState(**users, carried=state.carried[k])


def _start(model, n, seed):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, model.n_users, n)
    return model.initial_state(users, rng.random((n, 1))).state, rng


def test_a_saved_ensemble_loads_as_an_ensemble_and_one_member_as_a_simulator(tiny_fit, tmp_path):
    import simulators
    from simulators import EnsembleSimulator, LearnedSimulator

    ensemble = tiny_fit.simulator
    assert type(ensemble) is EnsembleSimulator and len(ensemble.simulators) == 2
    assert all(type(s) is LearnedSimulator for s in ensemble.simulators)
    loaded = simulators.load(simulators.save(ensemble, tmp_path / "ens"))
    assert type(loaded) is EnsembleSimulator and len(loaded.simulators) == 2
    alone = simulators.load(simulators.save(ensemble.simulators[1], tmp_path / "one"))
    assert type(alone) is LearnedSimulator and alone.config.ensemble_size == 1
    state, rng = _start(ensemble, 12, 0)
    slates = rng.integers(0, ensemble.n_items, (12, 2))
    args = (state.items, state.inputs, slates)
    np.testing.assert_array_equal(
        alone.predict(*args, user_features=state.user_features)["click"],
        ensemble.predict(*args, 1, state.user_features)["click"],
    )


def test_the_ensemble_averages_its_members_probabilities(tiny_fit):
    ensemble = tiny_fit.simulator
    n = 16
    state, rng = _start(ensemble, n, 1)
    for _ in range(3):
        slates = rng.integers(0, ensemble.n_items, (n, 2))
        ensemble.respond(state, slates, rng.random((n, ensemble.n_step_uniforms)))
    slates = rng.integers(0, ensemble.n_items, (n, 3))
    mixed = ensemble.predict_step(state, slates)
    alone = [s.predict_step(_member_state(state, k), slates) for k, s in enumerate(ensemble.simulators)]
    for key in ("click", "binary", "mean", "sigma", "leave", "gap_mean", "gap_sigma"):
        expected = np.mean([a[key] for a in alone], axis=0)
        np.testing.assert_allclose(mixed[key], expected, rtol=1e-6, atol=1e-7)
    clicks = np.stack([a["click"] for a in alone])
    assert not np.allclose(clicks[0], clicks[1])  # the members differ, so the average is no member's
    np.testing.assert_allclose(mixed["click_std"], clicks.std(axis=0), rtol=1e-5, atol=1e-7)
    assert all((a["click_std"] == 0).all() for a in alone)


def test_an_ensemble_of_one_responds_as_its_member(tiny_fit):
    from simulators import EnsembleSimulator

    member = tiny_fit.simulator.simulators[0]
    ensemble = EnsembleSimulator([member])
    n = 10
    rng = np.random.default_rng(2)
    users, start = rng.integers(0, member.n_users, n), rng.random((n, 1))
    a, b = member.initial_state(users, start), ensemble.initial_state(users, start)
    np.testing.assert_array_equal(a.history_feedback, b.history_feedback)
    for _ in range(5):
        slates = rng.integers(0, member.n_items, (n, 2))
        uniforms = rng.random((n, member.n_step_uniforms))
        x, y = member.respond(a.state, slates, uniforms), ensemble.respond(b.state, slates, uniforms)
        np.testing.assert_array_equal(x.feedback, y.feedback)
        np.testing.assert_array_equal(x.leave, y.leave)
        np.testing.assert_array_equal(a.state.carried.beliefs, b.state.carried[0].beliefs)


def test_the_disagreement_signal_is_the_members_click_std(tiny_fit):
    from simulators import EnsembleSimulator
    from simulators.simulator import DISAGREEMENT

    ensemble = tiny_fit.simulator.with_disagreement()
    assert ensemble.signals[-1] == DISAGREEMENT and DISAGREEMENT in ensemble.negative_signals
    assert DISAGREEMENT not in tiny_fit.simulator.signals
    n = 8
    start = ensemble.initial_state(np.arange(n) % ensemble.n_users, np.full((n, 1), 0.5))
    assert start.history_feedback.shape[-1] == len(ensemble.signals)
    assert (start.history_feedback[..., -1] == 0).all()
    slates = np.tile(np.arange(2), (n, 1))
    expected = ensemble.predict_step(start.state, slates)["click_std"]
    response = ensemble.respond(start.state, slates, np.full((n, ensemble.n_step_uniforms), 0.5))
    np.testing.assert_array_equal(response.feedback[..., -1], expected)
    assert (expected > 0).all()
    with pytest.raises(ValueError, match="ensemble"):
        tiny_fit.simulator.simulators[0].with_disagreement()
    with pytest.raises(ValueError, match="ensemble"):
        EnsembleSimulator(tiny_fit.simulator.simulators[:1], report_disagreement=True)


def test_members_of_different_start_pools_are_refused(tiny_fit):
    from simulators import EnsembleSimulator, LearnedSimulator

    a = tiny_fit.simulator.simulators[0]
    other = LearnedSimulator(a.config, a.schema, a.model, a.start_pool._replace(), a.item_tokens)
    with pytest.raises(ValueError, match="share one schema and start pool"):
        EnsembleSimulator([a, other])
    with pytest.raises(TypeError, match="ResponseModel"):
        LearnedSimulator(a.config, a.schema, [a.model], a.start_pool, a.item_tokens)
