"""Roll policies out in the native vector environment and summarise what users did.

The one rollout loop of the package, for any `recsim_env.policies.Policy` (reference policies,
oracles and trained agents alike): the policy is reseeded with `policy.seed(seed)`, called through
`recsim_env.policies.act_slates` (with the environment's `user_state` only if it reads it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from recsim_env.checks import check_integer, describe
from recsim_env.envs.core import MAX_NUM_ENVS
from recsim_env.envs.seqrec import SeqRecVectorEnv
from recsim_env.errors import ArgumentError
from recsim_env.policies.contract import act_slates, check_policy, reads_user_state

if TYPE_CHECKING:
    from recsim_env.policies.contract import Policy


@dataclass(frozen=True)
class RolloutStats:
    """Per-policy summary of `episodes` complete episodes."""

    policy: str
    episodes: int
    mean_return: float
    return_ci95: tuple[float, float]
    """Normal-approximation 95% interval of the mean return."""
    click_rate: float
    """Clicks per step."""
    session_length: float
    """Steps per session."""
    return_gap_days: float
    """Mean days until the user comes back, over all session ends."""
    return_per_session: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EpisodeRecords:
    """What `rollout_episodes` kept of `episodes` complete episodes, in the order they finished."""

    returns: np.ndarray
    """[E] each episode's return."""
    steps: np.ndarray
    """[E] steps of each episode."""
    clicks: np.ndarray
    """[E] clicks of each episode (0 when the user model has no `click` signal)."""
    sessions: np.ndarray
    """[E] sessions that ended in each episode."""
    gap_days: np.ndarray
    """[E] sum over each episode's session ends of the days until the user came back."""
    session_lengths: np.ndarray
    """[S] steps of every session that ended, episode by episode."""
    return_gaps: np.ndarray
    """[S] days until the user came back at each of those session ends."""
    first_items: list[np.ndarray]
    """Per episode, `[steps]` the item at the first slate position of each step."""
    first_consumed: list[np.ndarray]
    """Per episode, `[steps]` bool: the user consumed (clicked) the item at the first slate position."""
    n_items: int
    """The catalogue's size."""

    def stats(self, policy_name: str) -> RolloutStats:
        """The summary `rollout` reports."""
        returns = self.returns
        half_width = 1.96 * returns.std(ddof=1) / np.sqrt(len(returns)) if len(returns) > 1 else float("nan")
        sessions = self.sessions.sum()
        return RolloutStats(
            policy=policy_name,
            episodes=len(returns),
            mean_return=float(returns.mean()),
            return_ci95=(float(returns.mean() - half_width), float(returns.mean() + half_width)),
            click_rate=float(self.clicks.sum() / self.steps.sum()),
            session_length=float(self.steps.sum() / sessions),
            return_gap_days=float(self.gap_days.sum() / sessions),
            return_per_session=float(returns.sum() / sessions),
        )


def rollout(
    policy: Policy,
    *,
    n_episodes: int,
    seed: int = 0,
    deterministic: bool = False,
    num_envs: int = 64,
    on_episode: Callable[[int], None] | None = None,
    **env_kwargs,
) -> RolloutStats:
    """Run `policy` (a `recsim_env.policies.Policy`) for `n_episodes` episodes of `SeqRec-v0`.

    Deterministic for a seed: sub-env i is seeded `seed + i` and the policy is reseeded with
    `policy.seed(seed)` before the first step. `deterministic` is passed to every `act`. Each
    sub-env contributes a fixed share of the episodes, so the average is not biased toward short
    episodes (and there are at most `n_episodes` sub-envs). `on_episode(k)` is called as k more complete.
    """
    records = rollout_episodes(
        policy,
        n_episodes=n_episodes,
        seed=seed,
        deterministic=deterministic,
        num_envs=num_envs,
        on_episode=on_episode,
        **env_kwargs,
    )
    return records.stats(getattr(policy, "name", type(policy).__name__))


def rollout_episodes(
    policy: Policy,
    *,
    n_episodes: int,
    seed: int = 0,
    deterministic: bool = False,
    num_envs: int = 64,
    on_episode: Callable[[int], None] | None = None,
    **env_kwargs,
) -> EpisodeRecords:
    """`rollout`'s loop, keeping each episode's figures, every session's length and return gap, and the
    items shown (the same episodes as `rollout` for the same arguments)."""
    n_episodes = check_integer("n_episodes", n_episodes, 1)
    seed = check_integer("seed", seed, 0)
    num_envs = check_integer("num_envs", num_envs, 1, MAX_NUM_ENVS)
    check_policy(policy)
    if not isinstance(deterministic, bool):
        raise ArgumentError(f"deterministic must be a bool, got {describe(deterministic)}")
    if on_episode is not None and not callable(on_episode):
        raise ArgumentError(f"on_episode must be callable or None, got {describe(on_episode)}")
    num_envs = min(num_envs, n_episodes)
    env = SeqRecVectorEnv(num_envs=num_envs, **env_kwargs)
    click = env.signals.index("click") if "click" in env.signals else None
    policy.seed(seed)
    reads_state = reads_user_state(policy)
    obs, _ = env.reset(seed=seed)
    # Each sub-env owes a fixed number of episodes: keeping "the first n to finish" would favour
    # short episodes.
    quota = np.full(num_envs, n_episodes // num_envs)
    quota[: n_episodes % num_envs] += 1
    episode_return = np.zeros(num_envs)
    episode_steps = np.zeros(num_envs)
    episode_clicks = np.zeros(num_envs)
    episode_sessions = np.zeros(num_envs)
    episode_gap = np.zeros(num_envs)
    session_steps = np.zeros(num_envs, dtype=np.int64)
    # The running episode's sessions (length, gap) and first-position items, kept until it ends.
    open_sessions: list[list[tuple[int, float]]] = [[] for _ in range(num_envs)]
    open_items: list[list[int]] = [[] for _ in range(num_envs)]
    open_consumed: list[list[bool]] = [[] for _ in range(num_envs)]
    finished: list[tuple[float, float, float, float, float]] = []
    session_lengths: list[int] = []
    return_gaps: list[float] = []
    first_items: list[np.ndarray] = []
    first_consumed: list[np.ndarray] = []
    just_reset = np.zeros(num_envs, dtype=bool)
    while len(finished) < n_episodes:
        user_state = env.user_state if reads_state else None
        actions = act_slates(policy, obs, deterministic=deterministic, user_state=user_state)  # [N, K]
        obs, rewards, terminated, truncated, info = env.step(
            actions[:, 0] if env.config.slate_size == 1 else actions
        )
        live = ~just_reset  # a sub-env that was reset this step took no real step
        episode_return += np.where(live, rewards, 0.0)
        episode_steps += live
        session_steps += live
        shown = np.asarray(actions).reshape(num_envs, -1)[:, 0]
        consumed_first = np.asarray(info["chosen_position"]) == 0
        for i in np.flatnonzero(live):
            open_items[i].append(int(shown[i]))
            open_consumed[i].append(bool(consumed_first[i]))
        if click is not None:
            episode_clicks += np.where(live, info["feedback"][:, click], 0.0)
        if "_return_gap" in info:
            ended = info["_return_gap"] & live
            episode_sessions += ended
            episode_gap += np.where(ended, info["return_gap"], 0.0)
            for i in np.flatnonzero(ended):
                open_sessions[i].append((int(session_steps[i]), float(info["return_gap"][i])))
            session_steps[ended] = 0
        done = terminated | truncated
        counted = np.flatnonzero(done & (quota > 0))
        for i in counted:
            finished.append(
                (episode_return[i], episode_steps[i], episode_clicks[i], episode_sessions[i], episode_gap[i])
            )
            session_lengths.extend(length for length, _ in open_sessions[i])
            return_gaps.extend(gap for _, gap in open_sessions[i])
            first_items.append(np.asarray(open_items[i], dtype=np.int64))
            first_consumed.append(np.asarray(open_consumed[i], dtype=bool))
        quota[counted] -= 1
        if on_episode is not None and len(counted):
            on_episode(len(counted))
        for array in (episode_return, episode_steps, episode_clicks, episode_sessions, episode_gap):
            array[done] = 0.0
        session_steps[done] = 0
        for i in np.flatnonzero(done):
            open_sessions[i], open_items[i], open_consumed[i] = [], [], []
        just_reset = done
    returns, steps, clicks, sessions, gaps = (np.array(column) for column in zip(*finished))
    return EpisodeRecords(
        returns=returns,
        steps=steps,
        clicks=clicks,
        sessions=sessions,
        gap_days=gaps,
        session_lengths=np.asarray(session_lengths, dtype=np.int64),
        return_gaps=np.asarray(return_gaps, dtype=np.float64),
        first_items=first_items,
        first_consumed=first_consumed,
        n_items=int(env.user_model.n_items),
    )
