"""`LearnedSimulator`: a trained response model (or ensemble) behind the `UserModel` contract.

Episodes start from real users' history prefixes (a prefix end drawn uniformly per episode); each
step runs the encoder once on the `[N, L]` histories, scores the slate with the heads and samples
the response from the environment's uniforms only, so the vector env reproduces single envs. With an
interest filter (`SimulatorConfig.interest_filter`) each member's filter state is carried from step to
step and reads each new exposure once: it has read the whole episode, where `predict` on a window starts
the filter afresh from the window's first exposure (the same state while the episode fits the window).

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
from simulators.config import SimulatorConfig
from simulators.data import DataSchema, ExposureLog, model_inputs
from simulators.response_model import ResponseModel

BELIEF_CHECKPOINT_EVERY = (1, 2, 4, 8, 16)
"""A running simulator's interest filters start an episode from their state saved every few exposures of
the start pool's sequences, advanced over the rest of the prefix: every 1, 2, 4, 8 or 16 exposures, the
densest that fits in `BELIEF_CHECKPOINT_BYTES` (a sparser one makes each episode start advance further)."""
BELIEF_CHECKPOINT_BYTES = 256 * 2**20
"""Memory the start pool's filter checkpoints may take (all members), unless even every 16th exceeds it."""
DISAGREEMENT = "disagreement"
"""Name of the extra signal an ensemble reports when asked to (std of the members' click probability)."""
SATIATION_STEP_DECAY = 0.85
PARAMETERS = ("member", "leave_shift", "position_decay", "satiation_rate", "noise_scale")
"""The hidden behaviour parameters of a user row."""
DEFAULT_PARAMETERS = {
    "member": -1,
    "leave_shift": 0.0,
    "position_decay": 1.0,
    "satiation_rate": 0.0,
    "noise_scale": 0.0,
}
"""member -1 = the ensemble mean."""


@dataclass
class SimulatorState:
    """Hidden state of N simulated users (mutated in place by `respond` and `end_session`)."""

    user_ids: np.ndarray  # [N] int64 index into the start pool
    items: np.ndarray  # [N, L] int64 history, left-padded with n_items
    inputs: np.ndarray  # [N, L, F + 1] float32 encoder inputs of the history
    pending_gap: np.ndarray  # [N] days since the last session, for the next exposure
    satiation: np.ndarray  # [N, D]
    gap_mean: np.ndarray  # [N] log-days mean of the return gap, from the last step
    gap_sigma: np.ndarray  # [N]
    user_features: np.ndarray  # [N, P] float32 encoded features of the logged user each row started from
    beliefs: np.ndarray  # [N, M, W] float32 each member's interest-filter state (W = 0 without a filter);
    # in a simulator set only the row's own member's is kept, the others are NaN
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
        with torch.no_grad():
            table = members[0].item_vectors(torch.arange(self.n_items))
            self._unit_items = (table / table.norm(dim=1, keepdim=True).clamp_min(1e-8)).numpy().copy()

    def _filter_checkpoints(self) -> tuple[int, np.ndarray, np.ndarray]:
        """Each member's interest-filter state after every `every` exposures of each start-pool sequence,
        from its first (`every` from `BELIEF_CHECKPOINT_EVERY`): `(every, offsets, checkpoints)`, `offsets`
        [U + 1] into `checkpoints` [C, M, W] (user u's j-th checkpoint, after `j * every` exposures, is row
        `offsets[u] + j`). Computed at the first episode start of this simulator or of any view
        `with_options` made of it (they share them)."""
        if "checkpoints" not in self._shared_cache:
            self._shared_cache["checkpoints"] = self._compute_filter_checkpoints()
        return self._shared_cache["checkpoints"]

    @torch.inference_mode()
    def _compute_filter_checkpoints(self) -> tuple[int, np.ndarray, np.ndarray]:
        pool = self.start_pool
        model_filter = self.members[0].interest_filter
        width = 0 if model_filter is None else model_filter.state_width
        for every in BELIEF_CHECKPOINT_EVERY:  # the densest that fits the memory budget
            counts = pool.lengths() // every + 1
            if int(counts.sum()) * len(self.members) * width * 4 <= BELIEF_CHECKPOINT_BYTES:
                break
        offsets = np.zeros(pool.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        checkpoints = np.zeros((offsets[-1], len(self.members), width), dtype=np.float32)
        if not width:
            return every, offsets, checkpoints
        for first in range(0, pool.n_users, 512):
            users = np.arange(first, min(first + 512, pool.n_users))
            lo, length = pool.offsets[users], pool.lengths()[users]
            features = torch.from_numpy(pool.user_features[users])
            for k, member in enumerate(self.members):
                belief = member.interest_filter.initial(len(users), features if features.shape[1] else None)
                for j in range(int(counts[users].max())):
                    has = np.flatnonzero(j < counts[users])
                    checkpoints[offsets[users[has]] + j, k] = belief[has].numpy()
                    items, inputs = self._pool_exposures(
                        lo + j * every, np.minimum(length - j * every, every), every
                    )
                    belief = member.advance_filter(belief, torch.from_numpy(items), torch.from_numpy(inputs))
        return every, offsets, checkpoints

    def _pool_exposures(
        self, start: np.ndarray, count: np.ndarray, width: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Items [N, width] and model inputs [N, width, F + 1] of start-pool rows `start .. start + count - 1`,
        left-aligned and padded after `count` (a padded position is no exposure)."""
        index = start[:, None] + np.arange(width)[None, :]
        items, _, inputs = self._pool_rows(index, np.arange(width)[None, :] < count[:, None])
        return items, inputs

    def _pool_rows(self, index: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Items, raw feedback and model inputs of start-pool rows `index` [N, T] where `real`, padding elsewhere."""
        pool = self.start_pool
        safe = np.where(real, index, 0)
        items = np.where(real, pool.items[safe], self.n_items)
        feedback = pool.feedback[safe] * real[..., None]
        inputs = model_inputs(feedback, pool.gap_before[safe] * real, self._scales) * real[..., None]
        return items, feedback, inputs

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
        items, feedback, inputs = self._pool_rows(index, index >= lo[:, None])
        parameters = self._draw_parameters(uniforms[:, 1:], n)
        state = SimulatorState(
            user_ids=user_ids.copy(),
            items=items,
            inputs=inputs,
            pending_gap=np.zeros(n),
            satiation=np.zeros((n, self._unit_items.shape[1]), dtype=np.float32),
            gap_mean=np.zeros(n),
            gap_sigma=np.ones(n),
            user_features=pool.user_features[users],
            beliefs=self._start_beliefs(users, end, self._own_members(parameters)),
            parameters=parameters,
        )
        history_feedback = feedback
        if self.report_disagreement:
            history_feedback = np.concatenate([feedback, np.zeros((n, length, 1), np.float32)], axis=-1)
        return StartOfEpisode(
            state, items.copy(), history_feedback.astype(np.float32), state.user_features.copy()
        )

    @torch.inference_mode()
    def _start_beliefs(self, users: np.ndarray, end: np.ndarray, members: np.ndarray | None) -> np.ndarray:
        """`[N, M, W]` each member's filter state after start-pool rows `offsets[user] .. end - 1` (the user's
        whole logged prefix): the nearest checkpoint, advanced over the rest (`members` as in
        `_advance_beliefs`)."""
        read = end - self.start_pool.offsets[users]
        every, offsets, checkpoints = self._filter_checkpoints()
        beliefs = checkpoints[offsets[users] + read // every].copy()
        if not beliefs.shape[2]:
            return beliefs
        done = read - read % every
        left = read - done  # exposures past the checkpoint, fewer than `every`
        if left.max(initial=0) > 0:  # the filter's loop runs as often as the longest rest needs, no more
            width = int(left.max())
            items, inputs = self._pool_exposures(self.start_pool.offsets[users] + done, left, width)
            self._advance_beliefs(beliefs, members, items, inputs)
        if members is not None:
            beliefs[members[:, None] != np.arange(len(self.members))[None, :]] = np.nan
        return beliefs

    @torch.inference_mode()
    def _advance_beliefs(
        self, beliefs: np.ndarray, members: np.ndarray | None, items: np.ndarray, inputs: np.ndarray
    ) -> None:
        """Advance `beliefs` [N, M, W] in place over exposures `items` [N, T] with `inputs` [N, T, F + 1]:
        every member's state (None: an ensemble, whose mean reads them all), or with `members` [N] (a
        simulator set, each row reading its own member alone) only each row's own member's. A simulator
        set keeps the other members' states NaN, so that a state no step keeps current cannot be read by
        mistake."""
        items, inputs = torch.from_numpy(items), torch.from_numpy(inputs)
        for k, member in enumerate(self.members):
            rows = slice(None) if members is None else np.flatnonzero(members == k)
            if members is not None and not len(rows):
                continue
            beliefs[rows, k] = member.advance_filter(
                torch.from_numpy(beliefs[rows, k]), items[rows], inputs[rows]
            ).numpy()

    def _draw_parameters(self, uniforms: np.ndarray, n: int) -> dict[str, np.ndarray]:
        params = {name: np.full(n, float(value)) for name, value in DEFAULT_PARAMETERS.items()}
        params["member"] = params["member"].astype(np.int64)
        if self.parameter_ranges is None:
            return params
        for j, name in enumerate(PARAMETERS):
            if name == "member":
                params[name] = np.minimum(
                    (uniforms[:, j] * len(self.members)).astype(np.int64), len(self.members) - 1
                )
            elif name in self.parameter_ranges:
                low, high = self.parameter_ranges[name]
                params[name] = low + (high - low) * uniforms[:, j]
        return params

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
    ):
        features = None if user_features is None else torch.from_numpy(np.asarray(user_features, np.float32))
        belief = None if belief is None else torch.from_numpy(belief)
        state = member.last_state(torch.from_numpy(items), torch.from_numpy(inputs), features, belief)
        return member.calibrated(member.heads(state, torch.from_numpy(slates)))

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
        members' interest-filter states a running simulator carries (`SimulatorState.beliefs`, which has
        read the whole episode); without them each member's filter reads the window `items` afresh.
        """
        if self.n_user_features and user_features is None:
            raise ValueError(
                f"this simulator reads {self.n_user_features} user features: pass `user_features` "
                f"({', '.join(self.schema.user_features.names[:5])}{', ...' if self.n_user_features > 5 else ''})"
            )
        indices = range(len(self.members)) if member < 0 else [member]
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

    def _own_members(self, parameters: dict[str, np.ndarray]) -> np.ndarray | None:
        """Each row's member [N] where rows read their own member alone (a simulator set of several
        members); None where every row reads the ensemble mean (or the only member)."""
        if self.parameter_ranges is None or len(self.members) == 1:
            return None
        return parameters["member"]

    def _predict_rows(self, state: SimulatorState, slates: np.ndarray) -> dict:
        """`predict` with each row's own member (simulator sets) or the ensemble mean."""
        members = self._own_members(state.parameters)
        if members is None:
            member = -1 if len(self.members) > 1 else 0
            return self.predict(state.items, state.inputs, slates, member, state.user_features, state.beliefs)
        result: dict[str, np.ndarray] = {}
        for k in np.unique(members):
            rows = np.flatnonzero(members == k)
            part = self.predict(
                state.items[rows],
                state.inputs[rows],
                slates[rows],
                int(k),
                state.user_features[rows],
                state.beliefs[rows],
            )
            for key, value in part.items():
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
        if state.beliefs.shape[2]:
            self._advance_beliefs(state.beliefs, self._own_members(params), slates, step_inputs)
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
