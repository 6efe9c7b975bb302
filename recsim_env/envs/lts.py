"""`SeqRecLTS-v0`: RecSim's long-term-satisfaction ("chocolate / kale") user, as used by Sim2Rec."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

MAX_ENGAGEMENT = 100.0
SIM2REC_TRAIN_DOMAINS = (6.0, 7.0, 8.0, 9.0, 19.0, 20.0, 21.0)
"""choc_mean of the training simulators in Sim2Rec's synthetic benchmark."""
SIM2REC_TEST_DOMAIN = 14.0
"""choc_mean of the held-out test domain."""


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
        self.choc_means = np.atleast_1d(np.asarray(choc_means, dtype=np.float64))
        if self.choc_means.ndim != 1 or len(self.choc_means) == 0 or not np.all(np.isfinite(self.choc_means)):
            raise ValueError(
                f"argument 'choc_means' must be a number or a non-empty sequence, got {choc_means!r}"
            )
        if n_documents < 2:
            raise ValueError(f"argument 'n_documents' must be at least 2, got {n_documents}")
        if time_budget < 1:
            raise ValueError(f"argument 'time_budget' must be positive, got {time_budget}")
        for name, (low, high) in (
            ("memory_discount_range", memory_discount_range),
            ("sensitivity_range", sensitivity_range),
        ):
            if not low <= high:
                raise ValueError(f"argument {name!r} must be (low, high) with low <= high, got {(low, high)}")
        if not (0.0 <= memory_discount_range[0] and memory_discount_range[1] < 1.0):
            raise ValueError(
                f"argument 'memory_discount_range' must lie in [0, 1), got {memory_discount_range}"
            )
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
            isinstance(action, (int, np.integer)) or (np.ndim(action) == 0 and float(action).is_integer())
        ):
            raise ValueError(f"invalid action {action!r} for action space {self.action_space}")
        action = int(action)
        if not 0 <= action < self.action_space.n:
            raise ValueError(f"invalid action {action!r} for action space {self.action_space}")
        c = self.clickbait[action]
        rng = self.np_random
        mean = (c * self._choc_mean + (1.0 - c) * self.kale_mean) * self._satisfaction()
        std = c * self.choc_std + (1.0 - c) * self.kale_std
        engagement = float(np.clip(rng.normal(mean, std), 0.0, MAX_ENGAGEMENT))
        self._npe = self._memory_discount * self._npe - 2.0 * (c - 0.5) + rng.normal(0.0, self.innovation_std)
        self._steps_left -= 1
        obs = np.array([engagement, c, self._steps_left / self.time_budget], dtype=np.float32)
        return obs, engagement, self._steps_left == 0, False, self._info()
