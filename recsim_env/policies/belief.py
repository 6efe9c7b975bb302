"""A Bayesian filter over a world user's hidden state, computed from the observation alone.

`WorldFilter` knows everything about the ground-truth world (docs/world.md) except the user: the
catalogue (embeddings `e_i`, categories, quality `q_i`, clickbait `b_i`, durations `d_i`), every
constant of `WorldConfig` and the law the population is drawn from. From one observation window
(`item_ids [L]`, `feedback [L, F]`, `session_step`, `gap_days`, and `user_features` when the env
shows them) it computes, for N users at once (equations in docs/reference_policies.md):

- the interest `u`: a Gaussian sum, one component per favourite category f,
  `p(u) = sum_f w_f N(u; m_f, P_f)`. The prior is the population's law: `P(f) ∝ 1 / (f + 1)` and
  `(m_f, P_f)` the moments of `normalize(mu_f + interest_spread z / sqrt(D))`. User features
  `x_c = <u_0, mu_c> + 0.3 z` condition each component exactly (a linear-Gaussian step). The
  warm-start history's watch times are noise-free, `logit(watch / d_i) - w_q (q_i - 1/2) =
  w_ca <u_0, e_i>` (Kalman steps with a tiny noise). Each shown slate is a multinomial-logit choice (a
  Laplace step: one Newton step at the mean); a consumed item's watch time gives
  `w_ca <u, e_i> + completion_noise * logistic noise` (a Kalman step, the noise taken Gaussian of the
  same variance); likes (`-3 + 4 c + 1.5 <u, e>`), follows (`-5 + 3 <u, e> + 2 q`) and the hate of a
  refused top item (`-3.5 - 2 <u, e> + s[c]`) are Laplace steps on their logistic laws. A consumption
  moves every component by the world's drift `u <- normalize((1 - eta) u + eta e_i)` (at the mean,
  the covariance scaled alike). Component weights are multiplied by each observation's predictive
  likelihood (the probit approximation for the logistic ones).
- the satiation `s`: exact from the window (`s <- decay s`, `s[c_i] += 1` per consumption, times
  `exp(-daily_decay gap_days)` at the last session boundary); what was consumed before the window is
  missing, decayed by at least `decay^(L / K)`.
- the satisfaction `m`: `m <- rho m + (1 - rho) e` with the experience `e` computed from the observed
  completion (`watch_time / d_i`), like and hate, from `initial_satisfaction` at the window's start
  (exact when it is the episode's start, else forgotten as `rho^steps`), times
  `satisfaction_carry_over` at the last session boundary.

The filter is stateless: every call reads the window afresh, as an encoder agent sees it. It cannot
see what fell out of the window, the boundaries of sessions before the last one, the user's patience
and activity (`user_features` show `log a` only), or whether a full window of a later session still
holds part of the warm start (it assumes not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from recsim_env.checks import check_bool, check_config_fields, check_integer, describe
from recsim_env.errors import ArgumentError
from recsim_env.policies.gaussian import (
    Mixture,
    choice_step,
    gaussian_step,
    scalar_bernoulli_step,
    scalar_gaussian_step,
    select_rows,
    sigmoid,
    sum_per_user,
    symmetrize,
)
from recsim_env.world import UserWorld
from recsim_env.world.dynamics import CLICK, FOLLOW, HATE, LIKE, WATCH_TIME

# Constants of the world's laws that are not fields of WorldConfig (docs/world.md, "One step").
LIKE_LOGIT = (-3.0, 4.0, 1.5)
"""like ~ Bern(sigmoid(bias + w_c c + w_aff aff))."""
FOLLOW_LOGIT = (-5.0, 3.0, 2.0)
"""follow ~ Bern(sigmoid(bias + w_aff aff + w_q q))."""
REFUSAL_HATE_LOGIT = (-3.5, -2.0)
"""hate of the top item when nothing is consumed ~ Bern(sigmoid(bias + w_aff aff + s[c]))."""
LIKE_EXPERIENCE = 0.5
"""A like adds this to the step's experience."""
FEATURE_NOISE = 0.3
"""Standard deviation of the noise on the observable category affinities."""
WARM_START_NOISE = 1e-3
"""Standard deviation given to the warm start's noise-free completion logits (float32 rounding)."""
LOGISTIC_VARIANCE = np.pi**2 / 3.0
PRIOR_SAMPLES = 4096
"""Monte Carlo draws per category for the prior moments (a fixed seed: the filter is deterministic)."""


@dataclass(frozen=True, kw_only=True)
class BeliefConfig:
    """What the filter reads; the defaults read everything (the switches are the documented ablations)."""

    mixture: bool = True
    """One Gaussian per favourite category; False: the population prior as one moment-matched Gaussian."""
    warm_start: bool = True
    """Read the warm-start history (noise-free watch times, the items' sampling law)."""
    other_signals: bool = True
    """Read likes, follows and the hate of a refused item, besides clicks and watch times."""
    drift: bool = True
    """Move the belief with the world's interest drift after each consumption."""
    satiation: bool = True
    """Keep satiation in the click predictions (the updates always use it)."""

    def __post_init__(self) -> None:
        check_config_fields(
            self, ("mixture", "warm_start", "other_signals", "drift", "satiation"), check_bool
        )


class Belief(NamedTuple):
    """The posterior over N users' hidden state. The interest mixture is flattened: component a
    (of A) belongs to user `owner[a]`; components are sorted by user and every user has at least one."""

    owner: np.ndarray
    """[A] int64 user (row of the observation) of each component."""
    weights: np.ndarray
    """[A] mixture weights (they sum to 1 over each user's components)."""
    mean: np.ndarray
    """[A, D] component means of the interest u."""
    cov: np.ndarray
    """[A, D, D] component covariances."""
    satiation: np.ndarray
    """[N, n_categories] satiation now (exact up to what fell out of the window)."""
    satisfaction: np.ndarray
    """[N] satisfaction now."""


class _Window(NamedTuple):
    """One observation cut into warm start and S steps of K entries aligned at its end (oldest first).
    Item ids are valid everywhere (padding replaced by item 0); the masks say what is real."""

    items: np.ndarray  # [N, S, K] the slates
    feedback: np.ndarray  # [N, S, K, F]
    is_step: np.ndarray  # [N, S, K] entry is an exposure of the episode (not padding, not warm start)
    whole: np.ndarray  # [N, S] every entry of the step is in the window
    clicked: np.ndarray  # [N, S, K] the entry was consumed
    consumed: np.ndarray  # [N, S] something was consumed
    position: np.ndarray  # [N, S] its position (0 if nothing)
    item: np.ndarray  # [N, S] the consumed item, else the top one
    warm_items: np.ndarray  # [N, H] warm-start items
    warm_feedback: np.ndarray  # [N, H, F]
    warm: np.ndarray  # [N, H] bool: a warm-start entry
    boundary: np.ndarray  # [N] steps from the end after which the last session boundary lies (-1: none)
    gap_days: np.ndarray  # [N]


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def category_centroids(world: UserWorld) -> np.ndarray:
    """[n_categories, D] the centroids `mu_c` the catalogue and the population were drawn around.

    They are the world's first draws from `WorldConfig.seed`: replayed, and checked against the item
    embeddings they generate. Should the check fail (a world built another way), the normalised mean
    embedding of each category's items stands in.
    """
    cfg = world.config
    rng = np.random.default_rng(cfg.seed)
    centroids = _normalize_rows(rng.normal(size=(cfg.n_categories, cfg.embedding_dim)))
    category = np.concatenate(
        [np.arange(cfg.n_categories), rng.integers(0, cfg.n_categories, size=cfg.n_items - cfg.n_categories)]
    )
    noise = rng.normal(size=(cfg.n_items, cfg.embedding_dim)) / np.sqrt(cfg.embedding_dim)
    replayed = _normalize_rows(centroids[category] + cfg.category_spread * noise)
    if np.array_equal(category, world.item_category) and np.allclose(replayed, world.item_embeddings):
        return centroids
    sums = np.zeros((cfg.n_categories, cfg.embedding_dim))
    np.add.at(sums, world.item_category, world.item_embeddings)
    return _normalize_rows(sums)


def check_world(world) -> UserWorld:
    """`world` if it is a `UserWorld` (the filter reads its catalogue and constants), else `ArgumentError`."""
    if not isinstance(world, UserWorld):
        raise ArgumentError(f"world must be a recsim_env.world.UserWorld, got {describe(world)}")
    return world


class WorldFilter:
    """The posterior over a world user's interest, satiation and satisfaction from one observation.

    Args:
        world: the `UserWorld` whose equations and catalogue the filter knows.
        slate_size: K, items per step in the observed environment (the window holds K entries a step).
        config: what the filter reads (`BeliefConfig()`: everything).
    """

    def __init__(self, world: UserWorld, slate_size: int = 1, config: BeliefConfig | None = None) -> None:
        self.world = check_world(world)
        self.slate_size = check_integer("slate_size", slate_size, 1, world.n_items)
        if config is not None and not isinstance(config, BeliefConfig):
            raise ArgumentError(f"config must be a BeliefConfig or None, got {describe(config)}")
        self.config = config or BeliefConfig()
        cfg = world.config
        self.centroids = category_centroids(world)
        # Prior moments of u_0 given the favourite category f (Monte Carlo with a fixed seed).
        rng = np.random.default_rng(0)
        z = rng.normal(size=(PRIOR_SAMPLES, cfg.embedding_dim)) / np.sqrt(cfg.embedding_dim)
        samples = _normalize_rows(self.centroids[:, None, :] + cfg.interest_spread * z[None])  # [C, M, D]
        means = samples.mean(axis=1)
        centred = samples - means[:, None, :]
        covs = np.einsum("cmd,cme->cde", centred, centred) / (PRIOR_SAMPLES - 1)
        weights = 1.0 / np.arange(1, cfg.n_categories + 1)
        weights /= weights.sum()
        if not self.config.mixture:  # one Gaussian with the mixture's mean and covariance
            mean = weights @ means
            spread = means - mean
            covs = (
                np.einsum("c,cde->de", weights, covs) + np.einsum("c,cd,ce->de", weights, spread, spread)
            )[None]
            means, weights = mean[None], np.ones(1)
        self.prior_mean, self.prior_log_weights = means, np.log(weights)
        self.prior_cov = covs
        # Conditioning on the user features is the same linear-Gaussian step for every user of a
        # component: its gain, covariance and innovation precision are tabulated per component.
        h = self.centroids  # x = H u_0 + noise: [n_categories, D]
        ph = covs @ h.T  # [C, D, n_categories]
        innovation = h @ ph + FEATURE_NOISE**2 * np.eye(cfg.n_categories)
        self.feature_precision = np.linalg.inv(innovation)
        self.feature_gain = ph @ self.feature_precision
        self.feature_cov = covs - self.feature_gain @ np.swapaxes(ph, -1, -2)
        symmetrize(self.feature_cov)
        self.feature_logdet = np.linalg.slogdet(innovation)[1]
        self.item_offset = cfg.clickbait_weight * world.item_clickbait + cfg.click_bias  # [n_items]
        self.item_quality_logit = cfg.completion_quality_weight * (world.item_quality - 0.5)
        self.pad_id = world.n_items
        self.item_outer = np.einsum("id,ie->ide", world.item_embeddings, world.item_embeddings).reshape(
            world.n_items, -1
        )  # [n_items, D * D]: e_i e_i^T, for e_i^T P e_i
        self.log_position_weights = np.arange(self.slate_size) * np.log(max(cfg.position_bias, 1e-300))

    # ------------------------------------------------------------------ the posterior
    def posterior(self, obs: dict[str, np.ndarray]) -> Belief:
        """The belief after the observation window `obs` (batched: each value with a leading N axis)."""
        window = self._window(obs)
        n = window.items.shape[0]
        satiation, satisfaction = self._exact_state(window)
        n_components = len(self.prior_log_weights)
        owner = np.repeat(np.arange(n), n_components)
        component = np.tile(np.arange(n_components), n)
        mean = self.prior_mean[component]
        log_weight = self.prior_log_weights[component].copy()
        if "user_features" in obs:  # condition on x_c = <u_0, mu_c> + FEATURE_NOISE z (exact per component)
            features = np.asarray(obs["user_features"], dtype=np.float64)
            if features.shape != (n, self.world.n_user_features):
                raise ArgumentError(
                    f"obs['user_features'] must have shape ({n}, {self.world.n_user_features}), got {features.shape}"
                )
            # The last feature, log activity, says nothing about the interest.
            residual = features[owner, : self.world.config.n_categories] - mean @ self.centroids.T
            precision = self.feature_precision[component]
            mean = mean + (self.feature_gain[component] @ residual[..., None])[..., 0]
            cov = self.feature_cov[component]
            log_weight -= 0.5 * (
                np.einsum("ak,akj,aj->a", residual, precision, residual) + self.feature_logdet[component]
            )
        else:
            cov = self.prior_cov[component]
        mix = Mixture(owner, log_weight, mean, cov)
        mix.prune()
        if self.config.warm_start and window.warm.any():
            self._read_warm_start(mix, window)
        for s in range(window.items.shape[1]):
            if window.whole[:, s].any():
                self._read_step(mix, window, s, satiation[:, s])
                mix.prune()
        return Belief(mix.owner, mix.weights(), mix.mean, mix.cov, satiation[:, -1], satisfaction)

    def _exact_state(self, window: _Window) -> tuple[np.ndarray, np.ndarray]:
        """[N, S + 1, n_categories] satiation before each step of the window and now; [N] satisfaction now."""
        cfg = self.world.config
        n, n_steps = window.whole.shape
        satiation = np.zeros((n, n_steps + 1, cfg.n_categories))
        satisfaction = np.full(n, cfg.initial_satisfaction)
        rows = np.arange(n)
        rho = cfg.satisfaction_memory
        for s in range(n_steps):
            stepped = window.is_step[:, s].any(axis=1)
            consumed = window.consumed[:, s]
            item = window.item[:, s]
            feedback = window.feedback[rows, s, window.position[:, s]]  # [N, F]
            completion = np.clip(feedback[:, WATCH_TIME] / self.world.item_duration_s[item], 0.0, 1.0)
            experience = np.where(
                consumed,
                2.0 * completion - 1.0 + LIKE_EXPERIENCE * (feedback[:, LIKE] > 0),
                -cfg.no_click_penalty,
            ) - cfg.hate_penalty * (feedback[:, HATE] > 0)
            satisfaction = np.where(stepped, rho * satisfaction + (1.0 - rho) * experience, satisfaction)
            now = np.where(stepped[:, None], satiation[:, s] * cfg.satiation_step_decay, satiation[:, s])
            hit = np.flatnonzero(consumed)
            now[hit, self.world.item_category[item[hit]]] += 1.0
            # The last session boundary: the gap's satiation decay and the satisfaction carried over.
            ended = window.boundary == n_steps - 1 - s
            now[ended] *= np.exp(-cfg.satiation_daily_decay * window.gap_days[ended])[:, None]
            satisfaction = np.where(ended, cfg.satisfaction_carry_over * satisfaction, satisfaction)
            satiation[:, s + 1] = now
        return satiation, satisfaction

    def _window(self, obs: dict[str, np.ndarray]) -> _Window:
        """Check `obs` and cut its window into warm start and steps (see `_Window`)."""
        if not isinstance(obs, dict):
            raise ArgumentError(f"obs must be a dict of batched arrays, got {describe(obs)}")
        for key in ("item_ids", "feedback", "session_step", "gap_days"):
            if key not in obs:
                raise ArgumentError(f"obs: missing key {key!r}; the keys are {sorted(obs)}")
        items = np.asarray(obs["item_ids"])
        feedback = np.asarray(obs["feedback"], dtype=np.float64)
        n_signals = len(self.world.signals)
        if items.ndim != 2 or items.dtype.kind not in "iu":
            raise ArgumentError(
                f"obs['item_ids'] must be a [N, L] integer array, got {items.dtype} {items.shape}"
            )
        n, length = items.shape
        if feedback.shape != (n, length, n_signals):
            raise ArgumentError(
                f"obs['feedback'] must have shape {(n, length, n_signals)} (signals {self.world.signals}), "
                f"got {feedback.shape}"
            )
        if items.size and (items.min() < 0 or items.max() > self.pad_id):
            raise ArgumentError(f"obs['item_ids'] must lie in [0, {self.pad_id}] (pad id {self.pad_id})")
        session_step = np.asarray(obs["session_step"]).reshape(-1)
        gap_days = np.asarray(obs["gap_days"], dtype=np.float64).reshape(-1)
        if len(session_step) != n or len(gap_days) != n:
            raise ArgumentError(f"obs['session_step'] and obs['gap_days'] must have shape ({n}, 1)")
        k = self.slate_size
        pad = items == self.pad_id
        n_pad = pad.sum(axis=1)
        real = length - n_pad
        history = self.world.config.history_len_at_start
        first_session = gap_days <= 0.0
        in_session = np.minimum(session_step.astype(np.int64) * k, real)
        # Warm-start entries: all of it when the window has padding (it then holds the whole episode),
        # what precedes the session's exposures in a full first-session window, none otherwise.
        n_warm = np.where(
            n_pad > 0,
            np.minimum(history, real),
            np.where(first_session, np.maximum(real - in_session, 0), 0),
        )
        position = np.arange(length)
        warm_mask = (position >= n_pad[:, None]) & (position < (n_pad + n_warm)[:, None])
        is_step = position >= (n_pad + n_warm)[:, None]
        # Warm-start entries gathered to the front of an [N, H] table.
        width = max(min(history, length), 1)
        order = np.argsort(~warm_mask, axis=1, kind="stable")[:, :width]
        warm = np.take_along_axis(warm_mask, order, axis=1)
        warm_items = np.where(warm, np.take_along_axis(items, order, axis=1), 0)
        warm_feedback = np.take_along_axis(feedback, order[..., None], axis=1)
        # Steps aligned at the end: entry j is position k - 1 - ((L - 1 - j) % k) of step (L - 1 - j) // k.
        n_steps = -(-length // k)
        front = n_steps * k - length
        items_p = np.concatenate([np.full((n, front), self.pad_id, dtype=items.dtype), items], axis=1)
        feedback_p = np.concatenate([np.zeros((n, front, n_signals)), feedback], axis=1)
        step_p = np.concatenate([np.zeros((n, front), dtype=bool), is_step], axis=1)
        step_mask = step_p.reshape(n, n_steps, k)
        # The last session boundary lies after the step `session_step` steps from the end (later sessions).
        boundary = np.where(first_session, -1, session_step.astype(np.int64))
        items_s = items_p.reshape(n, n_steps, k)
        feedback_s = feedback_p.reshape(n, n_steps, k, n_signals)
        clicked = (feedback_s[..., CLICK] > 0) & step_mask
        position_s = np.argmax(clicked, axis=2)
        safe = np.where(items_s == self.pad_id, 0, items_s)
        return _Window(
            items=safe,
            feedback=feedback_s,
            is_step=step_mask,
            whole=step_mask.all(axis=2),
            clicked=clicked,
            consumed=clicked.any(axis=2),
            position=position_s,
            item=np.take_along_axis(safe, position_s[..., None], axis=2)[..., 0],
            warm_items=warm_items,
            warm_feedback=warm_feedback,
            warm=warm,
            boundary=boundary,
            gap_days=np.maximum(gap_days, 0.0),
        )

    def _read_warm_start(self, mix: Mixture, window: _Window) -> None:
        """Condition on the warm-start history's noise-free watch times: for each of its items,
        `logit(watch / d_i) - w_q (q_i - 1/2) = w_ca <u_0, e_i>` (a Kalman step with `WARM_START_NOISE`).

        The items themselves were drawn with `P(i) ∝ exp(w_aff <u_0, e_i> + w_cb b_i)`; given the watch
        times, a Laplace step on that law adds under 0.001 of click AUC (docs/reference_policies.md),
        so it is left out.
        """
        cfg = self.world.config
        world = self.world
        items = window.warm_items  # [N, H], pad id replaced by a valid id where absent
        completion = np.clip(
            window.warm_feedback[..., WATCH_TIME] / world.item_duration_s[items], 1e-9, 1 - 1e-9
        )
        target = np.log(completion / (1.0 - completion)) - self.item_quality_logit[items]
        for h in range(items.shape[1]):
            idx = np.flatnonzero(window.warm[mix.owner, h])
            if len(idx):
                o = mix.owner[idx]
                a = cfg.completion_affinity_weight * world.item_embeddings[items[o, h]]
                mix.update(
                    idx, *gaussian_step(mix.mean[idx], mix.cov[idx], a, target[o, h], WARM_START_NOISE**2)
                )
                mix.prune()

    def _read_step(self, mix: Mixture, window: _Window, s: int, satiation: np.ndarray) -> None:
        """Condition on step `s` of the window (its slate and feedback), `satiation` [N, C] before it.

        Every law of the feedback to item i depends on u through `z = <u, e_i>` alone (click, watch
        time, like, follow, the hate of a refused item), so they are one-dimensional steps on z's
        marginal `N(mu, v)` (`mu = <m, e_i>`, `v = e_i^T P e_i`), mapped back in one rank-one step:
        `m' = m + P e_i (mu' - mu) / v`, `P' = P - P e_i e_i^T P (v - v') / v^2`. With K > 1 the choice
        involves the whole slate: a rank-K Laplace step (`choice_step`) comes first, the rest is on the
        consumed (or refused top) item.
        """
        cfg = self.world.config
        world = self.world
        idx = np.flatnonzero(window.whole[mix.owner, s])
        o = mix.owner[idx]
        item = window.item[o, s]  # the consumed item, else the top one
        consumed = window.consumed[o, s]
        feedback = window.feedback[o, s, window.position[o, s]]  # [A, F]
        offset = self.item_offset[item] - cfg.satiation_weight * satiation[o, world.item_category[item]]
        if self.slate_size > 1:
            items = window.items[o, s]  # [A, K]
            slate_offset = self.item_offset[items] - cfg.satiation_weight * np.take_along_axis(
                satiation[o], world.item_category[items], axis=1
            )
            mix.update(
                idx,
                *choice_step(
                    mix.mean[idx],
                    mix.cov[idx],
                    cfg.affinity_weight * world.item_embeddings[items],
                    slate_offset,
                    self.log_position_weights,
                    window.clicked[o, s],
                ),
            )
        mean, cov = mix.mean[idx], mix.cov[idx]
        e = world.item_embeddings[item]
        pe = (cov @ e[..., None])[..., 0]
        v0 = np.maximum((pe * e).sum(axis=1), 1e-12)
        mu0 = (mean * e).sum(axis=1)
        mu, v = mu0, v0
        log_evidence = np.zeros(len(idx))
        if self.slate_size == 1:
            mu, v, ev = scalar_bernoulli_step(mu, v, cfg.affinity_weight, offset, consumed)
            log_evidence += ev
        # A consumed item's watch time: logit(c) - w_q (q - 1/2) = w_ca z + completion_noise * logistic.
        completion = np.clip(feedback[:, WATCH_TIME] / world.item_duration_s[item], 1e-9, 1.0 - 1e-9)
        target = np.log(completion / (1.0 - completion)) - self.item_quality_logit[item]
        noise = cfg.completion_noise**2 * LOGISTIC_VARIANCE
        mu, v, log_evidence = select_rows(
            consumed,
            scalar_gaussian_step(mu, v, cfg.completion_affinity_weight, target, noise),
            mu,
            v,
            log_evidence,
        )
        if self.config.other_signals:
            like = scalar_bernoulli_step(
                mu, v, LIKE_LOGIT[2], LIKE_LOGIT[0] + LIKE_LOGIT[1] * completion, feedback[:, LIKE] > 0
            )
            mu, v, log_evidence = select_rows(consumed, like, mu, v, log_evidence)
            follow_offset = FOLLOW_LOGIT[0] + FOLLOW_LOGIT[2] * world.item_quality[item]
            follow = scalar_bernoulli_step(mu, v, FOLLOW_LOGIT[1], follow_offset, feedback[:, FOLLOW] > 0)
            mu, v, log_evidence = select_rows(consumed, follow, mu, v, log_evidence)
            hate_offset = REFUSAL_HATE_LOGIT[0] + satiation[o, world.item_category[item]]
            hate = scalar_bernoulli_step(mu, v, REFUSAL_HATE_LOGIT[1], hate_offset, feedback[:, HATE] > 0)
            mu, v, log_evidence = select_rows(~consumed, hate, mu, v, log_evidence)
        mean = mean + pe * ((mu - mu0) / v0)[:, None]
        cov = cov - ((v0 - v) / v0**2)[:, None, None] * pe[:, :, None] * pe[:, None, :]
        if self.config.drift:  # u <- normalize((1 - eta) u + eta e_i) after a consumption, at the mean
            eta = np.where(consumed, cfg.interest_drift, 0.0)[:, None]
            unit = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
            norm = np.linalg.norm((1.0 - eta) * unit + eta * e, axis=1, keepdims=True)
            mean = ((1.0 - eta) * mean + eta * e) / norm
            cov = cov * ((1.0 - eta) / norm)[..., None] ** 2
        mix.update(idx, mean, cov, log_evidence)

    # ------------------------------------------------------------------ predictions
    def predict(self, belief: Belief, items: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior click probability of items shown alone, and their expected experience.

        Per component, with `mu_i = w_aff <m, e_i> + w_cb b_i + b - w_sat s[c_i]` and
        `v_i = e_i^T P e_i`: `p_i = sigmoid(mu_i / sqrt(1 + pi w_aff^2 v_i / 8))` (probit approximation
        of `E[sigmoid]`); the median completion `c_i = sigmoid(mu^c_i / sqrt(1 + pi w_ca^2 v_i / 8))` with
        `mu^c_i = w_q (q_i - 1/2) + w_ca <m, e_i>`; the experience `p_i (2 c_i - 1) - (1 - p_i)
        no_click_penalty`. Both are averaged over the components with their weights.

        Args:
            belief: from `posterior`.
            items: [N, J] item ids to score for each user; None scores the catalogue (J = n_items).

        Returns:
            [N, J] click probabilities and [N, J] expected experiences.
        """
        cfg = self.world.config
        world = self.world
        if items is None:
            e = world.item_embeddings
            affinity = belief.mean @ e.T  # [A, n_items]
            spread = belief.cov.reshape(len(belief.cov), -1) @ self.item_outer.T  # e_i^T P e_i
            chosen = np.arange(world.n_items)[None, :]
        else:
            chosen = np.asarray(items)[belief.owner]  # [A, J]
            e = world.item_embeddings[chosen]  # [A, J, D]
            affinity = np.einsum("ad,ajd->aj", belief.mean, e)
            spread = np.einsum("ajd,ade,aje->aj", e, belief.cov, e)
        utility = cfg.affinity_weight * affinity + self.item_offset[chosen]
        if self.config.satiation:
            satiation = np.take_along_axis(
                belief.satiation[belief.owner],
                np.broadcast_to(world.item_category[chosen], affinity.shape),
                axis=1,
            )
            utility = utility - cfg.satiation_weight * satiation
        click = sigmoid(utility / np.sqrt(1.0 + np.pi * cfg.affinity_weight**2 * spread / 8.0))
        completion_logit = self.item_quality_logit[chosen] + cfg.completion_affinity_weight * affinity
        completion = sigmoid(
            completion_logit / np.sqrt(1.0 + np.pi * cfg.completion_affinity_weight**2 * spread / 8.0)
        )
        experience = click * (2.0 * completion - 1.0) - (1.0 - click) * cfg.no_click_penalty
        weights = belief.weights[:, None]
        return sum_per_user(belief.owner, weights * click), sum_per_user(belief.owner, weights * experience)

    def click_probabilities(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """[N, n_items] posterior probability that each item, shown alone, is clicked."""
        return self.predict(self.posterior(obs))[0]
