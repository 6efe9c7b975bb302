"""Logged data from the world: a logging policy recommends, the world's users respond.

Every shown item becomes one row, with the exact probability the logging policy had of showing it,
so off-policy estimators and offline agents can be checked against the world's truth.

Propensities of slates: positions are filled one after another without replacement. For each row,
`position_propensity` is the probability of that item at that position given the items above it,
and `propensity` the probability of the whole slate (the product over its positions), the same on
every row of the slate. With `slate_size=1` both equal the probability of the item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from recsim_env.data.validate import SECONDS_PER_DAY
from recsim_env.envs.seqrec import SeqRecVectorEnv
from recsim_env.rollout import StepObserver, VectorStep, run_episodes
from recsim_env.world.world import UserWorld

LOGGING_POLICIES = ("uniform", "popularity", "softmax", "epsilon-greedy")
SECONDS_PER_STEP = 30.0


@dataclass(frozen=True, kw_only=True)
class LoggingPolicy:
    """A stochastic policy with known probabilities, over item scores (default: world popularity).

    - `uniform`: every remaining item alike.
    - `popularity`: proportional to the item's popularity (its mean click probability).
    - `softmax`: proportional to exp(score / temperature), score = log popularity by default.
    - `epsilon-greedy`: the best-scored remaining item with probability 1 - epsilon, else uniform.
    """

    kind: str
    """One of `LOGGING_POLICIES`."""
    scores: np.ndarray
    """[n_items] item scores of the production model being logged (popularity for `popularity`)."""
    temperature: float = 1.0
    """Softmax temperature (`softmax` only)."""
    epsilon: float = 0.1
    """Exploration rate (`epsilon-greedy` only)."""

    def __post_init__(self) -> None:
        if self.kind not in LOGGING_POLICIES:
            raise ValueError(f"argument 'policy' must be one of {list(LOGGING_POLICIES)}, got {self.kind!r}")
        if self.temperature <= 0:
            raise ValueError(f"argument 'temperature' must be positive, got {self.temperature}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"argument 'epsilon' must lie in [0, 1], got {self.epsilon}")
        if self.kind == "popularity" and np.any(self.scores <= 0):
            raise ValueError("the 'popularity' logging policy needs positive scores")

    @classmethod
    def for_world(cls, kind: str, world: UserWorld, **kwargs) -> LoggingPolicy:
        """The logging policy `kind` over the world's item popularity."""
        popularity = world.item_popularity()
        scores = popularity if kind == "popularity" else np.log(popularity)
        return cls(kind=kind, scores=scores, **kwargs)

    def probabilities(self, excluded: np.ndarray) -> np.ndarray:
        """[N, n_items] distribution of the next position, given `excluded` [N, n_items] items already placed."""
        allowed = ~excluded
        if self.kind == "uniform":
            weights = allowed.astype(np.float64)
        elif self.kind == "popularity":
            weights = np.where(allowed, self.scores, 0.0)
        elif self.kind == "softmax":
            logits = self.scores / self.temperature
            weights = np.where(allowed, np.exp(logits - logits.max()), 0.0)
        else:  # epsilon-greedy
            remaining = allowed.sum(axis=1, keepdims=True)
            best = np.argmax(np.where(allowed, self.scores, -np.inf), axis=1)
            weights = allowed * (self.epsilon / remaining)
            weights[np.arange(len(best)), best] += 1.0 - self.epsilon
            return weights
        return weights / weights.sum(axis=1, keepdims=True)

    def sample(self, n_users: int, n_items: int, slate_size: int, rng: np.random.Generator):
        """Slates [N, K] and their per-position conditional probabilities [N, K]."""
        excluded = np.zeros((n_users, n_items), dtype=bool)
        slates = np.empty((n_users, slate_size), dtype=np.int64)
        probabilities = np.empty((n_users, slate_size))
        rows = np.arange(n_users)
        for k in range(slate_size):
            p = self.probabilities(excluded)
            cdf = np.cumsum(p, axis=1)
            u = rng.random(n_users) * cdf[:, -1]
            choice = np.minimum((cdf <= u[:, None]).sum(axis=1), n_items - 1)
            slates[:, k] = choice
            probabilities[:, k] = p[rows, choice]
            excluded[rows, choice] = True
        return slates, probabilities


class LoggedStep(NamedTuple):
    """One batched step of `generate_logs`, for writers of episode formats (e.g. Minari datasets).

    The first one describes the reset: every sub-env `started`, none `live`. `observation` is what each
    sub-env returned; where `started`, it is the first observation of the episode `episode` (the
    sub-env was reset and its action ignored), else the observation after its logged action.
    """

    observation: dict[str, np.ndarray]
    """[N, ...] each sub-env's observation after this step."""
    started: np.ndarray
    """[N] bool: sub-envs that start an episode here."""
    episode: np.ndarray
    """[N] int64: the logged user (episode) each sub-env's observation belongs to."""
    live: np.ndarray
    """[M] int64: the sub-envs whose step is logged (the interaction rows), in row order."""
    rewards: np.ndarray
    """[N] the env's rewards."""
    terminated: np.ndarray
    """[N] bool."""
    truncated: np.ndarray
    """[N] bool."""
    info: dict[str, Any]
    """The vector env's info of this step."""
    rows: dict[str, np.ndarray]
    """This step's interaction rows, K per live sub-env (the `generate_logs` columns; empty at the reset)."""


def generate_logs(
    policy: LoggingPolicy,
    *,
    steps: int,
    seed: int = 0,
    num_envs: int = 256,
    sessions_per_user: int = 3,
    on_steps: Callable[[int], None] | None = None,
    on_step: Callable[[LoggedStep], None] | None = None,
    **env_kwargs,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Run `policy` in the world for `steps` user-steps; returns (interactions, items, users) frames.

    Each episode is one logged user (`user_id` counts episodes; `world_user_id` in the users table
    says which member of the population it was) followed for `sessions_per_user` sessions. The
    interactions frame has one row per shown item with the columns user_id, item_id, timestamp
    (seconds), session_id, position, slate_id, propensity, position_propensity and the feedback
    signals. Deterministic for a seed. `on_step`, if given, sees every step (`LoggedStep`).
    """
    if steps < 1:
        raise ValueError(f"argument 'steps' must be positive, got {steps}")
    env = SeqRecVectorEnv(num_envs=num_envs, sessions_per_episode=sessions_per_user, **env_kwargs)
    world = env.user_model
    logger = _Logger(env, policy, np.random.default_rng(seed), on_steps, on_step)
    run_episodes(env, act=logger.act, observer=logger, seed=seed, n_steps=steps)
    chunks, world_user_of = logger.chunks, logger.world_user_of

    interactions = pd.DataFrame({key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]})
    logged = np.unique(interactions["user_id"].to_numpy())
    world_ids = np.array([world_user_of[int(u)] for u in logged], dtype=np.int64)
    users = pd.DataFrame({"user_id": logged, "world_user_id": world_ids})
    features = world.user_features[world_ids]
    for j in range(features.shape[1]):
        users[f"feature_{j}"] = features[:, j]
    items = pd.DataFrame(
        {
            "item_id": np.arange(world.n_items),
            "category": world.item_category,
            "duration_s": world.item_duration_s,
        }
    )
    return interactions, items, users


class _Logger(StepObserver):
    """`generate_logs`' policy and observer: samples slates with their probabilities, and turns every
    live step into interaction rows on the users' clocks (one generator serves both, in step order)."""

    def __init__(
        self,
        env: SeqRecVectorEnv,
        policy: LoggingPolicy,
        rng: np.random.Generator,
        on_steps: Callable[[int], None] | None,
        on_step: Callable[[LoggedStep], None] | None,
    ) -> None:
        self.env, self.policy, self.rng = env, policy, rng
        self.on_steps, self.on_logged_step = on_steps, on_step
        self.world = env.user_model
        self.slate_size = env.config.slate_size
        num_envs = env.num_envs
        self.logged_user = np.arange(num_envs)  # logged user id of each sub-env's current episode
        self.next_user = num_envs
        self.session_ids = np.arange(num_envs)
        self.next_session = num_envs
        self.chunks: list[dict[str, np.ndarray]] = []
        self.slate_counter = 0
        self.slates = self.position_p = np.zeros((0, 0))

    def on_reset(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        num_envs = self.env.num_envs
        self.world_user_of = dict(enumerate(self.env.user_state.user_ids.tolist()))
        self.clock = self.rng.uniform(0.0, 30.0 * SECONDS_PER_DAY, size=num_envs)  # users join over a month
        if self.on_logged_step is not None:
            none = np.zeros(num_envs, dtype=bool)
            users = self.logged_user.copy()
            self.on_logged_step(
                LoggedStep(obs, ~none, users, np.zeros(0, np.int64), 0.0 * none, none, none, info, {})
            )

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        n_envs, n_items = self.env.num_envs, self.world.n_items
        self.slates, self.position_p = self.policy.sample(n_envs, n_items, self.slate_size, self.rng)
        return self.slates[:, 0] if self.slate_size == 1 else self.slates

    def on_step(self, step: VectorStep) -> None:
        slates, position_p, slate_size = self.slates, self.position_p, self.slate_size
        signals = self.world.signals
        info, just_reset = step.info, step.reset
        for i in np.flatnonzero(just_reset):  # these sub-envs were reset by this step: a new user
            self.world_user_of[int(self.logged_user[i])] = int(self.env.user_state.user_ids[i])
        live = np.flatnonzero(step.live)
        # The newest K history entries of the observation are this step's slate and its feedback.
        feedback = step.obs["feedback"][live, -slate_size:].reshape(-1, len(signals))
        self.chunks.append(
            {
                "user_id": np.repeat(self.logged_user[live], slate_size),
                "item_id": slates[live].ravel(),
                "timestamp": np.repeat(self.clock[live], slate_size),
                "session_id": np.repeat(self.session_ids[live], slate_size),
                "position": np.tile(np.arange(slate_size), len(live)),
                "slate_id": np.repeat(self.slate_counter + live, slate_size),
                "propensity": np.repeat(np.prod(position_p[live], axis=1), slate_size),
                "position_propensity": position_p[live].ravel(),
                **{name: feedback[:, j] for j, name in enumerate(signals)},
            }
        )
        if self.on_logged_step is not None:
            self.on_logged_step(
                LoggedStep(
                    step.obs,
                    just_reset.copy(),
                    self.logged_user.copy(),
                    live,
                    step.rewards,
                    step.terminated,
                    step.truncated,
                    info,
                    self.chunks[-1],
                )
            )
        self.slate_counter += self.env.num_envs
        if self.on_steps is not None:
            self.on_steps(len(live))
        self.clock += SECONDS_PER_STEP
        if "_return_gap" in info:
            ended = np.flatnonzero(info["_return_gap"] & ~just_reset)
            self.clock[ended] += info["return_gap"][ended] * SECONDS_PER_DAY
            self.session_ids[ended] = self.next_session + np.arange(len(ended))
            self.next_session += len(ended)
        done = np.flatnonzero(step.done)
        self.logged_user[done] = self.next_user + np.arange(len(done))
        self.next_user += len(done)
        self.clock[done] = self.rng.uniform(0.0, 30.0 * SECONDS_PER_DAY, size=len(done))
        self.session_ids[done] = self.next_session + np.arange(len(done))
        self.next_session += len(done)


def log_world(
    policy: str,
    *,
    steps: int,
    seed: int = 0,
    world_config=None,
    epsilon: float = 0.1,
    temperature: float = 1.0,
    slate_size: int = 1,
    sessions_per_user: int = 3,
    num_envs: int = 256,
    progress: bool = True,
    on_step: Callable[[LoggedStep], None] | None = None,
):
    """Log `steps` user-steps of the logging policy `policy` in the world, as `LoggedInteractions`.

    The catalogue is the world's (every item has an index, shown or not); the item table holds each
    item's category and duration, the user table each logged user's population id and features.
    `on_step` sees every step of the run (`generate_logs`).
    """
    from tqdm.auto import tqdm

    world = UserWorld(world_config)
    logger = LoggingPolicy.for_world(policy, world, epsilon=epsilon, temperature=temperature)
    with tqdm(total=steps, desc=f"logging {policy}", unit="step", disable=not progress) as bar:
        interactions, items, users = generate_logs(
            logger,
            steps=steps,
            seed=seed,
            num_envs=num_envs,
            sessions_per_user=sessions_per_user,
            on_steps=bar.update,
            on_step=on_step,
            slate_size=slate_size,
            world_config=world.config,
        )
    return world_logs(world, interactions, items, users, policy=policy)


def world_logs(
    world: UserWorld, interactions: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, *, policy: str
):
    """The frames of `generate_logs` (or a subset of their rows) as `LoggedInteractions` named after the
    logging policy `policy`: the world's signals are the feedback columns, its whole catalogue the items."""
    from recsim_env.data import LoggedInteractions

    return LoggedInteractions.from_frame(
        interactions,
        feedback_cols=world.signals,
        item_catalogue=np.arange(world.n_items),
        items=items,
        users=users,
        name=f"world-{policy}",
        source=f"world log ({policy})",
    )
