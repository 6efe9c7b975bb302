"""Shared fixtures of the evaluation tests: a tabular MDP whose value is known exactly, and
`seqrec ope-report` run in this process."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import typer
from typer.testing import CliRunner, Result


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class TabularMDP:
    """Small MDP with per-state leave probabilities; Q^{pi_e} by backward induction over the horizon."""

    def __init__(self, n_states=6, n_actions=3, horizon=8, gamma=0.9, seed=1):
        rng = np.random.default_rng(seed)
        self.S, self.N, self.H, self.gamma = n_states, n_actions, horizon, gamma
        self.P = rng.dirichlet(np.ones(n_states), size=(n_states, n_actions))
        self.R = rng.random((n_states, n_actions))
        self.leave = rng.uniform(0.0, 0.2, n_states)
        self.pi_b = _softmax(0.5 * rng.normal(size=(n_states, n_actions)))
        self.pi_e = _softmax(1.0 * rng.normal(size=(n_states, n_actions)))
        v = np.zeros(n_states)
        self.Q = []
        for _ in range(horizon):
            q = self.R + gamma * (1 - self.leave)[:, None] * (self.P @ v)
            self.Q.append(q)
            v = (self.pi_e * q).sum(axis=1)
        self.Q = self.Q[::-1]  # Q[t] = Q_t^{pi_e}
        self.truth = float(v.mean())  # uniform start state

    def log(self, n, seed):
        rng = np.random.default_rng(seed)
        s = np.zeros((n, self.H), int)
        a = np.zeros((n, self.H), int)
        r = np.zeros((n, self.H))
        m = np.zeros((n, self.H), bool)
        cur = rng.integers(0, self.S, n)
        alive = np.ones(n, bool)
        for t in range(self.H):
            m[:, t], s[:, t] = alive, cur
            a[:, t] = (self.pi_b[cur].cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
            r[:, t] = np.where(alive, rng.binomial(1, self.R[cur, a[:, t]]), 0.0)
            alive = alive & (rng.random(n) > self.leave[cur])
            cur = (self.P[cur, a[:, t]].cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
        q_true = np.stack([self.Q[t][s[:, t]] for t in range(self.H)], axis=1)
        return {
            "state": np.eye(self.S)[s],
            "reward": r,
            "action": a,
            "pscore": self.pi_b[s, a],
            "action_dist": self.pi_e[s],
            "mask": m,
        }, q_true


@pytest.fixture(scope="session")
def tabular_mdp() -> TabularMDP:
    return TabularMDP()


@pytest.fixture(scope="session")
def ope_report_app() -> typer.Typer:
    """`seqrec ope-report` in a group of its own, as in the root `seqrec` app (a lone command would
    swallow its own name)."""
    from evaluation.cli import ope_report_command

    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """A group, as in the root `seqrec` app."""

    app.command("ope-report")(ope_report_command)
    return app


@pytest.fixture
def run_ope_report(ope_report_app: typer.Typer) -> Callable[..., Result]:
    """`run_ope_report(*args)` runs `seqrec ope-report ARGS` in this process and returns its result."""

    def run(*args: str) -> Result:
        return CliRunner().invoke(ope_report_app, ["ope-report", *args])

    return run
