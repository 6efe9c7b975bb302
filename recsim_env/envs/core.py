"""Batched episodes over a `UserModel`: the one implementation behind the single and the vector env.

`EpisodeBatch` owns N users' episodes: their observable histories, session counters and the block of
uniform random numbers each episode was dealt at reset. `SeqRecEnv` is an `EpisodeBatch` with N = 1;
`SeqRecVectorEnv` is one with N = num_envs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
from gymnasium import spaces

from recsim_env.checks import check_bool, check_config_fields, check_integer, check_real, describe
from recsim_env.errors import ActionError, ArgumentError
from recsim_env.user_model import PreparedStart, StartOfEpisode, UserModel
from recsim_env.world.config import MAX_ITEMS

MAX_HISTORY_LEN = 10_000
"""Longest observed history (`history_len`); also the largest `slate_size`."""
MAX_EPISODE_STEPS = 1_000_000
"""Cap on `max_steps * sessions_per_episode`, the steps of randomness dealt to each episode at reset."""
SLATE_SORT_MAX_ITEMS = 500
"""Largest catalogue whose `SlateSpace.sample` sorts a score per item (above it: draws and redraws)."""
MAX_NUM_ENVS = 2**17
"""Most sub-envs (`num_envs`) one native vector env steps."""
MAX_BATCH_VALUES = 2**26
"""Cap on each per-user array a batch of episodes holds (values, ~512 MiB as float64): `num_envs` times
`history_len * signals` (the observation), `max_steps * sessions_per_episode * step uniforms` (the
randomness dealt at reset) or the values a user model allocates per user when users start
(`start_values_per_user`: `n_items` for a score per item and user, unless the model says fewer)."""


@dataclass(frozen=True, kw_only=True)
class SeqRecConfig:
    """Arguments of the `SeqRec` environments that do not depend on which users they simulate."""

    history_len: int = 20
    """L: how many recent exposures the observation holds (older ones fall out; pad id = n_items)."""
    slate_size: int = 1
    """K: items recommended per step; 1 gives a `Discrete` action, more a `MultiDiscrete` slate."""
    reward: str | Mapping[str, float] = "click"
    """A signal name, or weights over signals, e.g. {"click": 1.0, "watch_time": 0.01}."""
    max_steps: int = 50
    """Steps after which a session is cut short (the episode is truncated if it is the last session)."""
    sessions_per_episode: int = 1
    """Sessions of one user per episode; > 1 puts the gap since the last session in play."""
    retention_weight: float = 0.0
    """Reward added at each session end: retention_weight / (1 + return gap in days)."""
    user_features: bool = False
    """Include the user model's observable user features in the observation."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Reserved for arguments of other user models; must be empty here."""

    def __post_init__(self) -> None:
        """Check every argument (`ArgumentError` naming it); numbers are stored as plain `int` / `float`."""

        check_group = functools.partial(check_config_fields, self, prefix="", store=True)
        check_group(("history_len", "slate_size"), check_integer, low=1, high=MAX_HISTORY_LEN)
        check_group(("max_steps", "sessions_per_episode"), check_integer, low=1, high=MAX_EPISODE_STEPS)
        if self.slate_size > self.history_len:
            raise ArgumentError(
                f"history_len ({self.history_len}) must be at least 'slate_size' ({self.slate_size})"
            )
        if self.max_steps * self.sessions_per_episode > MAX_EPISODE_STEPS:
            raise ArgumentError(
                f"max_steps x sessions_per_episode must be at most {MAX_EPISODE_STEPS:,}, got "
                f"{self.max_steps:,} x {self.sessions_per_episode:,}"
            )
        check_group(("retention_weight",), check_real)
        check_group(("user_features",), check_bool)
        object.__setattr__(self, "reward", check_reward(self.reward))
        if not isinstance(self.extra, Mapping):
            raise ArgumentError(f"extra must be an empty dict, got {describe(self.extra)}")
        if self.extra:
            raise ArgumentError(f"extra: unknown environment arguments {describe(list(self.extra))}")

    def reward_weights(self, signals: Sequence[str]) -> np.ndarray:
        """[F] weights of the reward over `signals`; unknown names raise `ArgumentError` naming `reward`."""
        weights = {self.reward: 1.0} if isinstance(self.reward, str) else dict(self.reward)
        unknown = sorted(set(weights) - set(signals))
        if unknown:
            raise ArgumentError(f"reward names unknown signal(s) {unknown}; the signals are {list(signals)}")
        return np.array([float(weights.get(name, 0.0)) for name in signals])


def check_reward(reward: Any) -> str | dict[str, float]:
    """`reward` checked for shape: a signal name, or a non-empty dict of finite weights keyed by name.

    Whether the names are signals of the user model is checked by `SeqRecConfig.reward_weights`.
    """
    if isinstance(reward, str):
        if not reward:
            raise ArgumentError("reward must name a signal, got ''")
        return reward
    if not isinstance(reward, Mapping):
        raise ArgumentError(
            f"reward must be a signal name or a dict of weights over signals, got {describe(reward)}"
        )
    if not reward:
        raise ArgumentError("reward must weigh at least one signal, got an empty dict")
    weights = {}
    for name, weight in reward.items():
        if not isinstance(name, str):
            raise ArgumentError(f"reward: signal names must be strings, got {describe(name)}")
        weights[name] = check_real(f"reward[{name!r}]", weight)
    return weights


def check_user_model(model: Any) -> None:
    """The sizes of a `UserModel` the environments allocate by (`ArgumentError` naming `user_model`)."""
    for name, low, high in (("n_items", 1, MAX_ITEMS), ("n_users", 1, None), ("n_user_features", 0, None)):
        check_integer(f"user_model.{name}", getattr(model, name, None), low, high)
    for name in ("n_start_uniforms", "n_step_uniforms"):
        check_integer(f"user_model.{name}", getattr(model, name, None), 0, MAX_HISTORY_LEN)
    signals = getattr(model, "signals", None)
    if not isinstance(signals, tuple | list) or not signals or not all(isinstance(x, str) for x in signals):
        raise ArgumentError(f"user_model.signals must be a non-empty tuple of names, got {describe(signals)}")


def start_values_per_user(model: UserModel) -> int:
    """Values `model.initial_state` allocates per user: its `start_values_per_user` if it says, else
    `n_items` (a score per item and user, as a model that draws the start over the catalogue needs)."""
    return int(getattr(model, "start_values_per_user", model.n_items))


def check_batch_size(model: UserModel, config: SeqRecConfig, n_envs: int) -> None:
    """Refuse (`ArgumentError` naming the arguments) a batch whose per-user arrays exceed `MAX_BATCH_VALUES`."""
    start = start_values_per_user(model)
    per_user = (
        ("history_len x signals", config.history_len * len(model.signals)),
        (
            "max_steps x sessions_per_episode x step uniforms",
            config.max_steps * config.sessions_per_episode * model.n_step_uniforms,
        ),
        ("n_items" if start == model.n_items else "start values per user", start),
    )
    for what, size in per_user:
        if n_envs * size > MAX_BATCH_VALUES:
            prefix = "num_envs x " if n_envs != 1 else ""
            count = f"{n_envs:,} x {size:,}" if n_envs != 1 else f"{size:,}"
            raise ArgumentError(
                f"{prefix}{what}: {count} values in one array, over the cap of {MAX_BATCH_VALUES:,} "
                "(recsim_env.envs.core.MAX_BATCH_VALUES)"
            )


def observation_space(model: UserModel, config: SeqRecConfig) -> spaces.Dict:
    """The observation space of one user (see `SeqRecEnv` for the meaning of each key)."""
    n_signals = len(model.signals)
    entries = {
        "item_ids": spaces.Box(0, model.n_items, shape=(config.history_len,), dtype=np.int64),
        "feedback": spaces.Box(-np.inf, np.inf, shape=(config.history_len, n_signals), dtype=np.float32),
        "session_step": spaces.Box(0, config.max_steps, shape=(1,), dtype=np.int64),
        "gap_days": spaces.Box(0.0, np.inf, shape=(1,), dtype=np.float32),
    }
    if config.user_features:
        entries["user_features"] = spaces.Box(
            -np.inf, np.inf, shape=(model.n_user_features,), dtype=np.float32
        )
    return spaces.Dict(entries)


class SlateSpace(spaces.MultiDiscrete):
    """Slates of K distinct items out of `n_items`: a `MultiDiscrete` of shape `(..., K)` whose samples
    never repeat an item within a slate and whose `contains` rejects slates that do.

    Libraries that know `MultiDiscrete` (Stable-Baselines3, RLlib) see one; `sample()` draws uniformly
    among valid slates, so environment checkers only ever send valid actions.
    """

    def __init__(self, n_items: int, shape: tuple[int, ...], seed: int | np.random.Generator | None = None):
        super().__init__(np.full(shape, n_items, dtype=np.int64), seed=seed)
        self.n_items = int(n_items)

    def sample(self, mask=None, probability=None) -> np.ndarray:
        """Uniform among slates of distinct items: up to `SLATE_SORT_MAX_ITEMS` items (or for slates so
        long that repeats are likely, K^2 > n_items) by sorting one random score per item, else by
        drawing ids and redrawing the slates with a repeat (each slate's cost then depends on K, not
        on `n_items`)."""
        if mask is not None or probability is not None:
            raise NotImplementedError("SlateSpace.sample takes no mask or probability")
        if self.n_items <= SLATE_SORT_MAX_ITEMS or self.shape[-1] ** 2 > self.n_items:
            scores = self.np_random.random(self.shape[:-1] + (self.n_items,))
            return np.argsort(scores, axis=-1)[..., : self.shape[-1]].astype(self.dtype)
        slates = self.np_random.integers(0, self.n_items, size=self.shape).reshape(-1, self.shape[-1])
        while True:
            ordered = np.sort(slates, axis=1)
            repeated = np.flatnonzero(np.any(ordered[:, 1:] == ordered[:, :-1], axis=1))
            if not len(repeated):
                return slates.reshape(self.shape).astype(self.dtype)
            slates[repeated] = self.np_random.integers(0, self.n_items, size=(len(repeated), self.shape[-1]))

    def contains(self, x) -> bool:
        if not super().contains(x):
            return False
        ordered = np.sort(np.asarray(x), axis=-1)
        return not np.any(ordered[..., 1:] == ordered[..., :-1])

    def __repr__(self) -> str:
        return f"SlateSpace(n_items={self.n_items}, shape={self.shape})"

    def __eq__(self, other) -> bool:
        return isinstance(other, SlateSpace) and self.n_items == other.n_items and self.shape == other.shape


def action_space(model: UserModel, config: SeqRecConfig, n_envs: int | None = None) -> spaces.Space:
    """`Discrete(n_items)` for one item, a `SlateSpace` (distinct items) for a slate; batched for `n_envs`."""
    if config.slate_size > model.n_items:
        raise ArgumentError(f"slate_size ({config.slate_size}) exceeds the catalogue ({model.n_items} items)")
    if config.slate_size == 1:
        if n_envs is None:
            return spaces.Discrete(model.n_items)
        return spaces.MultiDiscrete(np.full(n_envs, model.n_items, dtype=np.int64))
    shape = (config.slate_size,) if n_envs is None else (n_envs, config.slate_size)
    return SlateSpace(model.n_items, shape)


def signal_cost_signs(model: UserModel) -> np.ndarray:
    """[F] how each signal turns into a cost: +1 negative signal (cost = x), -1 binary (cost = 1 - x), 0 none."""
    return np.array(
        [
            1.0 if name in model.negative_signals else (-1.0 if name in model.binary_signals else 0.0)
            for name in model.signals
        ]
    )


@numba.njit(cache=True, nogil=True)
def advance_episodes(
    items, feedback, slates, slate_feedback, t, session_step, session_index, leave, max_steps, last_session
):
    """The bookkeeping of one step of N episodes, compiled (a step of one user would otherwise spend
    most of its time in a dozen tiny numpy calls).

    New windows: `items` [N, L] and `feedback` [N, L, F] shifted left by K with `slates` [N, K] and their
    `slate_feedback` [N, K, F] appended (fresh arrays: the old ones may have been handed out). `t` and
    `session_step` [N] advance by one in place. Returns the windows, `session_end` (the user left or
    the session reached `max_steps`), `terminated` (left in the last session, index `last_session`),
    `truncated` (the last session reached `max_steps` without leaving), all [N] bool, and whether any
    session ended. Requires K <= L (`SeqRecConfig` checks it).
    """
    n, length = items.shape
    k = slates.shape[1]
    kept = length - k
    new_items = np.empty_like(items)
    new_feedback = np.empty_like(feedback)
    session_end = np.empty(n, dtype=np.bool_)
    terminated = np.empty(n, dtype=np.bool_)
    truncated = np.empty(n, dtype=np.bool_)
    any_end = False
    for i in range(n):
        new_items[i, :kept] = items[i, k:]
        new_items[i, kept:] = slates[i]
        new_feedback[i, :kept] = feedback[i, k:]
        new_feedback[i, kept:] = slate_feedback[i]
        t[i] += 1
        session_step[i] += 1
        end = leave[i] or session_step[i] >= max_steps
        last = session_index[i] == last_session
        session_end[i] = end
        terminated[i] = leave[i] and last
        truncated[i] = end and not leave[i] and last
        any_end = any_end or end
    return new_items, new_feedback, session_end, terminated, truncated, any_end


@dataclass(frozen=True)
class PendingReset:
    """Episodes `EpisodeBatch.start_reset` began and `finish_reset` writes in."""

    rows: np.ndarray
    """[R] the envs being reset."""
    start: StartOfEpisode | PreparedStart
    """Their users' start, or the model's `PreparedStart` of it while an executor computes it."""
    noise: np.ndarray
    """[R, horizon * n_step_uniforms] the new episodes' step noise."""
    computing: Future | None = None
    """The executor's `PreparedStart.compute()`, when it runs there."""


class EpisodeBatch:
    """N users' episodes, stepped together.

    Args:
        model: the users (the world or a learned simulator).
        config: environment arguments.
        n_envs: N.

    Raises:
        ArgumentError: if a per-user array would exceed `MAX_BATCH_VALUES` (nothing is allocated).
    """

    def __init__(self, model: UserModel, config: SeqRecConfig, n_envs: int) -> None:
        check_batch_size(model, config, n_envs)
        self.model = model
        self.config = config
        self.n_envs = n_envs
        self.reward_weights = config.reward_weights(model.signals)
        signs = signal_cost_signs(model)
        self._cost_sign = signs
        self._cost_offset = (signs < 0).astype(np.float64)  # 1 - x for binary positive signals
        self.horizon = config.max_steps * config.sessions_per_episode
        self.pad_id = model.n_items
        n_signals = len(model.signals)
        self.items = np.full((n_envs, config.history_len), self.pad_id, dtype=np.int64)
        self.feedback = np.zeros((n_envs, config.history_len, n_signals), dtype=np.float32)
        self.noise = np.zeros((n_envs, self.horizon, model.n_step_uniforms))
        self.t = np.zeros(n_envs, dtype=np.int64)
        self.session_step = np.zeros(n_envs, dtype=np.int64)
        self.session_index = np.zeros(n_envs, dtype=np.int64)
        self.gap_days = np.zeros(n_envs, dtype=np.float32)
        self.user_features = np.zeros((n_envs, model.n_user_features), dtype=np.float32)
        self.state: Any = None
        self._rows = np.arange(n_envs)
        self._windows_shared = False
        """Whether `items` / `feedback` were handed out by `observation` since they were last rebuilt."""

    # ------------------------------------------------------------------ reset
    def reset_rows(self, rows: np.ndarray, rngs: Sequence[np.random.Generator]) -> None:
        """Start new episodes for envs `rows`, each drawing its randomness from its own generator."""
        self.finish_reset(self.start_reset(rows, rngs))

    def start_reset(
        self, rows: np.ndarray, rngs: Sequence[np.random.Generator], executor: Executor | None = None
    ) -> PendingReset:
        """Draw the new episodes' randomness for envs `rows` and start their users: on `executor` when
        given (so that the users start while the caller steps the other envs), else here.
        `finish_reset` writes them in; until then the batch is unchanged."""
        model = self.model
        n_users = model.n_users
        user_ids = np.empty(len(rows), dtype=np.int64)
        # Each env's start uniforms, then its step noise for the whole horizon: one fill per env,
        # in place (the same draws as `rng.random(n_start)` followed by `rng.random(horizon shape)`).
        n_start = model.n_start_uniforms
        uniforms = np.empty((len(rows), n_start + self.noise[0].size))
        for j, rng in enumerate(rngs):  # only the envs being reset: one draw each, never per step
            user_ids[j] = rng.integers(n_users)
            rng.random(out=uniforms[j])
        start_uniforms = uniforms[:, :n_start]
        if executor is None:
            return PendingReset(rows, model.initial_state(user_ids, start_uniforms), uniforms[:, n_start:])
        prepared = model.prepare_start(user_ids, start_uniforms)
        return PendingReset(rows, prepared, uniforms[:, n_start:], executor.submit(prepared.compute))

    def finish_reset(self, pending: PendingReset) -> None:
        """Write the episodes `start_reset` began into the batch (waiting for their users if needed)."""
        rows = pending.rows
        if pending.computing is None:
            start = pending.start
        else:
            pending.computing.result()
            start = pending.start.finish()
        self.noise[rows] = pending.noise.reshape((len(rows),) + self.noise.shape[1:])
        if self.state is None or len(rows) == self.n_envs:
            self.state = start.state
        else:
            self.state.set_rows(rows, start.state)
        # Copy before writing rows: observations handed out earlier must not change under the user
        # (`step` builds new windows, so a reset right after it writes into those).
        if self._windows_shared:
            self.items = self.items.copy()
            self.feedback = self.feedback.copy()
            self._windows_shared = False
        length = min(start.history_items.shape[1], self.config.history_len)
        self.items[rows] = self.pad_id
        self.feedback[rows] = 0.0
        if length:
            self.items[rows, -length:] = start.history_items[:, -length:]
            self.feedback[rows, -length:] = start.history_feedback[:, -length:]
        self.user_features[rows] = start.user_features
        self.t[rows] = 0
        self.session_step[rows] = 0
        self.session_index[rows] = 0
        self.gap_days[rows] = 0.0

    # ------------------------------------------------------------------ step
    def step(self, slates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Show `slates` [N, K]; returns rewards [N], terminated [N], truncated [N] and batched info."""
        config = self.config
        uniforms = self.noise[self._rows, np.minimum(self.t, self.horizon - 1)]
        response = self.model.respond(self.state, slates, uniforms)
        step_feedback = response.feedback.sum(axis=1)  # [N, F]
        rewards = step_feedback @ self.reward_weights

        leave = response.leave
        self.items, self.feedback, session_end, terminated, truncated, any_end = advance_episodes(
            self.items,
            self.feedback,
            slates,
            response.feedback,
            self.t,
            self.session_step,
            self.session_index,
            leave,
            config.max_steps,
            config.sessions_per_episode - 1,
        )
        self._windows_shared = False
        info = {
            "feedback": step_feedback,
            "costs": self._cost_offset + self._cost_sign * step_feedback,
            "user_id": self.state.user_ids.copy(),
            "session": self.session_index.copy(),
            "chosen_position": response.chosen_position,
        }
        if any_end:
            gap = self.model.end_session(self.state, session_end, uniforms)
            info["return_gap"] = gap
            info["_return_gap"] = session_end
            rewards = rewards + config.retention_weight * session_end / (1.0 + gap)
            next_session = session_end & (self.session_index != config.sessions_per_episode - 1)
            if next_session.any():
                self.session_index = self.session_index + next_session
                self.session_step = np.where(next_session, 0, self.session_step)
                self.gap_days = np.where(next_session, gap, self.gap_days).astype(np.float32)
        return rewards, terminated, truncated, info

    # ------------------------------------------------------------------ observations
    def observation(self) -> dict[str, np.ndarray]:
        """Batched observation: each value has a leading N axis."""
        self._windows_shared = True
        obs = {
            "item_ids": self.items,
            "feedback": self.feedback,
            "session_step": self.session_step[:, None].copy(),
            "gap_days": self.gap_days[:, None].copy(),
        }
        if self.config.user_features:
            obs["user_features"] = self.user_features.copy()
        return obs


def check_actions(
    actions: Any,
    *,
    name: str,
    n_envs: int,
    batched: bool,
    slate_size: int,
    n_items: int,
    space: spaces.Space,
    ignore_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Validate actions for the single (`batched=False`) or the vector env; returns [N, K] int64 slates.

    The shape must be the action space's: `()` (one item) or `[K]` (a slate) for the single env, `[N]`
    or `[N, K]` for the vector env, exactly (`[N, 1]` is refused for one-item actions). The dtype must be integer: bools, floats (even 1.0), strings and objects
    are refused. Items must lie in [0, n_items) and be distinct within a slate. Rows `ignore_rows` (the
    vector env's sub-envs that reset this step and ignore their action) are replaced with a valid slate
    before the range and repeat checks. Vectorised: a dtype check, a shape check, a min and a max, and
    for slates a sort; the input is never modified.

    Raises:
        ActionError: naming `name`, the action and the space, and what is wrong (for a shape: the
            expected and the received shapes).
    """
    try:
        array = np.asarray(actions)
    except Exception as error:  # a ragged list, an object whose __array__ raises, ...
        reason = f"wrong shape or type: not an array of item ids ({type(error).__name__}: {error})"
        raise _action_error(name, actions, space, reason) from None
    if array.dtype.kind not in "iu":
        raise _action_error(
            name, actions, space, f"wrong shape or type: dtype {array.dtype}, expected integer item ids"
        )
    expected = (n_envs, slate_size) if batched and slate_size > 1 else (n_envs,) if batched else space.shape
    if array.shape != expected:
        raise _action_error(
            name, actions, space, f"wrong shape or type: shape {array.shape}, expected {expected}"
        )
    slates = array.reshape(n_envs, slate_size)
    if ignore_rows is not None and len(ignore_rows):
        slates = slates.astype(np.int64)  # a copy: the caller's array is left alone
        slates[ignore_rows] = np.arange(slate_size)
    else:
        slates = slates.astype(np.int64, copy=False)  # uint64 ids >= 2**63 turn negative: refused below
    if slates.min() < 0 or slates.max() >= n_items:
        raise _action_error(name, actions, space, f"item id outside [0, {n_items})")
    if slate_size > 1:
        ordered = np.sort(slates, axis=1)
        if np.any(ordered[:, 1:] == ordered[:, :-1]):
            raise _action_error(name, actions, space, "duplicate items in a slate")
    return slates


def _action_error(name: str, actions: Any, space: spaces.Space, reason: str) -> ActionError:
    return ActionError(f"{name}: invalid action {describe(actions)} for action space {space}: {reason}")


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """`seed` as None or a non-negative `int` (numpy integers accepted; bools and floats refused)."""
    return None if seed is None else check_integer(name, seed, 0)


def check_options(options: Any, known: Sequence[str] = ()) -> dict[str, Any]:
    """`options` of `reset` as a dict; keys other than `known` are refused (an ignored option is a bug)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ArgumentError(f"options must be None or a dict, got {describe(options)}")
    unknown = [key for key in options if key not in known]
    if unknown:
        takes = f"the options are {list(known)}" if known else "this environment takes no reset options"
        raise ArgumentError(f"options: unknown key(s) {describe(unknown)}; {takes}")
    return dict(options)
