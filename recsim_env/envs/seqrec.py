"""`SeqRec-v0`: sequential recommendation to one user at a time, and its native vector version."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recsim_env.checks import check_integer, check_real, describe
from recsim_env.envs.core import (
    MAX_NUM_ENVS,
    EpisodeBatch,
    SeqRecConfig,
    action_space,
    check_actions,
    check_options,
    check_reward,
    check_seed,
    check_user_model,
    observation_space,
)
from recsim_env.errors import ArgumentError
from recsim_env.user_model import UserModel, starts_concurrently, user_model_source
from recsim_env.world import UserWorld, WorldConfig


def _build_model(
    world_config: WorldConfig | Mapping[str, Any] | None, user_model: UserModel | None
) -> UserModel:
    if user_model is not None:
        if world_config is not None:
            raise ArgumentError(
                "world_config, user_model: give either 'world_config' or 'user_model', not both"
            )
        check_user_model(user_model)
        return user_model
    if isinstance(world_config, Mapping):
        world_config = WorldConfig.from_mapping(world_config, name="world_config")
    elif world_config is not None and not isinstance(world_config, WorldConfig):
        raise ArgumentError(
            f"world_config must be a WorldConfig, a dict of its fields or None, got {describe(world_config)}"
        )
    return UserWorld(world_config)


class SeqRecEnv(gym.Env):
    """Recommend items to one user, step after step, session after session.

    ## Description
    Each episode follows one user of the user model (by default the ground-truth world of
    `recsim_env.world`, see docs/world.md) for `sessions_per_episode` sessions. At every step the
    agent shows an item (or a slate of `slate_size` items); the user may consume one of them and
    gives multi-signal feedback (click, watch time, like, follow, share, hate), then may leave.
    Satiation, interest drift and satisfaction make the long-term and the immediate reward differ.

    ## Action Space
    `Discrete(n_items)` when `slate_size == 1`, else `MultiDiscrete([n_items] * slate_size)` with
    distinct items (position 0 first). An action is a Python or numpy integer (or a 0-d integer
    array) for `Discrete`, a `[K]` integer array for a slate. Anything else (a bool, a float even if
    whole, another shape, an id outside [0, n_items), a repeated item) raises
    `recsim_env.errors.ActionError` (a `ValueError`) naming the action and the space; the env is
    left as it was.

    ## Observation Space
    A `Dict`:
    - `item_ids` `[L]` int64: the last L items shown (slates in position order), most recent last,
      left-padded with the pad id `n_items` (so `item_ids == n_items` marks padding). The episode
      starts with the user's warm-start history of consumed items.
    - `feedback` `[L, F]` float32: the feedback to each of those items, signals in `signals` order.
    - `session_step` `[1]` int64: steps taken in the current session.
    - `gap_days` `[1]` float32: days since the previous session of this episode (0 in the first).
    - `user_features` `[U]` float32: observable user features, only with `user_features=True`.

    ## Rewards
    The weighted sum of the step's feedback (`reward="click"` by default, or a dict of weights over
    signals), plus `retention_weight / (1 + return gap in days)` at each session end.

    ## Starting State
    A user drawn uniformly from the population, with base interest, no satiation and the initial
    satisfaction, and a warm-start history drawn from their interests. On catalogues of more than
    500 items the history is drawn by exact rejection sampling, whose cost does not depend on the
    catalogue size (same distribution, other draws; `WorldConfig.warm_start_sampler`,
    docs/catalogue.md), so a step and a reset cost the same at 10^3 and 10^6 items.

    ## Episode End
    `terminated` when the user leaves during the last session; `truncated` when the last session
    reaches `max_steps` steps. A session that ends earlier starts the next one after the return gap.

    ## Info
    `feedback` [F] (the step's feedback summed over the slate), `costs` [F] (per-signal costs for
    constrained RL: `1 - x` for binary positive signals, `x` for negative ones such as hate, 0 for
    continuous ones), `user_id`, `session`, `chosen_position` (-1: nothing consumed) and, at a
    session end, `return_gap` (days until the user comes back).

    ## Arguments
    - `history_len=20`, `slate_size=1`, `reward="click"`, `max_steps=50`, `sessions_per_episode=1`,
      `retention_weight=0.0`, `user_features=False`: see `SeqRecConfig`.
    - `world_config`: a `WorldConfig` (or a dict of its fields) for the ground-truth world.
    - `user_model`: any `UserModel` (e.g. a learned simulator) instead of the world.
    - `dataset`: logged data for a learned simulator: a registered name (`"ml-100k"`), a path
      (`recsim_env.data.load`) or a `LoggedInteractions`. Episodes then start from real users'
      history prefixes and the catalogue is the data's (see docs/simulators.md).
    - `simulator`: `"learned"` (train one on `dataset`, or reuse the cached one), the directory
      of a saved simulator (`seqrec train-simulator`), or a learned simulator object
      (`simulators.LearnedSimulator`, `EnsembleSimulator` or `SimulatorSet`). Giving
      `dataset` alone means `"learned"`. The `simulators` package (and torch) is imported only then.
    - `simulator_config`: a `simulators.SimulatorConfig` or dict of its fields, for `"learned"`.
    - `uncertainty_penalty`: lambda >= 0 (needs an ensemble simulator); adds the signal
      `disagreement` (std of the members' click probabilities of each shown item) to the feedback,
      so it is in `info["feedback"]`, and subtracts `lambda * disagreement` from the reward (MOPO).
    - `render_mode`: `None` or `"ansi"`.

    Every argument is checked when the env is made: a wrong type (a bool or float where an integer
    is due), a value out of range, or a size over the caps in `recsim_env.envs.core` (`MAX_*`)
    raises `recsim_env.errors.ArgumentError` (a `ValueError` and a `TypeError`) whose message
    starts with the argument's name. `reset` takes `seed` None or a non-negative integer, and no
    `options` (an unknown key is refused).

    ## Version History
    - v0: initial version. Worlds of more than 500 items draw their warm starts with the rejection
      sampler (the same distribution as before, other draws; the default world is unchanged).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        *,
        history_len: int = 20,
        slate_size: int = 1,
        reward: str | Mapping[str, float] = "click",
        max_steps: int = 50,
        sessions_per_episode: int = 1,
        retention_weight: float = 0.0,
        user_features: bool = False,
        world_config: WorldConfig | Mapping[str, Any] | None = None,
        user_model: UserModel | None = None,
        dataset: Any = None,
        simulator: Any = None,
        simulator_config: Any = None,
        uncertainty_penalty: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and (
            not isinstance(render_mode, str) or render_mode not in self.metadata["render_modes"]
        ):
            raise ArgumentError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, got {describe(render_mode)}"
            )
        reward = check_reward(reward)
        uncertainty_penalty = check_real("uncertainty_penalty", uncertainty_penalty, 0.0)
        if dataset is not None or simulator is not None:
            if user_model is not None or world_config is not None:
                raise ArgumentError(
                    "dataset, simulator: give 'dataset'/'simulator' or 'user_model'/'world_config', not both"
                )
            # Users learned from logs come from the "learned" user-model source, which the `simulators`
            # package registers (an entry point): this package never imports the packages above it.
            learned_user_model = user_model_source("learned")
            user_model, reward = learned_user_model(
                dataset=dataset,
                simulator=simulator,
                simulator_config=simulator_config,
                uncertainty_penalty=uncertainty_penalty,
                reward=reward,
            )
        elif simulator_config is not None or uncertainty_penalty:
            raise ArgumentError(
                "simulator_config, uncertainty_penalty: these arguments need 'simulator' or 'dataset'"
            )
        self.config = SeqRecConfig(
            history_len=history_len,
            slate_size=slate_size,
            reward=reward,
            max_steps=max_steps,
            sessions_per_episode=sessions_per_episode,
            retention_weight=retention_weight,
            user_features=user_features,
        )
        self.user_model = _build_model(world_config, user_model)
        self.signals = self.user_model.signals
        self.observation_space = observation_space(self.user_model, self.config)
        self.action_space = action_space(self.user_model, self.config)
        self.render_mode = render_mode
        self._batch = EpisodeBatch(self.user_model, self.config, 1)
        self._n_items = self.user_model.n_items
        self._started = False
        self._last: dict[str, Any] = {}

    @property
    def user_state(self) -> Any:
        """The user model's hidden state of the current user (for oracles and analysis only)."""
        return self._batch.state

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        seed = check_seed(seed)
        check_options(options)
        super().reset(seed=seed)
        self._batch.reset_rows(np.zeros(1, dtype=np.int64), [self.np_random])
        self._started = True
        self._last = {}
        return self._observation(), {"user_id": int(self._batch.state.user_ids[0]), "session": 0}

    def step(self, action):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if (
            self.config.slate_size == 1
            and (type(action) is int or isinstance(action, np.integer))  # not a bool: True is not item 1
            and 0 <= action < self._n_items
        ):
            slates = np.array([[action]], dtype=np.int64)  # the common case, validated without numpy calls
        else:
            slates = check_actions(
                action,
                name="action",
                n_envs=1,
                batched=False,
                slate_size=self.config.slate_size,
                n_items=self._n_items,
                space=self.action_space,
            )
        rewards, terminated, truncated, batch_info = self._batch.step(slates)
        info = {key: value[0] for key, value in batch_info.items() if not key.startswith("_")}
        if "return_gap" in info:
            info["return_gap"] = float(info["return_gap"])
        info["user_id"] = int(info["user_id"])
        info["session"] = int(info["session"])
        info["chosen_position"] = int(info["chosen_position"])
        self._last = {"slate": slates[0], "info": info, "reward": float(rewards[0])}
        done = bool(terminated[0] or truncated[0])
        self._started = not done
        return self._observation(), float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    def _observation(self) -> dict[str, np.ndarray]:
        return {key: value[0] for key, value in self._batch.observation().items()}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if not self._last:
            return f"user {int(self._batch.state.user_ids[0])}: new episode\n"
        info = self._last["info"]
        signals = ", ".join(f"{name}={value:g}" for name, value in zip(self.signals, info["feedback"]))
        return (
            f"user {info['user_id']} session {info['session']} step {int(self._batch.session_step[0])}: "
            f"shown {self._last['slate'].tolist()} -> {signals} (reward {self._last['reward']:g})\n"
        )


CONCURRENT_STARTS_MIN_ENVS = 64
"""Smallest batch for which `concurrent_starts=None` starts reset users on a second thread: below it a
step resets too few users to pay for the hand-over."""


def uses_concurrent_starts(requested: bool | None, model: UserModel, num_envs: int) -> bool:
    """Whether a vector env starts the users it resets on a second thread while it steps the others:
    only for a model whose `prepare_start` pays there (`recsim_env.user_model.starts_concurrently`: the
    world with its large-catalogue sampler); by default (`requested`
    None) when the process may run on two or more CPUs and the batch has at least
    `CONCURRENT_STARTS_MIN_ENVS` envs. The draws are the same either way."""
    if requested is False:
        return False
    if not starts_concurrently(model):
        if requested:
            raise ArgumentError(
                f"concurrent_starts=True: the user model {type(model).__name__} offers no concurrent "
                "`prepare_start` (recsim_env.user_model.PreparedStart)"
            )
        return False
    if requested:
        return True
    return len(os.sched_getaffinity(0)) >= 2 and num_envs >= CONCURRENT_STARTS_MIN_ENVS


class SeqRecVectorEnv(VectorEnv):
    """`num_envs` users of `SeqRec-v0` stepped in one batched call (no Python loop over users).

    Same arguments, spaces and dynamics as `SeqRecEnv` (it runs the same `EpisodeBatch`). Sub-env i
    reset with `seed` uses seed `seed + i`, as `SyncVectorEnv` does, so it reproduces a
    `SeqRecEnv` seeded `seed + i` step for step. Autoreset follows Gymnasium's default
    `AutoresetMode.NEXT_STEP`: the step after an episode ends resets that sub-env, ignores its
    action and returns its first observation with reward 0. `info` values are arrays with a
    leading `num_envs` axis; `return_gap` comes with the mask `_return_gap`.

    `num_envs` is an integer in [1, `MAX_NUM_ENVS`]. A step takes exactly the batched action space's
    shape, `[N]` for single items (or `[N, 1]`, the reference policies' `[N, K]` slates) and `[N, K]`
    for slates, of an integer dtype; anything else raises `ActionError` naming the expected and the
    received shape (or the bad dtype, id or repeat) and changes nothing. `reset` takes `seed` None,
    a non-negative integer or a sequence of `num_envs` of those, and no `options`.

    `concurrent_starts` (None, True or False): start the users of the sub-envs that reset in a step
    on a second thread while the other sub-envs step (the warm-start history of a large catalogue is
    most of a step's cost). None turns it on for at least `CONCURRENT_STARTS_MIN_ENVS` envs on a
    machine with two or more CPUs, when the user model offers it (the world above
    `TABLE_SAMPLER_MAX_ITEMS` items, whose warm start is one compiled call without the GIL); the
    episodes are the same either way. `close()` stops the thread.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, concurrent_starts: bool | None = None, **env_kwargs: Any) -> None:
        num_envs = check_integer("num_envs", num_envs, 1, MAX_NUM_ENVS)
        if concurrent_starts is not None and not isinstance(concurrent_starts, bool):
            raise ArgumentError(
                f"concurrent_starts must be None or a bool, got {describe(concurrent_starts)}"
            )
        env_kwargs.pop("render_mode", None)
        prototype = SeqRecEnv(**env_kwargs)
        self.config = prototype.config
        self.user_model = prototype.user_model
        self.signals = prototype.signals
        self.num_envs = int(num_envs)
        self.single_observation_space = prototype.observation_space
        self.single_action_space = prototype.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = action_space(self.user_model, self.config, self.num_envs)
        self._batch = EpisodeBatch(self.user_model, self.config, self.num_envs)
        self._rngs: list[np.random.Generator] = []
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)
        self._start_executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqrec-start")
            if uses_concurrent_starts(concurrent_starts, self.user_model, self.num_envs)
            else None
        )

    def close_extras(self, **kwargs: Any) -> None:
        if self._start_executor is not None:
            self._start_executor.shutdown(wait=True)
            self._start_executor = None

    @property
    def user_state(self) -> Any:
        """The user model's hidden state of all users (for oracles and analysis only)."""
        return self._batch.state

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        check_options(options)
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
            seeds = [check_seed(seed) + i for i in range(self.num_envs)]
        elif isinstance(seed, Sequence | np.ndarray) and not isinstance(seed, str | bytes):
            if len(seed) != self.num_envs:
                raise ArgumentError(f"seed has {len(seed)} seeds for {self.num_envs} envs")
            seeds = [check_seed(s, name=f"seed[{i}]") for i, s in enumerate(seed)]
        else:
            raise ArgumentError(
                f"seed must be None, a non-negative integer or a list of {self.num_envs} of them, "
                f"got {describe(seed)}"
            )
        if seed is not None or not self._rngs:
            self._rngs = [gym.utils.seeding.np_random(s)[0] for s in seeds]
            if seed is not None:
                self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seeds[0])
        self._batch.reset_rows(np.arange(self.num_envs), self._rngs)
        self._needs_reset[:] = False
        return self._batch.observation(), self._reset_info()

    def _reset_info(self) -> dict[str, np.ndarray]:
        return {"user_id": self._batch.state.user_ids.copy(), "session": self._batch.session_index.copy()}

    def step(self, actions):
        if not self._rngs:
            raise RuntimeError("call reset() before step()")
        resetting = np.flatnonzero(self._needs_reset)
        # Sub-envs that reset this step ignore their action (NEXT_STEP autoreset): it must have the
        # batch's shape and dtype, but its items are replaced with a valid slate.
        slates = check_actions(
            actions,
            name="actions",
            n_envs=self.num_envs,
            batched=True,
            slate_size=self.config.slate_size,
            n_items=self.user_model.n_items,
            space=self.action_space,
            ignore_rows=resetting,
        )
        pending = (
            self._batch.start_reset(resetting, [self._rngs[i] for i in resetting], self._start_executor)
            if len(resetting)
            else None
        )
        try:
            rewards, terminated, truncated, info = self._batch.step(slates)
        finally:
            if pending is not None:  # the batch's other rows have stepped: write the new episodes in
                self._batch.finish_reset(pending)
        if len(resetting):
            rewards[resetting] = 0.0
            terminated[resetting] = False
            truncated[resetting] = False
            # Their info describes the new episode, not the ignored step.
            info["feedback"][resetting] = 0.0
            info["costs"][resetting] = 0.0
            info["chosen_position"][resetting] = -1
            info["user_id"] = self._batch.state.user_ids.copy()
            info["session"][resetting] = 0
            if "_return_gap" in info:
                info["_return_gap"][resetting] = False
                info["return_gap"][resetting] = 0.0
        self._needs_reset = terminated | truncated
        return self._batch.observation(), rewards, terminated, truncated, info
