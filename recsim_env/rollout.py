"""Roll policies out in a vector environment: the package's one rollout loop, and what users did.

`run_episodes` is the loop every rollout of the project runs on, for a `recsim_env.policies.Policy`
(reference policies, oracles and trained agents alike; reseeded with `policy.seed(seed)`, called
through `recsim_env.policies.act_slates` with the environment's `user_state` only if it reads it) or
any batched `act(obs)`. It owns reset, step, autoreset and the budget, and hands every step to an
observer (`StepObserver`) that keeps what its caller records. `rollout` and `rollout_episodes` are
its summary of `SeqRec-v0` episodes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from gymnasium.vector import AutoresetMode

from recsim_env.checks import check_integer, describe
from recsim_env.envs.core import MAX_NUM_ENVS
from recsim_env.envs.seqrec import SeqRecVectorEnv
from recsim_env.errors import ArgumentError
from recsim_env.policies.contract import act_slates, check_policy, reads_user_state

if TYPE_CHECKING:
    from gymnasium.vector import VectorEnv

    from recsim_env.policies.contract import Policy

QUOTAS = ("per_env", "first_done")
"""How `run_episodes` counts `n_episodes`: a fixed share per sub-env, or the first to end."""


class VectorStep(NamedTuple):
    """One `env.step` of `run_episodes` over N sub-envs, as its observer sees it."""

    obs: Any
    """[N, ...] the observation after the step (a reset sub-env's is its new episode's first)."""
    actions: Any
    """The actions stepped: what `act` returned; for a `policy`, `[N, K]` slates (`[N]` items in an env
    of single items)."""
    rewards: np.ndarray
    """[N] the env's rewards."""
    terminated: np.ndarray
    """[N] bool."""
    truncated: np.ndarray
    """[N] bool."""
    info: dict[str, Any]
    """The vector env's info of this step."""
    live: np.ndarray
    """[N] bool: sub-envs that took a real step within the budget: the steps to record."""
    reset: np.ndarray
    """[N] bool: sub-envs this step reset (NEXT_STEP autoreset); their action was ignored."""
    counted: np.ndarray
    """[N] bool: sub-envs whose episode ended here and counts toward `n_episodes` (none for step budgets)."""

    @property
    def done(self) -> np.ndarray:
        """[N] bool: episodes that ended at this step, counted or not."""
        return self.terminated | self.truncated


class StepObserver:
    """What `run_episodes` reports to: the first observation, then every step. Subclasses keep what
    they record; these defaults keep nothing."""

    def on_reset(self, obs: Any, info: dict[str, Any]) -> None:
        """The observation and info of the seeded reset, before the first step."""

    def on_step(self, step: VectorStep) -> None:
        """One step (see `VectorStep`): record `step.live` rows, close episodes at `step.done`."""


def run_episodes(
    env: VectorEnv,
    *,
    observer: StepObserver,
    seed: int,
    policy: Policy | None = None,
    act: Callable[[Mapping[str, np.ndarray]], Any] | None = None,
    deterministic: bool = False,
    n_episodes: int | None = None,
    quota: str = "per_env",
    n_steps: int | None = None,
    exact_steps: bool = True,
    n_vector_steps: int | None = None,
) -> None:
    """Reset `env` with `seed`, then step it until the budget is spent, reporting to `observer`.

    Actions come from `policy` (reseeded with `policy.seed(seed)` before the reset, called through
    `act_slates` with `env.user_state` only if it reads the hidden state, and passed `deterministic`;
    `[N]` items go to an env of single items) or from `act(obs)`, whose answer is stepped as it is.

    Autoreset follows the env's `metadata["autoreset_mode"]` (NEXT_STEP when absent): under NEXT_STEP
    the step after an episode ends resets that sub-env, which takes no real step (`VectorStep.reset`,
    not `live`); under SAME_STEP every sub-env steps every time.

    The budget is exactly one of:
        n_episodes: complete episodes. `quota="per_env"`: sub-env i owes `n // N` episodes (one more
            for the first `n % N`), so the count is not biased toward short episodes; sub-envs that
            have paid keep stepping (live, not counted) until all have. `"first_done"`: the first n
            episodes to end, by sub-env index within a step.
        n_steps: live sub-env steps. `exact_steps`: the last step's live sub-envs beyond the n-th
            are not live (so exactly n are); False keeps them all (n or a few more).
        n_vector_steps: calls of `env.step`, live or not.
    """
    budgets = {"n_episodes": n_episodes, "n_steps": n_steps, "n_vector_steps": n_vector_steps}
    given = [name for name, value in budgets.items() if value is not None]
    if len(given) != 1:
        raise ArgumentError(f"run_episodes takes exactly one of {', '.join(budgets)}, got {given or 'none'}")
    remaining = check_integer(given[0], budgets[given[0]], 1)
    seed = check_integer("seed", seed, 0)
    if quota not in QUOTAS:
        raise ArgumentError(f"quota must be one of {list(QUOTAS)}, got {describe(quota)}")
    for name, flag in (("deterministic", deterministic), ("exact_steps", exact_steps)):
        if not isinstance(flag, bool):
            raise ArgumentError(f"{name} must be a bool, got {describe(flag)}")
    if (policy is None) == (act is None):
        raise ArgumentError("run_episodes takes exactly one of policy and act")
    if not isinstance(observer, StepObserver):
        raise ArgumentError(f"observer must be a StepObserver, got {describe(observer)}")
    mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        raise ArgumentError(f"env: autoreset mode {mode} is not supported (NEXT_STEP or SAME_STEP)")
    if policy is not None:
        act = _policy_act(env, check_policy(policy), deterministic)
        policy.seed(seed)
    n = env.num_envs
    owed = np.full(n, remaining // n)
    owed[: remaining % n] += 1
    obs, info = env.reset(seed=seed)
    observer.on_reset(obs, info)
    reset = np.zeros(n, dtype=bool)
    while remaining > 0:
        actions = act(obs)
        obs, rewards, terminated, truncated, info = env.step(actions)
        done = terminated | truncated
        live = ~reset
        counted = np.zeros(n, dtype=bool)
        if n_episodes is not None:
            if quota == "per_env":
                counted = done & (owed > 0)
                owed[counted] -= 1
            else:
                counted[np.flatnonzero(done)[:remaining]] = True
            remaining -= int(counted.sum())
        elif n_steps is not None:
            if exact_steps:
                live[np.flatnonzero(live)[remaining:]] = False
            remaining -= int(live.sum())
        else:
            remaining -= 1
        observer.on_step(VectorStep(obs, actions, rewards, terminated, truncated, info, live, reset, counted))
        reset = done if mode == AutoresetMode.NEXT_STEP else np.zeros(n, dtype=bool)


def _policy_act(
    env: VectorEnv, policy: Policy, deterministic: bool
) -> Callable[[Mapping[str, np.ndarray]], Any]:
    """`act(obs)` of a `Policy` in `env`: `[N, K]` slates, or `[N]` items for an env of single items."""
    reads_state = reads_user_state(policy)
    single = env.single_action_space.shape == ()

    def act(obs: Mapping[str, np.ndarray]) -> np.ndarray:
        user_state = env.user_state if reads_state else None
        slates = act_slates(policy, obs, deterministic=deterministic, user_state=user_state)  # [N, K]
        return slates[:, 0] if single else slates

    return act


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
    env = SeqRecVectorEnv(num_envs=min(num_envs, n_episodes), **env_kwargs)
    recorder = _EpisodeRecorder(env, on_episode)
    run_episodes(
        env, policy=policy, observer=recorder, seed=seed, deterministic=deterministic, n_episodes=n_episodes
    )
    return recorder.records()


class _EpisodeRecorder(StepObserver):
    """`rollout_episodes`' observer: running figures per sub-env, kept when a counted episode ends."""

    def __init__(self, env: SeqRecVectorEnv, on_episode: Callable[[int], None] | None) -> None:
        n = env.num_envs
        self.n_items = int(env.user_model.n_items)
        self.click = env.signals.index("click") if "click" in env.signals else None
        self.on_episode = on_episode
        self.episode_return = np.zeros(n)
        self.episode_steps = np.zeros(n)
        self.episode_clicks = np.zeros(n)
        self.episode_sessions = np.zeros(n)
        self.episode_gap = np.zeros(n)
        self.session_steps = np.zeros(n, dtype=np.int64)
        # The running episode's sessions (length, gap) and first-position items, kept until it ends.
        self.open_sessions: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        self.open_items: list[list[int]] = [[] for _ in range(n)]
        self.open_consumed: list[list[bool]] = [[] for _ in range(n)]
        self.finished: list[tuple[float, float, float, float, float]] = []
        self.session_lengths: list[int] = []
        self.return_gaps: list[float] = []
        self.first_items: list[np.ndarray] = []
        self.first_consumed: list[np.ndarray] = []

    def on_step(self, step: VectorStep) -> None:
        live, info = step.live, step.info
        self.episode_return += np.where(live, step.rewards, 0.0)
        self.episode_steps += live
        self.session_steps += live
        shown = np.asarray(step.actions).reshape(len(live), -1)[:, 0]
        consumed_first = np.asarray(info["chosen_position"]) == 0
        for i in np.flatnonzero(live):
            self.open_items[i].append(int(shown[i]))
            self.open_consumed[i].append(bool(consumed_first[i]))
        if self.click is not None:
            self.episode_clicks += np.where(live, info["feedback"][:, self.click], 0.0)
        if "_return_gap" in info:
            ended = info["_return_gap"] & live
            self.episode_sessions += ended
            self.episode_gap += np.where(ended, info["return_gap"], 0.0)
            for i in np.flatnonzero(ended):
                self.open_sessions[i].append((int(self.session_steps[i]), float(info["return_gap"][i])))
            self.session_steps[ended] = 0
        counted = np.flatnonzero(step.counted)
        for i in counted:
            self.finished.append(
                (
                    self.episode_return[i],
                    self.episode_steps[i],
                    self.episode_clicks[i],
                    self.episode_sessions[i],
                    self.episode_gap[i],
                )
            )
            self.session_lengths.extend(length for length, _ in self.open_sessions[i])
            self.return_gaps.extend(gap for _, gap in self.open_sessions[i])
            self.first_items.append(np.asarray(self.open_items[i], dtype=np.int64))
            self.first_consumed.append(np.asarray(self.open_consumed[i], dtype=bool))
        if self.on_episode is not None and len(counted):
            self.on_episode(len(counted))
        done = step.done
        for array in (
            self.episode_return,
            self.episode_steps,
            self.episode_clicks,
            self.episode_sessions,
            self.episode_gap,
        ):
            array[done] = 0.0
        self.session_steps[done] = 0
        for i in np.flatnonzero(done):
            self.open_sessions[i], self.open_items[i], self.open_consumed[i] = [], [], []

    def records(self) -> EpisodeRecords:
        returns, steps, clicks, sessions, gaps = (np.array(column) for column in zip(*self.finished))
        return EpisodeRecords(
            returns=returns,
            steps=steps,
            clicks=clicks,
            sessions=sessions,
            gap_days=gaps,
            session_lengths=np.asarray(self.session_lengths, dtype=np.int64),
            return_gaps=np.asarray(self.return_gaps, dtype=np.float64),
            first_items=self.first_items,
            first_consumed=self.first_consumed,
            n_items=self.n_items,
        )
