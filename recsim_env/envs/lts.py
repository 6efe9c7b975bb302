"""`SeqRecLTS-v0`: RecSim's long-term-satisfaction ("chocolate / kale") user, as used by Sim2Rec."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recsim_env.checks import check_integer, check_real, describe
from recsim_env.envs.core import check_actions, check_options, check_seed
from recsim_env.errors import ArgumentError

MAX_ENGAGEMENT = 100.0
SIM2REC_TRAIN_DOMAINS = (6.0, 7.0, 8.0, 9.0, 19.0, 20.0, 21.0)
"""choc_mean of the training simulators in Sim2Rec's synthetic benchmark."""
SIM2REC_TEST_DOMAIN = 14.0
"""choc_mean of the held-out test domain."""
MAX_DOCUMENTS = 1_000_000
"""Most documents (`n_documents`) an LTS env may have."""
MAX_TIME_BUDGET = 10**9
"""Longest episode (`time_budget` steps)."""


class SeqRecLTSEnv(gym.Env):
    """A user whose satisfaction rises with wholesome items and falls with clickbait.

    ## Description
    The synthetic benchmark of Sim2Rec (Chen et al., ICDE 2023), built on RecSim's long-term
    satisfaction environment (Ie et al., 2019). There are `n_documents` documents; document i has
    clickbait score c_i = i / n_documents. Each user has a memory discount d ~ U[0.7, 0.9] and a
    sensitivity k ~ U[0.4, 0.6]; their net positive exposure starts at NPE_0 = 0.5 / (1 - d) and evolves
    as NPE' = d NPE - 2 (c - 0.5) + N(0, innovation_std^2); satisfaction is sigmoid(k NPE). A consumed
    document yields engagement ~ N((c choc_mean + (1 - c) kale_mean) sat, c choc_std + (1 - c) kale_std),
    clipped to [0, 100], computed with the satisfaction before the step's update (RecSim's order).
    The domain parameter is `choc_mean`: clickbait pays more in some domains than in others.

    ## Action Space
    `Discrete(n_documents)`: the document to recommend (the user always consumes it).

    ## Observation Space
    `Box(3,)` float32: the previous engagement, the previous document's clickbait score (both 0 at
    the start) and the fraction of the time budget left. The user's parameters are hidden.

    ## Rewards
    The engagement.

    ## Starting State
    A user with d, k drawn as above and choc_mean drawn uniformly from `choc_means`.

    ## Episode End
    `terminated` when the time budget (`time_budget` steps) is spent: the user's session is over.

    ## Info
    `choc_mean`, `memory_discount`, `sensitivity`, `net_positive_exposure` and `satisfaction`: the
    hidden parameters and state, for analysis and for the ORACLE baseline only.

    ## Arguments
    - `choc_means`: the domain(s); a number, or a sequence to sample from at each reset
      (default: Sim2Rec's training domains {6..9} U {19..21}; the held-out domain is 14).
    - `n_documents=30`, `time_budget=140`, `kale_mean=4.0`, `choc_std=0.01`, `kale_std=0.01`,
      `innovation_std=0.05`, `memory_discount_range=(0.7, 0.9)`, `sensitivity_range=(0.4, 0.6)`.

    Integers must be integers (`n_documents` in [2, `MAX_DOCUMENTS`], `time_budget` in [1,
    `MAX_TIME_BUDGET`]), numbers finite, standard deviations >= 0; a bad argument raises
    `recsim_env.errors.ArgumentError` naming it. An action must be an integer (not a bool or a
    float) in [0, n_documents), else `recsim_env.errors.ActionError`.

    ## Version History
    - v0: initial version.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        *,
        choc_means: float | Sequence[float] = SIM2REC_TRAIN_DOMAINS,
        n_documents: int = 30,
        time_budget: int = 140,
        kale_mean: float = 4.0,
        choc_std: float = 0.01,
        kale_std: float = 0.01,
        innovation_std: float = 0.05,
        memory_discount_range: tuple[float, float] = (0.7, 0.9),
        sensitivity_range: tuple[float, float] = (0.4, 0.6),
    ) -> None:
        values = choc_means
        if isinstance(values, Real) or (isinstance(values, np.ndarray) and values.ndim == 0):
            values = [values[()] if isinstance(values, np.ndarray) else values]
        if (
            not isinstance(values, Sequence | np.ndarray)
            or isinstance(values, str | bytes)
            or len(values) == 0
        ):
            raise ArgumentError(
                f"choc_means must be a number or a non-empty sequence, got {describe(choc_means)}"
            )
        self.choc_means = np.array(
            [check_real(f"choc_means[{i}]", value) for i, value in enumerate(values)], dtype=np.float64
        )
        n_documents = check_integer("n_documents", n_documents, 2, MAX_DOCUMENTS)
        time_budget = check_integer("time_budget", time_budget, 1, MAX_TIME_BUDGET)
        kale_mean = check_real("kale_mean", kale_mean)
        choc_std = check_real("choc_std", choc_std, 0.0)
        kale_std = check_real("kale_std", kale_std, 0.0)
        innovation_std = check_real("innovation_std", innovation_std, 0.0)
        memory_discount_range = _check_range("memory_discount_range", memory_discount_range, 0.0, 1.0)
        if memory_discount_range[1] >= 1.0:
            raise ArgumentError(f"memory_discount_range must lie in [0, 1), got {memory_discount_range}")
        sensitivity_range = _check_range("sensitivity_range", sensitivity_range)
        self.clickbait = np.arange(n_documents) / n_documents
        self.time_budget = int(time_budget)
        self.kale_mean, self.choc_std, self.kale_std = float(kale_mean), float(choc_std), float(kale_std)
        self.innovation_std = float(innovation_std)
        self.memory_discount_range = memory_discount_range
        self.sensitivity_range = sensitivity_range
        self.action_space = spaces.Discrete(n_documents)
        self.observation_space = spaces.Box(
            low=np.zeros(3, dtype=np.float32),
            high=np.array([MAX_ENGAGEMENT, 1.0, 1.0], dtype=np.float32),
            dtype=np.float32,
        )
        self._steps_left = 0

    def hidden_parameters(self) -> np.ndarray:
        """[3] the current user's (choc_mean, memory_discount, sensitivity): what ORACLE may see."""
        return np.array([self._choc_mean, self._memory_discount, self._sensitivity], dtype=np.float32)

    def _info(self) -> dict[str, float]:
        return {
            "choc_mean": self._choc_mean,
            "memory_discount": self._memory_discount,
            "sensitivity": self._sensitivity,
            "net_positive_exposure": self._npe,
            "satisfaction": self._satisfaction(),
        }

    def _satisfaction(self) -> float:
        return float(1.0 / (1.0 + np.exp(-self._sensitivity * self._npe)))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        seed = check_seed(seed)
        check_options(options)
        super().reset(seed=seed)
        rng = self.np_random
        self._choc_mean = float(self.choc_means[rng.integers(len(self.choc_means))])
        self._memory_discount = float(rng.uniform(*self.memory_discount_range))
        self._sensitivity = float(rng.uniform(*self.sensitivity_range))
        self._npe = 0.5 / (1.0 - self._memory_discount)
        self._steps_left = self.time_budget
        return np.array([0.0, 0.0, 1.0], dtype=np.float32), self._info()

    def step(self, action):
        if self._steps_left <= 0:
            raise RuntimeError("call reset() before step()")
        if not (
            (type(action) is int or isinstance(action, np.integer)) and 0 <= action < self.action_space.n
        ):
            action = check_actions(
                action,
                name="action",
                n_envs=1,
                batched=False,
                slate_size=1,
                n_items=self.action_space.n,
                space=self.action_space,
            )[0, 0]
        c = self.clickbait[int(action)]
        rng = self.np_random
        mean = (c * self._choc_mean + (1.0 - c) * self.kale_mean) * self._satisfaction()
        std = c * self.choc_std + (1.0 - c) * self.kale_std
        engagement = float(np.clip(rng.normal(mean, std), 0.0, MAX_ENGAGEMENT))
        self._npe = self._memory_discount * self._npe - 2.0 * (c - 0.5) + rng.normal(0.0, self.innovation_std)
        self._steps_left -= 1
        obs = np.array([engagement, c, self._steps_left / self.time_budget], dtype=np.float32)
        return obs, engagement, self._steps_left == 0, False, self._info()


def _check_range(
    name: str, value, low: float | None = None, high: float | None = None
) -> tuple[float, float]:
    """A `(low, high)` pair of finite numbers with low <= high, inside [low, high] when given."""
    if not isinstance(value, Sequence | np.ndarray) or isinstance(value, str | bytes) or len(value) != 2:
        raise ArgumentError(f"{name} must be a (low, high) pair, got {describe(value)}")
    pair = (check_real(f"{name}[0]", value[0], low, high), check_real(f"{name}[1]", value[1], low, high))
    if not pair[0] <= pair[1]:
        raise ArgumentError(f"{name} must be (low, high) with low <= high, got {pair}")
    return pair
