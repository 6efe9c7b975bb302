"""The ground-truth user world: parametric users whose every probability is known.

Equations are in docs/world.md; the constants in `WorldConfig`. In short, for a user with interest
vector u, category satiation s, satisfaction m, patience p and activity a, shown a slate (i_1..i_K):

    affinity      aff_k = <u, e_{i_k}>                                   (unit vectors, in [-1, 1])
    click utility x_k   = w_aff aff_k + w_cb clickbait_{i_k} - w_sat s[c_{i_k}] + b
    choice        P(k)  = theta_k exp(x_k) / (1 + sum_j theta_j exp(x_j)),  theta_k = position_bias^k
    completion    c     = sigmoid(w_q (quality - 1/2) + w_ca aff + noise),  watch_time = duration * c
    like, follow, share, hate ~ Bernoulli(sigmoid(linear in (c, aff, quality, s)))
    experience    e     = clicked (2c - 1 + like/2) - (1 - clicked) no_click_penalty - hate_penalty hate
    satisfaction  m    <- rho m + (1 - rho) e
    leave         P     = sigmoid(leave_bias - leave_weight m / p)
    return gap    ~ Exponential(mean = mean_gap exp(-w_gap m) / a)   days, drawn at session end

Consuming an item raises its category's satiation (decaying per step and per day) and pulls the
user's interest toward the item. Clickbait items are tempting but poorly completed, which lowers
satisfaction, shortens sessions and lengthens return gaps: the immediate click and the long-term
value disagree, so a far-sighted policy beats a greedy one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsim_env.checks import describe
from recsim_env.errors import ArgumentError
from recsim_env.user_model import Response, StartOfEpisode
from recsim_env.world.config import WorldConfig
from recsim_env.world.dynamics import CLICK, WATCH_TIME, StepCoefficients, item_table, respond_kernel
from recsim_env.world.warm_start import (
    ShellProposal,
    WarmStartDraw,
    pool_size,
    resolve_sampler,
    table_history,
)

_POPULARITY_CHUNK = 2**24
"""Values of the largest [users, n_items] table `UserWorld.item_popularity` builds at once."""

SIGNALS: tuple[str, ...] = ("click", "watch_time", "like", "follow", "share", "hate")
"""The world's feedback signals, in the order of every feedback vector."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass
class WorldState:
    """Hidden state of N users (mutated in place by `UserWorld.respond`)."""

    user_ids: np.ndarray  # [N] int64
    interest: np.ndarray  # [N, D] unit vectors
    satiation: np.ndarray  # [N, C]
    satisfaction: np.ndarray  # [N]
    patience: np.ndarray  # [N]
    activity: np.ndarray  # [N]

    def set_rows(self, rows: np.ndarray, other: WorldState) -> None:
        """Overwrite users `rows` with the users of `other` (same order)."""
        for name in ("user_ids", "interest", "satiation", "satisfaction", "patience", "activity"):
            getattr(self, name)[rows] = getattr(other, name)

    def rows(self, rows: np.ndarray) -> WorldState:
        """A copy holding only users `rows`."""
        return WorldState(
            self.user_ids[rows],
            self.interest[rows],
            self.satiation[rows],
            self.satisfaction[rows],
            self.patience[rows],
            self.activity[rows],
        )


class WorldStart:
    """A start of users being prepared by `UserWorld.prepare_start` (`compute`, then `finish`)."""

    def __init__(self, world: UserWorld, state: WorldState, uniforms: np.ndarray) -> None:
        self.world, self.state, self.uniforms = world, state, uniforms
        self._history: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        """(items, embeddings, quality, duration) of the drawn histories, once `compute` ran."""
        self._counts: WarmStartDraw | None = None  # the rejection sampler's draw, for its counters
        cfg = world.config
        # The rejection sampler's arrays are allocated here, so that `compute` is one compiled call.
        self._draw = (
            None
            if world._proposal is None
            else world._proposal.prepare(
                state.interest, uniforms, cfg.history_len_at_start, cfg.affinity_weight, copy_rows=True
            )
        )

    def compute(self) -> None:
        """Past consumption: items drawn with probability proportional to exp(click utility). Reads
        only the catalogue and this start's arrays (the rejection sampler's kernel runs without the
        GIL), so it may run on another thread while the world steps other users."""
        world, cfg, interest = self.world, self.world.config, self.state.interest
        if world._proposal is None:
            history = table_history(
                interest, self.uniforms, cfg.affinity_weight, world.item_embeddings, world._item_utility
            )
            embeddings = world.item_embeddings[history]
            quality, duration = world.item_quality[history], world.item_duration_s[history]
            self._history = (history, embeddings, quality, duration)
        else:
            # The sampler copies out the rows it read: a large catalogue is not read a second time.
            draw = self._counts = self._draw.run()
            self._history = (draw.items, draw.embeddings, *draw.payload)

    def finish(self) -> StartOfEpisode:
        """The users' start (after `compute`, on the thread that steps the world)."""
        if self._history is None:
            self.compute()
        world, state = self.world, self.state
        history, embeddings, quality, duration = self._history
        draw = self._counts
        if draw is not None:
            world.warm_start_proposals += draw.proposals
            world.warm_start_accepted += draw.accepted
            world.warm_start_fallbacks += draw.fallbacks
        feedback = np.zeros(history.shape + (len(SIGNALS),), dtype=np.float32)
        feedback[..., CLICK] = 1.0
        affinity = np.einsum("nhd,nd->nh", embeddings, state.interest)
        completion = world._completion(quality, affinity, 0.0)
        feedback[..., WATCH_TIME] = duration * completion
        return StartOfEpisode(state, history, feedback, world.user_features[state.user_ids])


class UserWorld:
    """The ground-truth world: a fixed catalogue and user population generated from `config.seed`.

    Implements `recsim_env.user_model.UserModel`. All randomness of an episode comes in through the
    `uniforms` arguments, so the world is a deterministic function of its inputs.

    Args:
        config: the world's constants; `WorldConfig()` is the embedded default.
    """

    signals = SIGNALS
    binary_signals = frozenset({"click", "like", "follow", "share", "hate"})
    negative_signals = frozenset({"hate"})
    n_step_uniforms = 8  # choice, completion noise, like, follow, share, hate, leave, return gap

    def __init__(self, config: WorldConfig | None = None) -> None:
        if config is not None and not isinstance(config, WorldConfig):
            raise ArgumentError(f"config must be a WorldConfig or None, got {describe(config)}")
        self.config = config = config or WorldConfig()
        rng = np.random.default_rng(config.seed)
        n, c, d = config.n_items, config.n_categories, config.embedding_dim

        # Catalogue: categories of similar embeddings; clickbait is anti-correlated with quality.
        centroids = _normalize_rows(rng.normal(size=(c, d)))
        self.item_category = np.concatenate([np.arange(c), rng.integers(0, c, size=n - c)]).astype(np.int64)
        noise = rng.normal(size=(n, d)) / np.sqrt(d)
        self.item_embeddings = _normalize_rows(centroids[self.item_category] + config.category_spread * noise)
        self.item_quality = rng.beta(2.0, 2.0, size=n)
        self.item_clickbait = _sigmoid(rng.normal(size=n) - 4.0 * (self.item_quality - 0.5))
        self.item_duration_s = config.mean_duration_s * np.exp(0.5 * rng.normal(size=n))

        # Population: favourite categories follow a Zipf-like law, so some categories are popular.
        category_weights = 1.0 / np.arange(1, c + 1)
        favourite = rng.choice(c, size=config.n_users, p=category_weights / category_weights.sum())
        noise = rng.normal(size=(config.n_users, d)) / np.sqrt(d)
        self.user_interest = _normalize_rows(centroids[favourite] + config.interest_spread * noise)
        self.user_patience = rng.uniform(0.5, 1.5, size=config.n_users)
        self.user_activity = np.exp(0.3 * rng.normal(size=config.n_users))
        # Observable features: noisy affinity to each category centroid, and log activity.
        category_affinity = self.user_interest @ centroids.T + 0.3 * rng.normal(size=(config.n_users, c))
        self.user_features = np.concatenate(
            [category_affinity, np.log(self.user_activity)[:, None]], axis=1
        ).astype(np.float32)

        self.position_weights = config.position_bias ** np.arange(n, dtype=np.float64)
        # Part of the click utility that depends on the item only.
        self._item_utility = config.clickbait_weight * self.item_clickbait + config.click_bias
        self._coefficients = StepCoefficients.from_config(config).as_array()
        self._item_table = item_table(
            self.item_embeddings,
            self.item_category,
            self.item_quality,
            self.item_duration_s,
            self._item_utility,
        )
        # The warm-start sampler in use, "table" or "rejection" (recsim_env.world.warm_start).
        self.warm_start_sampler = resolve_sampler(config.warm_start_sampler, n)
        self._proposal = (
            ShellProposal.build(
                self.item_embeddings,
                self.item_category,
                self._item_utility,
                c,
                item_payload=np.column_stack([self.item_quality, self.item_duration_s]),
            )
            if self.warm_start_sampler == "rejection"
            else None
        )
        # Counters of the rejection sampler: proposals made, proposals accepted, and users whose pool
        # ran out (so that the rest of their history came from the full inverse CDF).
        self.warm_start_proposals = 0
        self.warm_start_accepted = 0
        self.warm_start_fallbacks = 0

    # ------------------------------------------------------------------ contract attributes
    @property
    def n_items(self) -> int:
        return self.config.n_items

    @property
    def n_users(self) -> int:
        return self.config.n_users

    @property
    def n_user_features(self) -> int:
        return self.user_features.shape[1]

    @property
    def n_start_uniforms(self) -> int:
        history_len = self.config.history_len_at_start
        if self.warm_start_sampler == "table":
            return history_len
        return history_len + 2 * pool_size(history_len)

    @property
    def concurrent_start(self) -> bool:
        """Whether `prepare_start(...).compute()` pays on another thread: with the `"rejection"`
        sampler it is one compiled call without the GIL; the `"table"` sampler's numpy holds it."""
        return self._proposal is not None

    @property
    def start_values_per_user(self) -> int:
        """Values `initial_state` allocates per user: the catalogue-wide table, or the uniforms."""
        return self.n_items if self.warm_start_sampler == "table" else self.n_start_uniforms

    # ------------------------------------------------------------------ dynamics
    def initial_state(self, user_ids: np.ndarray, uniforms: np.ndarray) -> StartOfEpisode:
        """Start users with their base interest and a warm-start history sampled from it."""
        prepared = self.prepare_start(user_ids, uniforms)
        prepared.compute()
        return prepared.finish()

    def prepare_start(self, user_ids: np.ndarray, uniforms: np.ndarray) -> WorldStart:
        """`initial_state` in three parts (`recsim_env.user_model.PreparedStart`): this one checks the
        arguments and gathers the users; `compute()` draws the warm-start histories, reading only the
        catalogue (safe on another thread while the world steps other users); `finish()` builds
        the start."""
        cfg = self.config
        user_ids = np.asarray(user_ids)
        if user_ids.ndim != 1 or user_ids.dtype.kind not in "iu":
            raise ArgumentError(
                f"user_ids must be a [N] integer array, got {user_ids.dtype} of shape {user_ids.shape}"
            )
        if len(user_ids) and (user_ids.min() < 0 or user_ids.max() >= cfg.n_users):
            raise ArgumentError(f"user_ids must lie in [0, {cfg.n_users}), got {describe(user_ids)}")
        user_ids = user_ids.astype(np.int64, copy=False)
        n_users = len(user_ids)
        uniforms = np.asarray(uniforms, dtype=np.float64)
        if uniforms.shape != (n_users, self.n_start_uniforms):
            raise ArgumentError(
                f"uniforms must have shape {(n_users, self.n_start_uniforms)}, got {uniforms.shape}"
            )
        interest = self.user_interest[user_ids].copy()
        state = WorldState(
            user_ids=user_ids,
            interest=interest,
            satiation=np.zeros((n_users, cfg.n_categories)),
            satisfaction=np.full(n_users, cfg.initial_satisfaction),
            patience=self.user_patience[user_ids],
            activity=self.user_activity[user_ids],
        )
        return WorldStart(self, state, uniforms)

    def _completion(self, quality: np.ndarray, affinity: np.ndarray, noise) -> np.ndarray:
        cfg = self.config
        return _sigmoid(
            cfg.completion_quality_weight * (quality - 0.5)
            + cfg.completion_affinity_weight * affinity
            + cfg.completion_noise * noise
        )

    def respond(self, state: WorldState, slates: np.ndarray, uniforms: np.ndarray) -> Response:
        """One step: choice, consumption signals, satiation, drift, satisfaction, leaving (compiled).

        Raises `ArgumentError` (changing nothing) for slates that are not [N, K] item ids of the
        catalogue or uniforms that are not [N, >= n_step_uniforms]: the compiled step reads no bounds.
        """
        slates = np.asarray(slates)
        if slates.ndim != 2 or slates.dtype.kind not in "iu":
            raise ArgumentError(
                f"slates must be a [N, K] integer array, got {slates.dtype} of shape {slates.shape}"
            )
        n_users, slate_size = slates.shape
        if n_users != len(state.satisfaction) or slate_size > len(self.position_weights):
            raise ArgumentError(
                f"slates must have shape [N, K] with N = {len(state.satisfaction)} users and "
                f"K <= {len(self.position_weights)}, got {slates.shape}"
            )
        uniforms = np.asarray(uniforms)
        if uniforms.ndim != 2 or uniforms.shape[0] != n_users or uniforms.shape[1] < self.n_step_uniforms:
            raise ArgumentError(
                f"uniforms must have shape ({n_users}, {self.n_step_uniforms}), got {uniforms.shape}"
            )
        slates = slates.astype(np.int64, copy=False)
        feedback = np.zeros((n_users, slate_size, len(SIGNALS)), dtype=np.float32)
        chosen = np.empty(n_users, dtype=np.int64)
        leave = np.empty(n_users, dtype=np.bool_)
        choice = np.empty((n_users, slate_size))
        valid = respond_kernel(
            slates,
            uniforms,
            state.interest,
            state.satiation,
            state.satisfaction,
            state.patience,
            self._item_table,
            self.position_weights,
            self._coefficients,
            feedback,
            chosen,
            leave,
            choice,
        )
        if not valid:
            raise ArgumentError(f"slates must hold item ids in [0, {self.n_items}), got {describe(slates)}")
        return Response(feedback, chosen, leave, {"choice_probability": choice})

    def mean_return_gap(self, state: WorldState) -> np.ndarray:
        """[N] expected days until the users come back if their session ended now."""
        cfg = self.config
        return cfg.mean_gap_days * np.exp(-cfg.gap_satisfaction_weight * state.satisfaction) / state.activity

    def end_session(self, state: WorldState, mask: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """Draw return gaps (days) for users in `mask` and let that time pass for them."""
        cfg = self.config
        gap = np.where(mask, -self.mean_return_gap(state) * np.log(uniforms[:, 7]), 0.0)
        state.satiation *= np.exp(-cfg.satiation_daily_decay * gap)[:, None]
        state.satisfaction = np.where(
            mask, cfg.satisfaction_carry_over * state.satisfaction, state.satisfaction
        )
        return gap

    # ------------------------------------------------------------------ what oracles may read
    def click_probabilities(self, state: WorldState) -> np.ndarray:
        """[N, n_items] probability of a click if each item were shown alone (at position 0)."""
        cfg = self.config
        utility = (
            cfg.affinity_weight * (state.interest @ self.item_embeddings.T)
            - cfg.satiation_weight * state.satiation[:, self.item_category]
            + self._item_utility
        )
        return _sigmoid(utility)

    def expected_completion(self, state: WorldState) -> np.ndarray:
        """[N, n_items] completion rate of each item with the noise at its median."""
        return self._completion(self.item_quality, state.interest @ self.item_embeddings.T, 0.0)

    def item_popularity(self) -> np.ndarray:
        """[n_items] mean click probability over the population at the start of a session.

        A population too large for one [n_users, n_items] table (over `_POPULARITY_CHUNK` values) is
        summed a block of users at a time, so memory stays bounded whatever the config.
        """

        def probabilities(interest: np.ndarray) -> np.ndarray:
            utility = self.config.affinity_weight * (interest @ self.item_embeddings.T) + self._item_utility
            return _sigmoid(utility)

        n_users = len(self.user_interest)
        if n_users * self.n_items <= _POPULARITY_CHUNK:
            return probabilities(self.user_interest).mean(axis=0)
        step = max(1, _POPULARITY_CHUNK // self.n_items)
        total = np.zeros(self.n_items)
        for start in range(0, n_users, step):
            total += probabilities(self.user_interest[start : start + step]).sum(axis=0)
        return total / n_users
