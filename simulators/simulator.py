"""`LearnedSimulator`: a trained response model (or ensemble) behind the `UserModel` contract.

Episodes start from real users' history prefixes (a prefix end drawn uniformly per episode); each
step scores the slate with the heads from the encoder's state at the last position of the `[N, L]`
histories and samples the response from the environment's uniforms only, so the vector env reproduces
single envs. Each step is incremental: the state carries each member's embedded history (an encoder with
`encode_last`, SASRec, embeds each exposure once and runs its last block for the last position only)
and, with an interest filter (`SimulatorConfig.interest_filter`), each member's filter state, which reads
each new exposure once: it has read the whole episode, where `predict` on a window starts the filter
afresh from the window's first exposure (the same state while the episode fits the window).

Behaviour parameters (per user row, drawn at `initial_state` when the simulator is a simulator set,
fixed otherwise; see `simulators.simset` and docs/simulators.md):

    click utility    x_k = logit P(click) - satiation_rate * relu(<S, e_k / |e_k|>) + noise_scale * logistic
    choice           P(position k) = theta^k exp(x_k) / (1 + sum_j theta^j exp(x_j))   theta = position_decay
    leave            logit P(leave) = calibrated leave logit + leave_shift
    satiation        S <- 0.85 S + e_i / |e_i| for the consumed item i; S <- S exp(-gap days) between sessions

With one item and default parameters the choice is `P(click)` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from recsim_env.user_model import Response, StartOfEpisode
from simulators.behaviour import PARAMETERS, SATIATION_STEP_DECAY, draw_parameters
from simulators.config import SimulatorConfig
from simulators.data import DataSchema, ExposureLog, model_inputs
from simulators.response_model import ResponseModel
from simulators.start_pool import filter_checkpoints, pool_exposures, pool_rows

DISAGREEMENT = "disagreement"
"""Name of the extra signal an ensemble reports when asked to (std of the members' click probability)."""


@dataclass
class SimulatorState:
    """Hidden state of N simulated users (mutated in place by `respond` and `end_session`).

    `beliefs` and `embedded` carry, per row, the state of the members that the row's responses read (C of
    them): every member of an ensemble (C = M, column k for member k), or in a simulator set the row's own
    member `parameters["member"]` alone (C = 1).
    """

    user_ids: np.ndarray  # [N] int64 index into the start pool
    items: np.ndarray  # [N, L] int64 history, left-padded with n_items
    inputs: np.ndarray  # [N, L, F + 1] float32 encoder inputs of the history
    pending_gap: np.ndarray  # [N] days since the last session, for the next exposure
    satiation: np.ndarray  # [N, D]
    gap_mean: np.ndarray  # [N] log-days mean of the return gap, from the last step
    gap_sigma: np.ndarray  # [N]
    user_features: np.ndarray  # [N, P] float32 encoded features of the logged user each row started from
    beliefs: np.ndarray  # [N, C, W] float32 interest-filter states (W = 0 without a filter)
    embedded: np.ndarray  # [N, C, L, D] float32 `ResponseModel.embed_history` of `items` ([N, C, 0, 0]: an
    # encoder without `encode_last`, which reads `items` each step)
    parameters: dict[str, np.ndarray] = field(default_factory=dict)
    """Behaviour parameters per row (`PARAMETERS`)."""

    _ARRAYS = (
        "user_ids",
        "items",
        "inputs",
        "pending_gap",
        "satiation",
        "gap_mean",
        "gap_sigma",
        "user_features",
        "beliefs",
        "embedded",
    )

    def set_rows(self, rows: np.ndarray, other: SimulatorState) -> None:
        """Overwrite users `rows` with the users of `other` (same order)."""
        for name in self._ARRAYS:
            getattr(self, name)[rows] = getattr(other, name)
        for name, values in self.parameters.items():
            values[rows] = other.parameters[name]


class LearnedSimulator:
    """A learned user model: K trained `ResponseModel`s, the data's schema and its start histories.

    Implements `recsim_env.user_model.UserModel`.

    Args:
        config: how the members were trained.
        schema: signals, scales and catalogue of the data.
        members: the K trained response models.
        start_pool: exposure sequences whose prefixes start episodes.
        item_tokens: raw item id of each item index.
        parameter_ranges: None for a single simulator; for a simulator set, `{name: (low, high)}` of
            the behaviour parameters drawn per episode (`member` is drawn uniformly among the K).
        report_disagreement: add the `disagreement` signal (needs K >= 2).
    """

    _FIXED_UNIFORMS = 4  # choice, leave, return gap, click noise

    def __init__(
        self,
        config: SimulatorConfig,
        schema: DataSchema,
        members: list[ResponseModel],
        start_pool: ExposureLog,
        item_tokens: list,
        *,
        parameter_ranges: dict[str, tuple[float, float]] | None = None,
        report_disagreement: bool = False,
    ) -> None:
        if report_disagreement and len(members) < 2:
            raise ValueError(
                "argument 'uncertainty_penalty' needs an ensemble (SimulatorConfig.ensemble_size >= 2)"
            )
        self.config = config
        self.schema = schema
        self.members = members
        for member in members:
            member.eval()
        self.start_pool = start_pool
        self.item_tokens = item_tokens
        self.parameter_ranges = parameter_ranges
        self.report_disagreement = report_disagreement
        self.signals = schema.signals + ((DISAGREEMENT,) if report_disagreement else ())
        self.binary_signals = frozenset(schema.binary)
        self.negative_signals = frozenset(schema.negative) | (
            frozenset({DISAGREEMENT}) if report_disagreement else frozenset()
        )
        self.n_items = schema.n_items
        self.n_user_features = schema.user_features.width
        self._users = np.flatnonzero(start_pool.lengths() >= 2)
        if len(self._users) == 0:
            raise ValueError("the simulator's start pool has no user with 2 or more exposures")
        self.n_users = len(self._users)
        self._continuous = [schema.signals.index(s) for s in schema.continuous]
        self._other_binary = [schema.signals.index(s) for s in schema.other_binary]
        self.n_start_uniforms = 1 + (len(PARAMETERS) if parameter_ranges is not None else 0)
        self.n_step_uniforms = self._FIXED_UNIFORMS + len(self._continuous) + len(self._other_binary)
        self._scales = np.asarray(schema.scales, dtype=np.float32)
        self._low = np.asarray(schema.low, dtype=np.float32)
        self._high = np.asarray(schema.high, dtype=np.float32)
        self._shared_cache: dict = {}  # what views of the same members and start pool share (filter checkpoints)
        self._caches_tokens = getattr(members[0].encoder, "encode_last", None) is not None
        with torch.no_grad():
            table = members[0].item_vectors(torch.arange(self.n_items))
            self._unit_items = (table / table.norm(dim=1, keepdim=True).clamp_min(1e-8)).numpy().copy()

    def _filter_checkpoints(self) -> tuple[int, np.ndarray, np.ndarray]:
        """`simulators.start_pool.filter_checkpoints` of the start pool, computed at the first episode start
        of this simulator or of any view `with_options` made of it (they share them)."""
        if "checkpoints" not in self._shared_cache:
            self._shared_cache["checkpoints"] = filter_checkpoints(
                self.start_pool, self.members, self._scales, self.n_items
            )
        return self._shared_cache["checkpoints"]

    def _carried(self, parameters: dict[str, np.ndarray]) -> list[tuple[int, np.ndarray | slice, int]]:
        """`(member, rows, column)` of the state each member carries (`SimulatorState`): every member's in
        column k for all rows, or in a simulator set of several members each row's own member's in
        column 0."""
        members = self._own_members(parameters)
        if members is None:
            return [(k, slice(None), k) for k in range(len(self.members))]
        return [(int(k), np.flatnonzero(members == k), 0) for k in np.unique(members)]

    def _item_table(self, member: ResponseModel, lookups: int) -> torch.Tensor | None:
        """Every item's vector of `member` (`ResponseModel.item_vectors`) when a call looks up more vectors
        than the catalogue holds, else None (the vectors are then computed for the items looked up)."""
        return member.item_vectors(torch.arange(self.n_items + 1)) if lookups > self.n_items else None

    @property
    def history_len(self) -> int:
        return self.config.history_len

    # ------------------------------------------------------------------ start
    def initial_state(self, user_ids: np.ndarray, uniforms: np.ndarray) -> StartOfEpisode:
        """Start from a prefix of each user's logged exposures (its end drawn with `uniforms[:, 0]`), with
        that user's features."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        n, length = len(user_ids), self.history_len
        pool = self.start_pool
        users = self._users[user_ids]
        lo, hi = pool.offsets[users], pool.offsets[users + 1]
        # The prefix holds at least one exposure and leaves at least one for the episode to differ from.
        end = lo + 1 + np.floor(uniforms[:, 0] * (hi - lo - 1)).astype(np.int64)
        index = end[:, None] - length + np.arange(length)[None, :]  # [N, L]
        items, feedback, inputs = pool_rows(pool, index, index >= lo[:, None], self._scales, self.n_items)
        parameters = draw_parameters(uniforms[:, 1:], n, self.parameter_ranges, len(self.members))
        carried = self._carried(parameters)
        state = SimulatorState(
            user_ids=user_ids.copy(),
            items=items,
            inputs=inputs,
            pending_gap=np.zeros(n),
            satiation=np.zeros((n, self._unit_items.shape[1]), dtype=np.float32),
            gap_mean=np.zeros(n),
            gap_sigma=np.ones(n),
            user_features=pool.user_features[users],
            beliefs=self._start_beliefs(users, end, carried, parameters),
            embedded=self._embed(items, inputs, carried),
            parameters=parameters,
        )
        history_feedback = feedback
        if self.report_disagreement:
            history_feedback = np.concatenate([feedback, np.zeros((n, length, 1), np.float32)], axis=-1)
        return StartOfEpisode(
            state, items.copy(), history_feedback.astype(np.float32), state.user_features.copy()
        )

    @torch.inference_mode()
    def _embed(self, items: np.ndarray, inputs: np.ndarray, carried: list) -> np.ndarray:
        """`[N, C, L, D]` each carried member's `embed_history` of `items` [N, L] (`[N, C, 0, 0]` for an
        encoder without `encode_last`)."""
        columns = max(column for _, _, column in carried) + 1
        if not self._caches_tokens:
            return np.zeros((len(items), columns, 0, 0), dtype=np.float32)
        out = np.zeros((len(items), columns) + items.shape[1:] + (self.config.d_model,), dtype=np.float32)
        for k, rows, column in carried:
            member = self.members[k]
            out[rows, column] = member.embed_history(
                torch.from_numpy(items[rows]), torch.from_numpy(inputs[rows])
            ).numpy()
        return out

    @torch.inference_mode()
    def _start_beliefs(
        self, users: np.ndarray, end: np.ndarray, carried: list, parameters: dict[str, np.ndarray]
    ) -> np.ndarray:
        """`[N, C, W]` the carried filter states after start-pool rows `offsets[user] .. end - 1` (the user's
        whole logged prefix): the nearest checkpoint, advanced over the rest."""
        read = end - self.start_pool.offsets[users]
        every, offsets, checkpoints = self._filter_checkpoints()
        beliefs = checkpoints[offsets[users] + read // every]  # [N, M, W]
        members = self._own_members(parameters)
        beliefs = beliefs.copy() if members is None else beliefs[np.arange(len(users)), members][:, None]
        if not beliefs.shape[2]:
            return beliefs
        done = read - read % every
        left = read - done  # exposures past the checkpoint, fewer than `every`
        if left.max(initial=0) > 0:  # the filter's loop runs as often as the longest rest needs, no more
            width = int(left.max())
            items, inputs = pool_exposures(
                self.start_pool,
                self.start_pool.offsets[users] + done,
                left,
                width,
                self._scales,
                self.n_items,
            )
            self._advance_beliefs(beliefs, carried, items, inputs)
        return beliefs

    @torch.inference_mode()
    def _advance_beliefs(
        self, beliefs: np.ndarray, carried: list, items: np.ndarray, inputs: np.ndarray
    ) -> None:
        """Advance the carried filter states `beliefs` [N, C, W] in place over exposures `items` [N, T] with
        `inputs` [N, T, F + 1]."""
        items, inputs = torch.from_numpy(items), torch.from_numpy(inputs)
        for k, rows, column in carried:
            member = self.members[k]
            beliefs[rows, column] = member.advance_filter(
                torch.from_numpy(beliefs[rows, column]),
                items[rows],
                inputs[rows],
                self._item_table(member, items[rows].numel()),
            ).numpy()

    # ------------------------------------------------------------------ step
    @torch.inference_mode()
    def _member_outputs(
        self,
        member: ResponseModel,
        items: np.ndarray,
        inputs: np.ndarray,
        slates: np.ndarray,
        user_features: np.ndarray | None,
        belief: np.ndarray | None = None,
        embedded: np.ndarray | None = None,
    ):
        features = None if user_features is None else torch.from_numpy(np.asarray(user_features, np.float32))
        belief = None if belief is None else torch.from_numpy(belief)
        embedded = None if embedded is None or not embedded.size else torch.from_numpy(embedded)
        table = self._item_table(member, items.size)
        state = member.last_state(
            torch.from_numpy(items),
            torch.from_numpy(inputs),
            features,
            belief,
            embedded=embedded,
            item_table=table,
        )
        return member.calibrated(member.heads(state, torch.from_numpy(slates), table))

    def _combine(self, outs: list) -> dict:
        """`predict`'s arrays from the members' calibrated head outputs (probabilities averaged)."""
        click = torch.stack([torch.sigmoid(o.click) for o in outs])  # [M, N, K]
        result = {
            "click": click.mean(0).numpy(),
            "click_std": click.std(0, correction=0).numpy(),
            "binary": torch.stack([torch.sigmoid(o.binary) for o in outs]).mean(0).numpy(),
            "mean": torch.stack([o.mean for o in outs]).mean(0).numpy(),
            "sigma": torch.stack([o.log_sigma.exp() for o in outs]).mean(0).numpy(),
            "leave": torch.stack([torch.sigmoid(o.leave) for o in outs]).mean(0).numpy(),
            "gap_mean": torch.stack([o.gap_mean for o in outs]).mean(0).numpy(),
            "gap_sigma": torch.stack([o.gap_log_sigma.exp() for o in outs]).mean(0).numpy(),
        }
        scales = self._scales[self._continuous]
        result["mean"] = result["mean"] * scales
        result["sigma"] = result["sigma"] * scales
        return result

    def predict(
        self,
        items: np.ndarray,
        inputs: np.ndarray,
        slates: np.ndarray,
        member: int = -1,
        user_features: np.ndarray | None = None,
        beliefs: np.ndarray | None = None,
    ) -> dict:
        """Probabilities and distributions for showing `slates` [N, K] after histories `items` [N, L] to
        users with encoded features `user_features` [N, P] (needed when `n_user_features` > 0).

        Returns numpy arrays: `click` [N, K] P(click) of each item shown alone, `binary` [N, K, B, 2],
        `mean` / `sigma` [N, K, R] (raw units, given a click), `leave` [N, K, 2], `gap_mean` /
        `gap_sigma` [N, K] (log days), and `click_std` [N, K], the members' disagreement. `member`
        -1 averages the members (probabilities averaged); k uses member k alone. `beliefs` [N, M, W]: the
        members' interest-filter states a running simulator carries (`SimulatorState.beliefs` of an
        ensemble, which has read the whole episode; with `member` k, [N, 1, W] member k's alone); without
        them each member's filter reads the window `items` afresh.
        """
        if self.n_user_features and user_features is None:
            raise ValueError(
                f"this simulator reads {self.n_user_features} user features: pass `user_features` "
                f"({', '.join(self.schema.user_features.names[:5])}{', ...' if self.n_user_features > 5 else ''})"
            )
        indices = range(len(self.members)) if member < 0 else [member]
        if beliefs is not None and member >= 0 and beliefs.shape[1] == 1:
            beliefs = beliefs[:, [0] * len(self.members)]  # column k: member k's, as for every member
        outs = [
            self._member_outputs(
                self.members[k],
                items,
                inputs,
                slates,
                user_features,
                None if beliefs is None else beliefs[:, k],
            )
            for k in indices
        ]
        return self._combine(outs)

    def _own_members(self, parameters: dict[str, np.ndarray]) -> np.ndarray | None:
        """Each row's member [N] where rows read their own member alone (a simulator set of several
        members); None where every row reads the ensemble mean (or the only member)."""
        if self.parameter_ranges is None or len(self.members) == 1:
            return None
        return parameters["member"]

    def _predict_rows(self, state: SimulatorState, slates: np.ndarray) -> dict:
        """`predict` on the state the rows carry: each row's own member (simulator sets) or the ensemble
        mean."""
        carried = self._carried(state.parameters)
        belief = (lambda rows, column: state.beliefs[rows, column]) if state.beliefs.shape[2] else None

        def outputs(k, rows, column):
            return self._member_outputs(
                self.members[k],
                state.items[rows],
                state.inputs[rows],
                slates[rows],
                state.user_features[rows],
                None if belief is None else belief(rows, column),
                state.embedded[rows, column],
            )

        if self._own_members(state.parameters) is None:
            return self._combine([outputs(*c) for c in carried])
        result: dict[str, np.ndarray] = {}
        for k, rows, column in carried:
            for key, value in self._combine([outputs(k, rows, column)]).items():
                if key not in result:
                    result[key] = np.zeros((len(slates),) + value.shape[1:], dtype=value.dtype)
                result[key][rows] = value
        return result

    def respond(self, state: SimulatorState, slates: np.ndarray, uniforms: np.ndarray) -> Response:
        """Sample the users' responses to `slates` [N, K] from `uniforms` [N, n_step_uniforms]."""
        n, k = slates.shape
        p = self._predict_rows(state, slates)
        params = state.parameters
        with np.errstate(divide="ignore"):
            utility = np.log(p["click"]) - np.log1p(-p["click"])  # [N, K]
        similarity = np.einsum("nd,nkd->nk", state.satiation, self._unit_items[slates])
        utility = utility - params["satiation_rate"][:, None] * np.maximum(similarity, 0.0)
        noise = np.log(uniforms[:, 3]) - np.log1p(-uniforms[:, 3])  # logistic
        utility = utility + (params["noise_scale"] * noise)[:, None]
        position = params["position_decay"][:, None] ** np.arange(k)[None, :]
        weights = position * np.exp(np.minimum(utility, 50.0))
        choice = weights / (1.0 + weights.sum(axis=1, keepdims=True))  # [N, K]
        cdf = np.cumsum(choice, axis=1)
        chosen = (cdf <= uniforms[:, :1]).sum(axis=1)
        chosen = np.where(chosen >= k, -1, chosen)
        clicked = chosen >= 0
        rows = np.arange(n)
        at = np.maximum(chosen, 0)  # the consumed position, or the top item when nothing is consumed

        n_signals = len(self.schema.signals)
        feedback = np.zeros((n, k, len(self.signals)), dtype=np.float32)
        feedback[rows[clicked], chosen[clicked], 0] = 1.0
        u = self._FIXED_UNIFORMS
        if self._continuous:
            from scipy.special import ndtri

            z = ndtri(np.clip(uniforms[:, u : u + len(self._continuous)], 1e-9, 1 - 1e-9))
            value = p["mean"][rows, at] + p["sigma"][rows, at] * z
            value = np.clip(value, self._low[self._continuous], self._high[self._continuous])
            feedback[rows[clicked], chosen[clicked], np.array(self._continuous)[:, None]] = value[clicked].T
            u += len(self._continuous)
        if self._other_binary:
            branch = clicked.astype(np.int64)
            prob = p["binary"][rows, at, :, branch]  # [N, B]
            draws = (uniforms[:, u : u + len(self._other_binary)] < prob).astype(np.float32)
            feedback[rows[:, None], at[:, None], np.array(self._other_binary)[None, :]] = draws
        if self.report_disagreement:
            feedback[:, :, n_signals] = p["click_std"]

        leave_p = p["leave"][rows, at, clicked.astype(np.int64)]
        leave_logit = np.log(leave_p) - np.log1p(-leave_p) + params["leave_shift"]
        leave = uniforms[:, 1] < 1.0 / (1.0 + np.exp(-leave_logit))

        # The new exposures enter the history; the first one carries the gap since the last session.
        step_inputs = model_inputs(feedback[..., :n_signals], np.zeros((n, k), np.float32), self._scales)
        step_inputs[:, 0, -1] = np.log1p(state.pending_gap)
        carried = self._carried(params)
        if state.beliefs.shape[2]:
            self._advance_beliefs(state.beliefs, carried, slates, step_inputs)
        if self._caches_tokens:
            state.embedded = np.concatenate(
                [state.embedded[:, :, k:], self._embed(slates, step_inputs, carried)], axis=2
            )
        state.items = np.concatenate([state.items[:, k:], slates], axis=1)
        state.inputs = np.concatenate([state.inputs[:, k:], step_inputs], axis=1)
        state.pending_gap = np.zeros(n)
        state.satiation *= SATIATION_STEP_DECAY
        state.satiation[clicked] += self._unit_items[slates[rows[clicked], chosen[clicked]]]
        state.gap_mean = p["gap_mean"][rows, at]
        state.gap_sigma = p["gap_sigma"][rows, at]
        return Response(feedback, chosen, leave, {"choice_probability": choice, "click_std": p["click_std"]})

    def end_session(self, state: SimulatorState, mask: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """Draw log-normal return gaps (days) for users in `mask` with `uniforms[:, 2]`."""
        from scipy.special import ndtri

        z = ndtri(np.clip(uniforms[:, 2], 1e-9, 1 - 1e-9))
        gap = np.where(mask, np.exp(np.minimum(state.gap_mean + state.gap_sigma * z, 8.0)), 0.0)
        state.pending_gap = np.where(mask, gap, state.pending_gap)
        state.satiation *= np.exp(-gap)[:, None].astype(np.float32)
        return gap

    # ------------------------------------------------------------------ views
    def with_options(
        self,
        *,
        parameter_ranges: dict[str, tuple[float, float]] | None = None,
        report_disagreement: bool = False,
    ) -> LearnedSimulator:
        """The same trained members as a simulator set and/or with the disagreement signal."""
        view = LearnedSimulator(
            self.config,
            self.schema,
            self.members,
            self.start_pool,
            self.item_tokens,
            parameter_ranges=parameter_ranges,
            report_disagreement=report_disagreement,
        )
        view._shared_cache = self._shared_cache  # same members, same start pool
        return view

    def __repr__(self) -> str:
        return (
            f"LearnedSimulator(encoder={self.config.encoder!r}, members={len(self.members)}, "
            f"items={self.n_items}, users={self.n_users}, signals={self.signals})"
        )
