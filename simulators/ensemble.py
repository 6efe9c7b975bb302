"""`EnsembleSimulator`: K single learned simulators that respond as one user model.

Every member reads every row; a step's probabilities are the members' probabilities averaged
(`simulators.simulator.combine`):

    P(click) = 1/K sum_k sigmoid(click logit_k)        likewise the other binary heads and P(leave)
    mean, sigma, gap mean, gap sigma = averages of the members' (sigma = exp(log sigma_k))
    disagreement = sqrt(1/K sum_k (sigmoid(click logit_k) - P(click))^2)

and the response is sampled from them as a single simulator samples from its own. With
`report_disagreement` the disagreement of each shown item is an extra, negative signal
(`DISAGREEMENT`), which `SeqRecEnv(uncertainty_penalty=...)` subtracts from the reward (MOPO-style
pessimism: Yu et al., "MOPO: Model-based Offline Policy Optimization", NeurIPS 2020).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsim_env.user_model import Response, StartOfEpisode
from simulators.config import SimulatorConfig
from simulators.data import DataSchema, ExposureLog
from simulators.response_model import ResponseModel
from simulators.simulator import DISAGREEMENT, LearnedSimulator, start_beliefs
from simulators.start_pool import FilterCheckpoints
from simulators.state import MemberState, UserState
from simulators.stepping import step_context


@dataclass
class EnsembleState(UserState):
    """Hidden state of N users of an ensemble: the users' side and what each member carries."""

    carried: list[MemberState]
    """Member k's in entry k."""

    def set_rows(self, rows: np.ndarray, other: EnsembleState) -> None:
        super().set_rows(rows, other)
        for mine, theirs in zip(self.carried, other.carried, strict=True):
            mine.set_rows(rows, theirs)

    def beliefs(self) -> np.ndarray:
        """`[N, K, W]` the members' filter states (the `beliefs` of `EnsembleSimulator.predict`)."""
        return np.stack([c.beliefs for c in self.carried], axis=1)


def members_of(
    config: SimulatorConfig,
    schema: DataSchema,
    models: Sequence[ResponseModel],
    start_pool: ExposureLog,
    item_tokens: list,
) -> list[LearnedSimulator]:
    """One `LearnedSimulator` per trained model, sharing the start pool's filter checkpoints."""
    scales = np.asarray(schema.scales, dtype=np.float32)
    checkpoints = FilterCheckpoints(start_pool, list(models), scales, schema.n_items)
    return [
        LearnedSimulator(
            config, schema, model, start_pool, item_tokens, checkpoints=checkpoints, checkpoint_column=k
        )
        for k, model in enumerate(models)
    ]


def simulator_of(
    config: SimulatorConfig,
    schema: DataSchema,
    models: Sequence[ResponseModel],
    start_pool: ExposureLog,
    item_tokens: list,
) -> LearnedSimulator | EnsembleSimulator:
    """The simulator of `config.ensemble_size` trained models: the model alone, or their ensemble."""
    if len(models) != config.ensemble_size:
        raise ValueError(f"{len(models)} models for config.ensemble_size = {config.ensemble_size}")
    simulators = members_of(config, schema, models, start_pool, item_tokens)
    return simulators[0] if len(simulators) == 1 else EnsembleSimulator(simulators)


class EnsembleSimulator:
    """K learned simulators whose averaged probabilities answer (module docstring).

    Implements `recsim_env.user_model.UserModel`; its state is an `EnsembleState`.

    Args:
        simulators: the members, of one config, schema and start pool (`members_of`).
        report_disagreement: add the `disagreement` signal (needs K >= 2).
    """

    def __init__(self, simulators: Sequence[LearnedSimulator], *, report_disagreement: bool = False) -> None:
        if not simulators:
            raise ValueError("argument 'simulators' must hold at least one LearnedSimulator")
        if report_disagreement and len(simulators) < 2:
            raise ValueError(
                "argument 'uncertainty_penalty' needs an ensemble (SimulatorConfig.ensemble_size >= 2)"
            )
        first = simulators[0]
        if any(s.start_pool is not first.start_pool or s.schema is not first.schema for s in simulators):
            raise ValueError("argument 'simulators': the members must share one schema and start pool")
        self.simulators = tuple(simulators)
        self.report_disagreement = report_disagreement
        self.config, self.schema, self.start_pool = first.config, first.schema, first.start_pool
        self.item_tokens = first.item_tokens
        self.signals = first.signals + ((DISAGREEMENT,) if report_disagreement else ())
        self.binary_signals = first.binary_signals
        self.negative_signals = first.negative_signals | (
            frozenset({DISAGREEMENT}) if report_disagreement else frozenset()
        )
        self.n_items, self.n_users, self.n_user_features = first.n_items, first.n_users, first.n_user_features
        self.n_start_uniforms, self.n_step_uniforms = first.n_start_uniforms, first.n_step_uniforms

    @property
    def members(self) -> list[ResponseModel]:
        """The members' response models (member k's in entry k)."""
        return [s.model for s in self.simulators]

    @property
    def history_len(self) -> int:
        return self.config.history_len

    def with_disagreement(self) -> EnsembleSimulator:
        """The same members, reporting the `disagreement` signal."""
        return EnsembleSimulator(self.simulators, report_disagreement=True)

    def initial_state(self, user_ids: np.ndarray, uniforms: np.ndarray) -> StartOfEpisode:
        """Start as `LearnedSimulator.initial_state`, every member reading every row."""
        first = self.simulators[0]
        fields, users, end, feedback = first.start_users(user_ids, uniforms)
        with step_context():
            carried = [
                MemberState(
                    beliefs=start_beliefs(self.start_pool, users, end, [(s, slice(None))]),
                    events=s.embed(fields["items"], fields["inputs"]),
                )
                for s in self.simulators
            ]
        state = EnsembleState(**fields, carried=carried)
        return first.start_of_episode(state, feedback, self.report_disagreement)

    def predict(
        self,
        items: np.ndarray,
        inputs: np.ndarray,
        slates: np.ndarray,
        member: int = -1,
        user_features: np.ndarray | None = None,
        beliefs: np.ndarray | None = None,
    ) -> dict:
        """`LearnedSimulator.predict` of the ensemble: `member` -1 averages the members (probabilities
        averaged; `click_std` their disagreement); k uses member k alone. `beliefs` [N, K, W]: the members'
        interest-filter states a running ensemble carries (`EnsembleState.beliefs()`, which have read the
        whole episode; with `member` k, [N, 1, W] member k's alone); without them each member's filter
        reads the window `items` afresh.
        """
        first = self.simulators[0]
        first.check_user_features(user_features)
        indices = range(len(self.simulators)) if member < 0 else [member]
        if beliefs is not None and member >= 0 and beliefs.shape[1] == 1:
            beliefs = beliefs[:, [0] * len(self.simulators)]  # column k: member k's, as for every member
        outs = [
            self.simulators[k].head_outputs(
                items, inputs, slates, user_features, None if beliefs is None else beliefs[:, k]
            )
            for k in indices
        ]
        return first.combine(outs)

    def predict_step(self, state: EnsembleState, slates: np.ndarray) -> dict:
        """`predict`'s arrays (members averaged) for showing `slates` [N, K] to the users of a running
        `state`, from what each member carries."""
        outs = [s.outputs_of(state, c, slates) for s, c in zip(self.simulators, state.carried, strict=True)]
        return self.simulators[0].combine(outs)

    def respond(self, state: EnsembleState, slates: np.ndarray, uniforms: np.ndarray) -> Response:
        """Sample the users' responses to `slates` [N, K] from the averaged probabilities."""
        first = self.simulators[0]
        with step_context():
            p = self.predict_step(state, slates)
            response, step_inputs = first.sample(
                state, p, slates, uniforms, disagreement=self.report_disagreement
            )
            for simulator, carried in zip(self.simulators, state.carried):
                simulator.advance(carried, slates, step_inputs)
        return response

    def end_session(self, state: EnsembleState, mask: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """`LearnedSimulator.end_session`: the users' side alone changes."""
        return self.simulators[0].end_session(state, mask, uniforms)

    def __repr__(self) -> str:
        first = self.simulators[0]
        return (
            f"EnsembleSimulator(encoder={self.config.encoder!r}, members={len(self.simulators)}, "
            f"items={first.n_items}, users={first.n_users}, signals={self.signals})"
        )
