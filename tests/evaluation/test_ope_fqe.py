"""Fitted Q evaluation on a tabular MDP with an exact value."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from evaluation.ope import Estimate, Estimator  # noqa: E402
from evaluation.ope.fqe import FittedQEvaluation, FQEConfig  # noqa: E402
from evaluation.ope.sequential import SequentialDoublyRobust  # noqa: E402


@pytest.fixture(scope="module")
def mdp_log(tabular_mdp):
    mdp = tabular_mdp
    data, q_true = mdp.log(5_000, seed=0)
    return mdp, data, q_true


def _config(mdp, **overrides):
    base = dict(gamma=mdp.gamma, n_iterations=16, n_steps_per_iteration=300, learning_rate=3e-3, seed=0)
    return FQEConfig(**{**base, **overrides})


def test_fqe_recovers_the_exact_value_and_q(mdp_log):
    mdp, data, q_true = mdp_log
    fqe = FittedQEvaluation(_config(mdp))
    assert isinstance(fqe, Estimator)
    value = fqe.estimate_policy_value(**data)
    assert abs(value - mdp.truth) / mdp.truth < 0.05, (value, mdp.truth)
    q_hat = fqe.predict_q(data["state"])
    assert q_hat.shape == q_true.shape
    assert np.abs(q_hat - q_true)[data["mask"]].mean() < 0.1
    # FQE's Q plugged into sequential DR.
    kw = {k: v for k, v in data.items() if k != "state"}
    dr = SequentialDoublyRobust(gamma=mdp.gamma).estimate_policy_value(
        **kw, state_action_value_prediction=q_hat
    )
    assert abs(dr - mdp.truth) / mdp.truth < 0.05, (dr, mdp.truth)
    est = fqe.estimate(n_bootstrap_samples=200)
    assert isinstance(est, Estimate) and est.name == "FQE" and est.lower <= value <= est.upper


def test_fqe_is_bit_for_bit_reproducible_for_a_seed(mdp_log):
    mdp, data, _ = mdp_log
    cfg = _config(mdp, n_iterations=3, n_steps_per_iteration=50)
    a = FittedQEvaluation(cfg).estimate_policy_value(**data)
    b = FittedQEvaluation(cfg).estimate_policy_value(**data)
    c = FittedQEvaluation(
        _config(mdp, n_iterations=3, n_steps_per_iteration=50, seed=1)
    ).estimate_policy_value(**data)
    assert a == b
    assert a != c


def test_fqe_accepts_an_encoder(mdp_log):
    mdp, data, _ = mdp_log
    encoder = torch.nn.Sequential(torch.nn.Linear(mdp.S + 1, 8), torch.nn.Tanh())  # +1: the time-to-go column
    fqe = FittedQEvaluation(
        _config(mdp, n_iterations=2, n_steps_per_iteration=20), encoder=encoder, encoder_out_features=8
    )
    fqe.fit(**data)
    assert fqe.q_network.encoder is not None
    assert np.isfinite(fqe.estimate_policy_value())
    with pytest.raises(ValueError, match="encoder_out_features"):
        FittedQEvaluation(encoder=encoder)


def test_fqe_config_and_input_errors(mdp_log):
    mdp, data, _ = mdp_log
    with pytest.raises(ValueError, match="gamma"):
        FQEConfig(gamma=-0.1)
    with pytest.raises(ValueError, match="n_iterations"):
        FQEConfig(n_iterations=0)
    with pytest.raises(ValueError, match="state must have shape"):
        FittedQEvaluation(_config(mdp)).fit(**{**data, "state": data["state"][:10]})
    with pytest.raises(RuntimeError, match="fit"):
        FittedQEvaluation().estimate_policy_value()


def test_fqe_with_action_features_recovers_the_value(mdp_log):
    mdp, data, _ = mdp_log
    fqe = FittedQEvaluation(_config(mdp), action_features=np.eye(mdp.N))
    value = fqe.estimate_policy_value(**data)
    assert fqe.q_network.action_projection is not None
    assert abs(value - mdp.truth) / mdp.truth < 0.05, (value, mdp.truth)
    with pytest.raises(ValueError, match="action_features has 2 rows"):
        FittedQEvaluation(_config(mdp, n_iterations=1), action_features=np.eye(2)).fit(**data)
