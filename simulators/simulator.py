"""`LearnedSimulator`: one trained response model behind the `UserModel` contract.

Episodes start from real users' history prefixes (a prefix end drawn uniformly per episode); each
step scores the slate with the heads from the encoder's state at the last position of the `[N, L]`
histories and samples the response from the environment's uniforms only, so the vector env reproduces
single envs. Each step is incremental: the state carries the encoder's per-event cache of the history
(an encoder with `encode_last`, SASRec, embeds each exposure once and runs its last block for the last
position only; with one block, it also caches each exposure's part of the keys and values) and, with an
interest filter (`SimulatorConfig.interest_filter`), the filter state, which reads each new exposure once: it has read the whole episode, where `predict` on a window starts the filter afresh from
the window's first exposure (the same state while the episode fits the window).

An ensemble of such simulators (`simulators.ensemble.EnsembleSimulator`) averages their probabilities;
a simulator set (`simulators.simulator_set.SimulatorSet`) plays each episode in one of them with behaviour
parameters drawn per episode. Both reuse this module's pieces (`combine`, the response sampling) and the
state of `simulators.state`: the users' side (`UserState`) and what one model carries (`MemberState`).
A step's model work runs in blocks of users on parallel threads (`simulators.stepping`).

Behaviour parameters (per user row, drawn at `initial_state` by a simulator set, the defaults of
`simulators.behaviour` otherwise; see docs/simulators.md):

    click utility    x_k = logit P(click) - satiation_rate * relu(<S, e_k / |e_k|>) + noise_scale * logistic
    choice           P(position k) = theta^k exp(x_k) / (1 + sum_j theta^j exp(x_j))   theta = position_decay
    leave            logit P(leave) = calibrated leave logit + leave_shift
    satiation        S <- 0.85 S + e_i / |e_i| for the consumed item i; S <- S exp(-gap days) between sessions

With one item and default parameters the choice is `P(click)` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from recsim_env.user_model import Response, StartOfEpisode
from simulators.behaviour import SATIATION_STEP_DECAY, draw_parameters
from simulators.config import SimulatorConfig
from simulators.data import DataSchema, ExposureLog, model_inputs
from simulators.response_model import HeadOutputs, ResponseModel
from simulators.start_pool import FilterCheckpoints, pool_exposures, pool_rows
from simulators.state import MemberState, SimulatorState, UserState
from simulators.stepping import check_threads, default_threads, keep_freed_memory, map_blocks, step_context

DISAGREEMENT = "disagreement"
"""Name of the extra signal an ensemble reports when asked to (std of the members' click probability)."""

Readers = Sequence[tuple["LearnedSimulator", np.ndarray | slice]]
"""`(simulator, rows)`: which simulator's model reads which rows of a state."""


def combine(outs: Sequence[HeadOutputs], scales: np.ndarray) -> dict[str, np.ndarray]:
    """`predict`'s arrays from the calibrated head outputs of M models (probabilities averaged over them;
    `click_std` their population std); `scales` [R] turn the continuous heads into raw units."""
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
    result["mean"] = result["mean"] * scales
    result["sigma"] = result["sigma"] * scales
    return result


@torch.inference_mode()
def start_beliefs(pool: ExposureLog, users: np.ndarray, end: np.ndarray, readers: Readers) -> np.ndarray:
    """`[N, W]` each row's filter state after start-pool rows `offsets[user] .. end - 1` (the user's whole
    logged prefix), in the model of its reader: the nearest checkpoint, advanced over the rest."""
    read = end - pool.offsets[users]
    first = readers[0][0]
    every, offsets, checkpoints = first.checkpoints.get()
    at = offsets[users] + read // every
    beliefs = np.zeros((len(users), checkpoints.shape[2]), dtype=np.float32)
    for simulator, rows in readers:
        beliefs[rows] = checkpoints[at[rows], simulator.checkpoint_column]
    if not beliefs.shape[1]:
        return beliefs
    done = read - read % every
    left = read - done  # exposures past the checkpoint, fewer than `every`
    if left.max(initial=0) > 0:  # the filter's loop runs as often as the longest rest needs, no more
        items, inputs = pool_exposures(
            pool, pool.offsets[users] + done, left, int(left.max()), first._scales, first.n_items
        )
        for simulator, rows in readers:
            beliefs[rows] = simulator.advance_filter(beliefs[rows], items[rows], inputs[rows])
    return beliefs


class LearnedSimulator:
    """A learned user model: one trained `ResponseModel`, the data's schema and its start histories.

    Implements `recsim_env.user_model.UserModel`; its state is a `SimulatorState`.

    Args:
        config: how the model was trained.
        schema: signals, scales and catalogue of the data.
        model: the trained response model.
        start_pool: exposure sequences whose prefixes start episodes.
        item_tokens: raw item id of each item index.
        checkpoints: the start pool's filter checkpoints this model reads (`simulators.start_pool`):
            shared by the members of an ensemble, which read their column `checkpoint_column`; by
            default this model's own.
        checkpoint_column: this model's column of `checkpoints`.
        threads: threads a step's model work runs on, in blocks of users (`simulators.stepping`; the
            outputs do not depend on it); None: `simulators.stepping.default_threads()`. The attribute
            `threads` may be set later. Steps (`initial_state`, `respond`) run on one torch thread per
            step thread, whatever `torch.get_num_threads()` says.

    A step also makes glibc keep freed memory for reuse, once per process
    (`simulators.stepping.keep_freed_memory`; `SEQREC_SIMULATOR_KEEP_FREED_MEMORY=0` leaves it alone).
    """

    _FIXED_UNIFORMS = 4  # choice, leave, return gap, click noise
    n_start_uniforms = 1  # the prefix end

    def __init__(
        self,
        config: SimulatorConfig,
        schema: DataSchema,
        model: ResponseModel,
        start_pool: ExposureLog,
        item_tokens: list,
        *,
        checkpoints: FilterCheckpoints | None = None,
        checkpoint_column: int = 0,
        threads: int | None = None,
    ) -> None:
        if not isinstance(model, ResponseModel):
            raise TypeError(
                f"argument 'model' must be a ResponseModel, got {type(model).__name__} "
                "(several members: simulators.ensemble.simulator_of)"
            )
        self.threads = check_threads(threads)
        self.config = config
        self.schema = schema
        self.model = model.eval()
        self.start_pool = start_pool
        self.item_tokens = item_tokens
        self.signals = schema.signals
        self.binary_signals = frozenset(schema.binary)
        self.negative_signals = frozenset(schema.negative)
        self.n_items = schema.n_items
        self.n_user_features = schema.user_features.width
        self._users = np.flatnonzero(start_pool.lengths() >= 2)
        if len(self._users) == 0:
            raise ValueError("the simulator's start pool has no user with 2 or more exposures")
        self.n_users = len(self._users)
        self._continuous = [schema.signals.index(s) for s in schema.continuous]
        self._other_binary = [schema.signals.index(s) for s in schema.other_binary]
        self.n_step_uniforms = self._FIXED_UNIFORMS + len(self._continuous) + len(self._other_binary)
        self._scales = np.asarray(schema.scales, dtype=np.float32)
        self._low = np.asarray(schema.low, dtype=np.float32)
        self._high = np.asarray(schema.high, dtype=np.float32)
        self.checkpoints = checkpoints or FilterCheckpoints(start_pool, [model], self._scales, self.n_items)
        self.checkpoint_column = checkpoint_column
        # The state carries the history's per-event cache only where the encoder reads it (`encode_last`).
        self.carries_embedding = getattr(model.encoder, "encode_last", None) is not None
        with torch.no_grad():
            table = model.item_vectors(torch.arange(self.n_items))
            self._unit_items = (table / table.norm(dim=1, keepdim=True).clamp_min(1e-8)).numpy().copy()
        self._weights = [*model.parameters(), *model.buffers()]
        self._table: tuple[tuple[int, ...], torch.Tensor] | None = None  # (the weights' versions, the table)

    @property
    def members(self) -> list[ResponseModel]:
        """The response models this simulator reads: its model alone."""
        return [self.model]

    @property
    def history_len(self) -> int:
        return self.config.history_len

    @property
    def step_threads(self) -> int:
        """Threads a step's model work runs on: `threads`, else the default."""
        return self.threads or default_threads()

    def with_disagreement(self) -> LearnedSimulator:
        """Refused: one model has no disagreement to report."""
        raise ValueError(
            "argument 'uncertainty_penalty' needs an ensemble (SimulatorConfig.ensemble_size >= 2)"
        )

    def _item_table(self, lookups: int) -> torch.Tensor | None:
        """Every item's vector (`ResponseModel.item_vectors`) when a call looks up more vectors than the
        catalogue holds, else None (the vectors are then computed for the items looked up). The table is
        kept until a parameter or buffer of the model changes in place (its version counter moves)."""
        if lookups <= self.n_items:
            return None
        versions = tuple(t._version for t in self._weights)
        if self._table is None or self._table[0] != versions:
            with torch.inference_mode():
                self._table = (versions, self.model.item_vectors(torch.arange(self.n_items + 1)))
        return self._table[1]

    # ------------------------------------------------------------------ start
    def start_users(
        self,
        user_ids: np.ndarray,
        uniforms: np.ndarray,
        ranges: dict[str, tuple[float, float]] | None = None,
        n_members: int = 1,
    ) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
        """The users' side of a start: `(UserState fields, start-pool users [N], prefix ends [N], raw
        feedback [N, L, F])`. Each prefix of the user's logged exposures ends where `uniforms[:, 0]` says;
        the behaviour parameters are drawn from `uniforms[:, 1:]` within `ranges` (`draw_parameters`)."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        n, length = len(user_ids), self.history_len
        pool = self.start_pool
        users = self._users[user_ids]
        lo, hi = pool.offsets[users], pool.offsets[users + 1]
        # The prefix holds at least one exposure and leaves at least one for the episode to differ from.
        end = lo + 1 + np.floor(uniforms[:, 0] * (hi - lo - 1)).astype(np.int64)
        index = end[:, None] - length + np.arange(length)[None, :]  # [N, L]
        items, feedback, inputs = pool_rows(pool, index, index >= lo[:, None], self._scales, self.n_items)
        fields = dict(
            user_ids=user_ids.copy(),
            items=items,
            inputs=inputs,
            pending_gap=np.zeros(n),
            satiation=np.zeros((n, self._unit_items.shape[1]), dtype=np.float32),
            gap_mean=np.zeros(n),
            gap_sigma=np.ones(n),
            user_features=pool.user_features[users],
            parameters=draw_parameters(uniforms[:, 1:], n, ranges, n_members),
        )
        return fields, users, end, feedback

    @staticmethod
    def start_of_episode(state: UserState, feedback: np.ndarray, disagreement: bool) -> StartOfEpisode:
        """What `initial_state` returns for `state` with the history's raw `feedback` [N, L, F] (and a zero
        disagreement column where that signal is reported)."""
        if disagreement:
            feedback = np.concatenate([feedback, np.zeros(feedback.shape[:2] + (1,), np.float32)], axis=-1)
        return StartOfEpisode(
            state, state.items.copy(), feedback.astype(np.float32), state.user_features.copy()
        )

    def initial_state(self, user_ids: np.ndarray, uniforms: np.ndarray) -> StartOfEpisode:
        """Start from a prefix of each user's logged exposures (its end drawn with `uniforms[:, 0]`), with
        that user's features."""
        fields, users, end, feedback = self.start_users(user_ids, uniforms)
        with step_context():
            carried = MemberState(
                beliefs=start_beliefs(self.start_pool, users, end, [(self, slice(None))]),
                events=self.embed(fields["items"], fields["inputs"]),
            )
        return self.start_of_episode(SimulatorState(**fields, carried=carried), feedback, False)

    @torch.inference_mode()
    def embed(self, items: np.ndarray, inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        """`embed_history` of `items` [N, T] with `inputs`: the encoder's per-event cache, `[N, T, ...]`
        arrays (none for an encoder without `encode_last`)."""
        if not self.carries_embedding:
            return ()
        events = self.model.embed_history(torch.from_numpy(items), torch.from_numpy(inputs))
        return tuple(e.numpy() for e in events)

    @torch.inference_mode()
    def advance_filter(
        self, beliefs: np.ndarray, items: np.ndarray, inputs: np.ndarray, *, lookups: int | None = None
    ) -> np.ndarray:
        """The filter states `beliefs` [N, W] after exposures `items` [N, T] with `inputs` [N, T, F + 1].
        `lookups`: the item-vector lookups the item table is chosen for (`_item_table`; default this call's),
        so that a block of a batch makes the batch's choice."""
        return self.model.advance_filter(
            torch.from_numpy(beliefs),
            torch.from_numpy(items),
            torch.from_numpy(inputs),
            self._item_table(items.size if lookups is None else lookups),
        ).numpy()

    # ------------------------------------------------------------------ step
    @torch.inference_mode()
    def head_outputs(
        self,
        items: np.ndarray,
        inputs: np.ndarray,
        slates: np.ndarray,
        user_features: np.ndarray | None,
        belief: np.ndarray | None = None,
        events: tuple[np.ndarray, ...] = (),
        *,
        lookups: int | None = None,
        events_start: int = 0,
    ) -> HeadOutputs:
        """The model's calibrated head outputs for `slates` [N, K] after histories `items` [N, L] (with the
        filter states `belief` [N, W] and the per-event cache `events` of the history where it carries them,
        a ring whose window starts at slot `events_start` (`MemberState`);
        `lookups` as in `advance_filter`)."""
        features = None if user_features is None else torch.from_numpy(np.asarray(user_features, np.float32))
        belief = None if belief is None else torch.from_numpy(belief)
        cached = tuple(torch.from_numpy(e) for e in events) if events and events[0].size else None
        table = self._item_table(items.size if lookups is None else lookups)
        state = self.model.last_state(
            torch.from_numpy(items),
            torch.from_numpy(inputs),
            features,
            belief,
            events=cached,
            events_start=events_start,
            item_table=table,
        )
        return self.model.calibrated(self.model.heads(state, torch.from_numpy(slates), table))

    def outputs_of(
        self,
        state: UserState,
        carried: MemberState,
        slates: np.ndarray,
        rows: np.ndarray | slice = slice(None),
    ) -> HeadOutputs:
        """`head_outputs` for rows `rows` of a running `state`, with what this model carries for them,
        computed in blocks of rows on `threads` threads (`simulators.stepping.map_blocks`)."""
        keep_freed_memory()
        items, inputs, slates = state.items[rows], state.inputs[rows], slates[rows]
        features, mine = state.user_features[rows], carried.select(rows)
        beliefs = mine.beliefs if mine.beliefs.shape[1] else None

        def block(b: slice) -> HeadOutputs:
            belief = None if beliefs is None else beliefs[b]
            events = tuple(e[b] for e in mine.events)
            return self.head_outputs(
                items[b],
                inputs[b],
                slates[b],
                features[b],
                belief,
                events,
                lookups=items.size,
                events_start=mine.start,
            )

        outs = map_blocks(block, len(items), self.step_threads)
        return outs[0] if len(outs) == 1 else HeadOutputs(*(torch.cat(parts) for parts in zip(*outs)))

    def combine(self, outs: Sequence[HeadOutputs]) -> dict[str, np.ndarray]:
        """`combine` with this schema's scales."""
        return combine(outs, self._scales[self._continuous])

    def check_user_features(self, user_features: np.ndarray | None) -> None:
        """Refuse a missing `user_features` where the model reads them."""
        if self.n_user_features and user_features is None:
            names = self.schema.user_features.names
            raise ValueError(
                f"this simulator reads {self.n_user_features} user features: pass `user_features` "
                f"({', '.join(names[:5])}{', ...' if self.n_user_features > 5 else ''})"
            )

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
        `gap_sigma` [N, K] (log days), and `click_std` [N, K] (0: one model). `member` -1 or 0 (the
        ensemble's signature, `simulators.ensemble.EnsembleSimulator.predict`). `beliefs` [N, 1, W]: the
        interest-filter states a running simulator carries (`SimulatorState.carried.beliefs[:, None]`);
        without them the filter reads the window `items` afresh.
        """
        self.check_user_features(user_features)
        if member not in (-1, 0):
            raise ValueError(f"argument 'member' must be -1 or 0 for a single simulator, got {member!r}")
        belief = None if beliefs is None else beliefs[:, 0]
        return self.combine([self.head_outputs(items, inputs, slates, user_features, belief)])

    def predict_step(self, state: SimulatorState, slates: np.ndarray) -> dict:
        """`predict`'s arrays for showing `slates` [N, K] to the users of a running `state` (from what the
        model carries: the filter state that has read the whole episode)."""
        return self.combine([self.outputs_of(state, state.carried, slates)])

    def respond(self, state: SimulatorState, slates: np.ndarray, uniforms: np.ndarray) -> Response:
        """Sample the users' responses to `slates` [N, K] from `uniforms` [N, n_step_uniforms]."""
        with step_context():
            p = self.predict_step(state, slates)
            response, step_inputs = self.sample(state, p, slates, uniforms, disagreement=False)
            self.advance(state.carried, slates, step_inputs)
        return response

    def advance(self, carried: MemberState, slates: np.ndarray, step_inputs: np.ndarray) -> None:
        """Let what the model carries read the step's exposures `slates` [N, K] with `step_inputs`, in
        blocks of rows on `threads` threads (as `outputs_of`)."""

        def block(b: slice) -> None:
            if carried.beliefs.shape[1]:
                carried.beliefs[b] = self.advance_filter(
                    carried.beliefs[b], slates[b], step_inputs[b], lookups=slates.size
                )
            if self.carries_embedding:  # the K new exposures replace the K oldest in the ring
                carried.write_new(b, self.embed(slates[b], step_inputs[b]))

        map_blocks(block, len(slates), self.step_threads)
        carried.move_on(slates.shape[1])

    def sample(
        self, state: UserState, p: dict, slates: np.ndarray, uniforms: np.ndarray, *, disagreement: bool
    ) -> tuple[Response, np.ndarray]:
        """Sample the responses to `slates` [N, K] from the predicted `p` (`predict`'s arrays) and
        `uniforms`, and advance the users' side of `state`; returns the response and the step's encoder
        inputs [N, K, F + 1] (for what the models carry). `disagreement`: report `p["click_std"]`."""
        n, k = slates.shape
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
        feedback = np.zeros((n, k, n_signals + int(disagreement)), dtype=np.float32)
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
        if disagreement:
            feedback[:, :, n_signals] = p["click_std"]

        leave_p = p["leave"][rows, at, clicked.astype(np.int64)]
        leave_logit = np.log(leave_p) - np.log1p(-leave_p) + params["leave_shift"]
        leave = uniforms[:, 1] < 1.0 / (1.0 + np.exp(-leave_logit))

        # The new exposures enter the history; the first one carries the gap since the last session.
        step_inputs = model_inputs(feedback[..., :n_signals], np.zeros((n, k), np.float32), self._scales)
        step_inputs[:, 0, -1] = np.log1p(state.pending_gap)
        state.items = np.concatenate([state.items[:, k:], slates], axis=1)
        state.inputs = np.concatenate([state.inputs[:, k:], step_inputs], axis=1)
        state.pending_gap = np.zeros(n)
        state.satiation *= SATIATION_STEP_DECAY
        state.satiation[clicked] += self._unit_items[slates[rows[clicked], chosen[clicked]]]
        state.gap_mean = p["gap_mean"][rows, at]
        state.gap_sigma = p["gap_sigma"][rows, at]
        response = Response(
            feedback, chosen, leave, {"choice_probability": choice, "click_std": p["click_std"]}
        )
        return response, step_inputs

    def end_session(self, state: UserState, mask: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """Draw log-normal return gaps (days) for users in `mask` with `uniforms[:, 2]`."""
        from scipy.special import ndtri

        z = ndtri(np.clip(uniforms[:, 2], 1e-9, 1 - 1e-9))
        gap = np.where(mask, np.exp(np.minimum(state.gap_mean + state.gap_sigma * z, 8.0)), 0.0)
        state.pending_gap = np.where(mask, gap, state.pending_gap)
        state.satiation *= np.exp(-gap)[:, None].astype(np.float32)
        return gap

    def __repr__(self) -> str:
        return (
            f"LearnedSimulator(encoder={self.config.encoder!r}, items={self.n_items}, "
            f"users={self.n_users}, signals={self.signals})"
        )
