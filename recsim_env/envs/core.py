"""Batched episodes over a `UserModel`: the one implementation behind the single and the vector env.

`EpisodeBatch` owns N users' episodes: their observable histories, session counters and the block of
uniform random numbers each episode was dealt at reset. `SeqRecEnv` is an `EpisodeBatch` with N = 1;
`SeqRecVectorEnv` is one with N = num_envs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces

from recsim_env.user_model import UserModel


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
        for name in ("history_len", "slate_size", "max_steps", "sessions_per_episode"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"argument {name!r} must be a positive integer, got {value!r}")
        if self.slate_size > self.history_len:
            raise ValueError(
                f"argument 'history_len' ({self.history_len}) must be at least 'slate_size' ({self.slate_size})"
            )
        if not np.isfinite(self.retention_weight):
            raise ValueError(f"argument 'retention_weight' must be finite, got {self.retention_weight!r}")
        if not isinstance(self.reward, (str, Mapping)):
            raise ValueError(
                f"argument 'reward' must be a signal name or a dict of weights, got {self.reward!r}"
            )
        if self.extra:
            raise ValueError(f"unknown environment arguments: {sorted(self.extra)}")

    def reward_weights(self, signals: Sequence[str]) -> np.ndarray:
        """[F] weights of the reward over `signals`; unknown names raise `ValueError`."""
        weights = {self.reward: 1.0} if isinstance(self.reward, str) else dict(self.reward)
        unknown = sorted(set(weights) - set(signals))
        if unknown:
            raise ValueError(
                f"argument 'reward' names unknown signal(s) {unknown}; the signals are {list(signals)}"
            )
        vector = np.array([float(weights.get(name, 0.0)) for name in signals])
        if not np.all(np.isfinite(vector)):
            raise ValueError(f"argument 'reward' has a non-finite weight: {weights}")
        return vector


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
        if mask is not None or probability is not None:
            raise NotImplementedError("SlateSpace.sample takes no mask or probability")
        scores = self.np_random.random(self.shape[:-1] + (self.n_items,))
        return np.argsort(scores, axis=-1)[..., : self.shape[-1]].astype(self.dtype)

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
        raise ValueError(
            f"argument 'slate_size' ({config.slate_size}) exceeds the catalogue ({model.n_items} items)"
        )
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


class EpisodeBatch:
    """N users' episodes, stepped together.

    Args:
        model: the users (the world or a learned simulator).
        config: environment arguments.
        n_envs: N.
    """

    def __init__(self, model: UserModel, config: SeqRecConfig, n_envs: int) -> None:
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

    # ------------------------------------------------------------------ reset
    def reset_rows(self, rows: np.ndarray, rngs: Sequence[np.random.Generator]) -> None:
        """Start new episodes for envs `rows`, each drawing its randomness from its own generator."""
        model = self.model
        user_ids = np.empty(len(rows), dtype=np.int64)
        start_uniforms = np.empty((len(rows), model.n_start_uniforms))
        for j, rng in enumerate(rngs):  # only the envs being reset: one draw each, never per step
            user_ids[j] = rng.integers(model.n_users)
            start_uniforms[j] = rng.random(model.n_start_uniforms)
            self.noise[rows[j]] = rng.random((self.horizon, model.n_step_uniforms))
        start = model.initial_state(user_ids, start_uniforms)
        if self.state is None or len(rows) == self.n_envs:
            self.state = start.state
        else:
            self.state.set_rows(rows, start.state)
        # Copy before writing rows: observations handed out earlier must not change under the user.
        self.items = self.items.copy()
        self.feedback = self.feedback.copy()
        self.gap_days = self.gap_days.copy()
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

        slate_size = slates.shape[1]
        self.items = np.concatenate([self.items[:, slate_size:], slates], axis=1)
        self.feedback = np.concatenate([self.feedback[:, slate_size:], response.feedback], axis=1)
        self.t += 1
        self.session_step += 1

        leave = response.leave
        session_end = leave | (self.session_step >= config.max_steps)
        info = {
            "feedback": step_feedback,
            "costs": self._cost_offset + self._cost_sign * step_feedback,
            "user_id": self.state.user_ids.copy(),
            "session": self.session_index.copy(),
            "chosen_position": response.chosen_position,
        }
        last_session = self.session_index == config.sessions_per_episode - 1
        terminated = leave & last_session
        truncated = session_end & ~leave & last_session
        if session_end.any():
            gap = self.model.end_session(self.state, session_end, uniforms)
            info["return_gap"] = gap
            info["_return_gap"] = session_end
            rewards = rewards + config.retention_weight * session_end / (1.0 + gap)
            next_session = session_end & ~last_session
            if next_session.any():
                self.session_index = self.session_index + next_session
                self.session_step = np.where(next_session, 0, self.session_step)
                self.gap_days = np.where(next_session, gap, self.gap_days).astype(np.float32)
        return rewards, terminated, truncated, info

    # ------------------------------------------------------------------ observations
    def observation(self) -> dict[str, np.ndarray]:
        """Batched observation: each value has a leading N axis."""
        obs = {
            "item_ids": self.items,
            "feedback": self.feedback,
            "session_step": self.session_step[:, None].copy(),
            "gap_days": self.gap_days[:, None].copy(),
        }
        if self.config.user_features:
            obs["user_features"] = self.user_features.copy()
        return obs


def check_slates(actions: Any, n_envs: int, slate_size: int, n_items: int, space: spaces.Space) -> np.ndarray:
    """Validate a batch of actions; returns [N, K] int64 or raises `ValueError` naming action and space."""
    array = np.asarray(actions)
    if array.dtype.kind == "f" and array.size and np.all(array == np.round(array)):
        array = array.astype(np.int64)  # whole floats (e.g. from a torch tensor) are accepted; NaN is not
    if array.dtype.kind not in "iu" or array.size != n_envs * slate_size:
        raise ValueError(f"invalid action {actions!r} for action space {space}: wrong shape or type")
    slates = array.reshape(n_envs, slate_size).astype(np.int64, copy=False)
    if slates.min() < 0 or slates.max() >= n_items:
        raise ValueError(
            f"invalid action {actions!r} for action space {space}: item id outside [0, {n_items})"
        )
    if slate_size > 1:
        ordered = np.sort(slates, axis=1)
        if np.any(ordered[:, 1:] == ordered[:, :-1]):
            raise ValueError(
                f"invalid action {actions!r} for action space {space}: duplicate items in a slate"
            )
    return slates
