"""`SimulatorGreedyPolicy`: recommend what a learned simulator predicts the user clicks most.

The myopic optimum of a learned simulator under the click reward: at each step, for the observed history
`x_1..x_t` and user features `f`, score every item `i` with the simulator's calibrated click probability
and show the K best,

    slate = top_K_i  P_sim(click | x_1..x_t, f, i)        (items already in the observed history skipped)

It is the policy a simulator "trains" at no cost, and the one a policy optimised in the simulator for
immediate clicks tends to: whatever the simulator believes about an item (for instance, that a promoted
item is clicked often) it acts on, so rolling it out in the ground-truth world shows what the simulator's
beliefs are worth there. The simulator is used as a model only; the policy runs in any environment whose
observations share the simulator's catalogue and signals (the world it was fitted on, or the simulator).

Histories are scored as `LearnedSimulator.predict` scores a window: each member's interest filter reads
the observed window afresh (not the whole episode), and the one gap feature an observation holds, the days
since the previous session (`gap_days`), goes on the first exposure of the current session.
"""

from __future__ import annotations

import numpy as np

from recsim_env.errors import ArgumentError
from recsim_env.policies import ScoreRankingPolicy
from simulators.data import model_inputs

SCORE_CHUNK_ITEMS = 8192
"""Candidates scored per `LearnedSimulator.predict` call: a larger catalogue is ranked in chunks, so a call
builds `[N, chunk, 3 D]` head inputs, not `[N, n_items, 3 D]` (2.4 GB at N = 64, 100,000 items, D = 32).
Catalogues up to this size are scored in one call, as before."""


class SimulatorGreedyPolicy(ScoreRankingPolicy):
    """Show the K items of highest predicted click probability under `simulator` (see the module docstring).

    Args:
        simulator: a `LearnedSimulator` or `EnsembleSimulator`.
        slate_size: K.
        skip_history: never show an item of the observed history (as `recsim_env.policies.GreedyPolicy`).
        encode_user_features: the environment observes the data's raw user features (the world, whose
            users table the simulator was fitted on), which the simulator's `FeatureSpec` standardises;
            False: it observes the simulator's own encoded features (an environment of the simulator).
    """

    name = "simulator-greedy"

    def __init__(
        self,
        simulator,
        slate_size: int = 1,
        *,
        skip_history: bool = True,
        encode_user_features: bool = True,
    ) -> None:
        super().__init__(simulator.n_items, slate_size)
        self.simulator = simulator
        self.skip_history = bool(skip_history)
        self.encode_user_features = bool(encode_user_features)
        self._scales = np.asarray(simulator.schema.scales, dtype=np.float32)
        self._n_signals = len(simulator.schema.signals)

    def _inputs(self, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The simulator's `[N, L]` items, `[N, L, F + 1]` encoder inputs and `[N, P]` user features."""
        items = np.asarray(obs["item_ids"])
        feedback = np.asarray(obs["feedback"], dtype=np.float32)
        if feedback.shape[-1] < self._n_signals:
            raise ArgumentError(
                f"obs['feedback']: {feedback.shape[-1]} signals, the simulator reads {self._n_signals} "
                f"({', '.join(self.simulator.schema.signals)})"
            )
        feedback = feedback[..., : self._n_signals]
        length = self.simulator.history_len
        if items.shape[1] > length:  # the simulator reads its own window: the newest `length` exposures
            items, feedback = items[:, -length:], feedback[:, -length:]
        elif items.shape[1] < length:
            pad = length - items.shape[1]
            items = np.pad(items, ((0, 0), (pad, 0)), constant_values=self.n_items)
            feedback = np.pad(feedback, ((0, 0), (pad, 0), (0, 0)))
        n = len(items)
        gaps = np.zeros((n, length), dtype=np.float32)
        if "session_step" in obs and "gap_days" in obs:
            step = np.asarray(obs["session_step"]).reshape(n)
            at = length - step  # the current session's first exposure
            rows = np.flatnonzero((step >= 1) & (step <= length))
            gaps[rows, at[rows]] = np.asarray(obs["gap_days"], dtype=np.float32).reshape(n)[rows]
        real = items < self.n_items
        inputs = model_inputs(feedback, gaps, self._scales) * real[..., None]
        features = None
        if self.simulator.n_user_features:
            if "user_features" not in obs:
                raise ArgumentError(
                    "obs: the simulator reads user features; make the environment with user_features=True"
                )
            raw = np.asarray(obs["user_features"], dtype=np.float32)
            features = (
                self.simulator.schema.user_features.encode_numeric(raw) if self.encode_user_features else raw
            )
        return items, inputs.astype(np.float32), features

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """[N, n_items] the simulator's click probability of each item (-inf for skipped history items),
        scored `SCORE_CHUNK_ITEMS` candidates per `predict` call."""
        items, inputs, features = self._inputs(obs)
        n = len(items)
        scores = np.empty((n, self.n_items), dtype=np.float64)
        for lo in range(0, self.n_items, SCORE_CHUNK_ITEMS):
            hi = min(lo + SCORE_CHUNK_ITEMS, self.n_items)
            candidates = np.broadcast_to(np.arange(lo, hi), (n, hi - lo)).copy()
            predicted = self.simulator.predict(items, inputs, candidates, user_features=features)
            scores[:, lo:hi] = predicted["click"]
        if self.skip_history:
            rows, cols = np.nonzero(items < self.n_items)
            scores[rows, items[rows, cols]] = -np.inf
        return scores
