"""Sim2Rec's environments: what each variant trains on, for both front ends.

- `lts`: `SeqRecLTS-v0` users of the variant's domains (`make_env`; ORACLE also sees the hidden
  parameters, `OracleObservation`), a window of the last `window` observations stacked.
- `seqrec`: the native `SeqRec-v0` vector env over users learned from world logs (`make_training_env`).
  The base simulator is `simulators.simset.default_world_simulator()`, learned from uniform-policy
  world logs, unless `config.simulator` names a saved one:

  - Sim2Rec, UNIVERSAL, ORACLE: `SeqRecSimSet-v0` over the base simulator: every episode's user is a
    member of the set (ensemble member, leave shift, satiation rate, click noise, position decay
    drawn from `config.simset`'s ranges).
  - DIRECT: `SeqRec-v0` on the base simulator as fitted: the ensemble mean, no extra satiation, noise
    or leave shift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

import recsim_env  # noqa: F401  (registers the environments)
from agents.sim2rec.config import CONTINUOUS, HIDDEN_KEY, Sim2RecConfig
from recsim_env.envs.seqrec import SeqRecVectorEnv


class OracleObservation(gym.ObservationWrapper):
    """Appends the user's hidden (choc_mean / 20, memory discount, sensitivity) to the observation."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        low = np.concatenate([env.observation_space.low, np.zeros(3, dtype=np.float32)])
        high = np.concatenate([env.observation_space.high, np.full(3, np.inf, dtype=np.float32)])
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation):
        hidden = self.env.unwrapped.hidden_parameters() * np.array([1 / 20, 1, 1], dtype=np.float32)
        return np.concatenate([observation, hidden]).astype(np.float32)


def make_env(config: Sim2RecConfig, choc_means: float | Sequence[float]) -> gym.Env:
    """One `SeqRecLTS-v0` as the variant sees it: a history window (+ hidden parameters for ORACLE)."""
    env = gym.make("SeqRecLTS-v0", choc_means=choc_means, **config.env_kwargs)
    if config.variant == "oracle":
        env = OracleObservation(env)
    return gym.wrappers.FrameStackObservation(env, config.window, padding_type="zero")


def simset_config(config: Sim2RecConfig):
    """`config.simset` as a `SimSetConfig` (JSON turns its tuples into lists)."""
    from simulators.simset import SimSetConfig

    return SimSetConfig(**{name: tuple(value) for name, value in config.simset.items()})


def base_simulator(config: Sim2RecConfig):
    """The learned simulator the set is built from: `config.simulator`, or the default one learned
    from world logs (trained on first use, then cached)."""
    from simulators.checkpoint import load
    from simulators.simset import default_world_simulator

    return default_world_simulator() if config.simulator is None else load(config.simulator)


def simulator_set(config: Sim2RecConfig):
    """The user model of `SeqRecSimSet-v0` over the base simulator with `config.simset`'s ranges."""
    from simulators.simset import SeqRecSimSetEnv

    env = SeqRecSimSetEnv(simulator=base_simulator(config), simset=simset_config(config), **config.env_kwargs)
    return env.user_model


def training_model(config: Sim2RecConfig):
    """The users the variant trains on: the set, or (DIRECT) the base simulator as fitted."""
    return base_simulator(config) if config.variant == "direct" else simulator_set(config)


def hidden_vector(
    parameters: Mapping[str, np.ndarray] | None, n: int, n_members: int, ranges: Mapping[str, tuple]
) -> np.ndarray:
    """`[n, K + 4]` ORACLE input: one-hot member (the ensemble mean, member -1, as 1/K each), then
    each of `CONTINUOUS` scaled to [0, 1] by its range. `parameters` None (users without them, such
    as the world's): the set's centre."""
    out = np.full((n, n_members + len(CONTINUOUS)), 0.5, dtype=np.float32)
    out[:, :n_members] = 1.0 / n_members
    if parameters is None:
        return out
    member = np.asarray(parameters["member"])
    rows = np.flatnonzero(member >= 0)
    out[rows, :n_members] = 0.0
    out[rows, member[rows]] = 1.0
    for j, name in enumerate(CONTINUOUS):
        low, high = ranges[name]
        if high > low:
            out[:, n_members + j] = (np.asarray(parameters[name]) - low) / (high - low)
    return out


class HiddenParameters(gym.vector.VectorObservationWrapper):
    """Adds `hidden_parameters` (`hidden_vector` of each env's current user) to the observations."""

    def __init__(self, env: SeqRecVectorEnv, ranges: Mapping[str, tuple]) -> None:
        super().__init__(env)
        self.n_members = len(env.user_model.members)
        self.ranges = ranges
        box = spaces.Box(0.0, 1.0, (self.n_members + len(CONTINUOUS),), np.float32)
        self.single_observation_space = spaces.Dict({**env.single_observation_space.spaces, HIDDEN_KEY: box})
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)

    def observations(self, observations: dict) -> dict:
        parameters = self.env.unwrapped.user_state.parameters
        hidden = hidden_vector(parameters, self.num_envs, self.n_members, self.ranges)
        return {**observations, HIDDEN_KEY: hidden}


def make_training_env(config: Sim2RecConfig) -> gym.vector.VectorEnv:
    """`config.num_envs` users of the variant's simulators in the native vector env (NEXT_STEP autoreset)."""
    env = SeqRecVectorEnv(num_envs=config.num_envs, user_model=training_model(config), **config.env_kwargs)
    if config.variant == "oracle":
        return HiddenParameters(env, simset_config(config).ranges())
    return env


def make_vector_env(config: Sim2RecConfig) -> gym.vector.VectorEnv:
    """The training environments: `config.num_envs` users at a time, each episode's user drawn from
    one simulator of the variant's set."""
    if config.env == "seqrec":
        return make_training_env(config)
    return gym.vector.SyncVectorEnv(
        [lambda: make_env(config, config.domains) for _ in range(config.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
