"""`SimulatorSet`: a family of learned simulators as one user model, each episode's rows reading one
member (drawn, with the behaviour parameters, at `initial_state`; `simulators.simset` describes the
family and plays it as `SeqRecSimSet-v0`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from recsim_env.errors import ArgumentError
from recsim_env.user_model import Response, StartOfEpisode
from simulators.behaviour import PARAMETERS
from simulators.ensemble import EnsembleSimulator
from simulators.simulator import LearnedSimulator, Readers, start_beliefs
from simulators.state import MemberState, SimulatorState
from simulators.stepping import step_context


class SimulatorSet:
    """A family of learned simulators: each episode's rows read one member, drawn with the behaviour
    parameters at `initial_state` (module docstring).

    Implements `recsim_env.user_model.UserModel`; its state is a `SimulatorState` whose `carried` holds
    each row's own member's (`parameters["member"]`).

    Args:
        simulators: the members (an ensemble's, `EnsembleSimulator.simulators`).
        ranges: `{name: (low, high)}` of the behaviour parameters drawn per episode
            (`SimSetConfig.ranges()`; a parameter left out keeps its default); `member` is drawn
            uniformly among the members.
        report_disagreement: add the `disagreement` signal, the std of the click probability among the
            members a row reads (its own alone: 0); needs 2 or more members.
    """

    def __init__(
        self,
        simulators: Sequence[LearnedSimulator],
        ranges: Mapping[str, tuple[float, float]],
        *,
        report_disagreement: bool = False,
    ) -> None:
        unknown = sorted(set(ranges) - set(PARAMETERS[1:]))
        if unknown:
            raise ArgumentError(f"ranges: unknown parameter(s) {unknown}; known: {list(PARAMETERS[1:])}")
        self.ensemble = EnsembleSimulator(simulators, report_disagreement=report_disagreement)
        self.simulators = self.ensemble.simulators
        self.parameter_ranges = {name: (float(low), float(high)) for name, (low, high) in ranges.items()}
        self.report_disagreement = report_disagreement
        ensemble = self.ensemble
        self.config, self.schema, self.start_pool, self.item_tokens = (
            ensemble.config,
            ensemble.schema,
            ensemble.start_pool,
            ensemble.item_tokens,
        )
        self.signals, self.binary_signals = ensemble.signals, ensemble.binary_signals
        self.negative_signals = ensemble.negative_signals
        self.n_items, self.n_users, self.n_user_features = (
            ensemble.n_items,
            ensemble.n_users,
            ensemble.n_user_features,
        )
        self.n_start_uniforms = 1 + len(PARAMETERS)  # the prefix end, then the parameters
        self.n_step_uniforms = ensemble.n_step_uniforms

    @classmethod
    def of(cls, simulator: Any, ranges: Mapping[str, tuple[float, float]]) -> SimulatorSet:
        """The set of the members of `simulator` (a `LearnedSimulator`, an `EnsembleSimulator` or a
        `SimulatorSet`) with `ranges`, without the disagreement signal (`with_disagreement` adds it)."""
        return cls(getattr(simulator, "simulators", None) or (simulator,), ranges)

    @property
    def members(self) -> list:
        """The members' response models (member k's in entry k)."""
        return self.ensemble.members

    @property
    def history_len(self) -> int:
        return self.config.history_len

    def with_disagreement(self) -> SimulatorSet:
        """The same set, reporting the `disagreement` signal."""
        return SimulatorSet(self.simulators, self.parameter_ranges, report_disagreement=True)

    def _readers(self, state_parameters: dict[str, np.ndarray]) -> Readers:
        """`(member simulator, rows)` of each member some row reads (one member: all rows)."""
        if len(self.simulators) == 1:
            return [(self.simulators[0], slice(None))]
        members = state_parameters["member"]
        return [(self.simulators[int(k)], np.flatnonzero(members == k)) for k in np.unique(members)]

    @staticmethod
    def _by_rows(readers: Readers, n: int, compute: Callable) -> tuple[np.ndarray, ...]:
        """The `[n, ...]` arrays of `compute(simulator, rows)` (a tuple of arrays) of each reader, in its
        rows."""
        if len(readers) == 1 and isinstance(readers[0][1], slice):
            return compute(*readers[0])
        parts = [(rows, compute(simulator, rows)) for simulator, rows in readers]
        outs = tuple(np.zeros((n,) + a.shape[1:], dtype=a.dtype) for a in parts[0][1])
        for rows, part in parts:
            for out, a in zip(outs, part, strict=True):
                out[rows] = a
        return outs

    def initial_state(self, user_ids: np.ndarray, uniforms: np.ndarray) -> StartOfEpisode:
        """Start as `LearnedSimulator.initial_state`, with each row's member and behaviour parameters
        drawn from `uniforms[:, 1:]` (`simulators.behaviour.draw_parameters`)."""
        first = self.simulators[0]
        fields, users, end, feedback = first.start_users(
            user_ids, uniforms, self.parameter_ranges, len(self.simulators)
        )
        readers = self._readers(fields["parameters"])
        items, inputs = fields["items"], fields["inputs"]
        with step_context():
            carried = MemberState(
                beliefs=start_beliefs(self.start_pool, users, end, readers),
                events=self._by_rows(readers, len(items), lambda s, rows: s.embed(items[rows], inputs[rows])),
            )
        state = SimulatorState(**fields, carried=carried)
        return first.start_of_episode(state, feedback, self.report_disagreement)

    def predict(self, *args, **kwargs) -> dict:
        """`EnsembleSimulator.predict` of the members (the set's parameters are a running state's)."""
        return self.ensemble.predict(*args, **kwargs)

    def predict_step(self, state: SimulatorState, slates: np.ndarray) -> dict:
        """`predict`'s arrays for showing `slates` [N, K] to the users of a running `state`, each row from
        its own member alone (`click_std` 0)."""
        first = self.simulators[0]
        readers = self._readers(state.parameters)
        if len(readers) == 1 and isinstance(readers[0][1], slice):
            return first.combine([first.outputs_of(state, state.carried, slates)])
        p: dict[str, np.ndarray] = {}
        for simulator, rows in readers:
            for key, value in first.combine(
                [simulator.outputs_of(state, state.carried, slates, rows)]
            ).items():
                if key not in p:
                    p[key] = np.zeros((len(slates),) + value.shape[1:], dtype=value.dtype)
                p[key][rows] = value
        return p

    def respond(self, state: SimulatorState, slates: np.ndarray, uniforms: np.ndarray) -> Response:
        """Sample the users' responses to `slates` [N, K], each row from its own member's probabilities."""
        first = self.simulators[0]
        readers = self._readers(state.parameters)
        carried = state.carried
        with step_context():
            p = self.predict_step(state, slates)
            response, step_inputs = first.sample(
                state, p, slates, uniforms, disagreement=self.report_disagreement
            )
            if carried.beliefs.shape[1]:
                for simulator, rows in readers:
                    carried.beliefs[rows] = simulator.advance_filter(
                        carried.beliefs[rows], slates[rows], step_inputs[rows]
                    )
            if first.carries_embedding:
                carried.extend(
                    self._by_rows(
                        readers, len(slates), lambda s, rows: s.embed(slates[rows], step_inputs[rows])
                    )
                )
        return response

    def end_session(self, state: SimulatorState, mask: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """`LearnedSimulator.end_session`: the users' side alone changes."""
        return self.simulators[0].end_session(state, mask, uniforms)

    def __repr__(self) -> str:
        return (
            f"SimulatorSet(encoder={self.config.encoder!r}, members={len(self.simulators)}, "
            f"parameters={sorted(self.parameter_ranges)}, items={self.n_items}, signals={self.signals})"
        )
