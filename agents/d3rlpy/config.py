"""`D3rlpyConfig`: which d3rlpy algorithm to train on which Minari dataset, and how long."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from recsim_env.checks import DEVICES, check_choice, check_config_fields, check_integer, check_real

ALGORITHMS = ("discrete_cql", "discrete_bc", "dqn", "double_dqn")
"""The discrete-action d3rlpy algorithms this adapter builds (by their d3rlpy config class)."""


@dataclass(frozen=True, kw_only=True)
class D3rlpyConfig:
    """Settings of `agents.d3rlpy.train` (the d3rlpy agent of `seqrec train --agent d3rlpy`)."""

    dataset: str
    """Minari dataset id written by `seqrec world log --minari-id` (under `MINARI_DATASETS_PATH`)."""
    algo: str = "discrete_cql"
    """One of `ALGORITHMS`: DiscreteCQL, DiscreteBC, DQN or DoubleDQN."""
    steps: int = 10_000
    """Gradient steps."""
    steps_per_epoch: int = 1_000
    """Gradient steps between d3rlpy's progress reports."""
    batch_size: int = 256
    """Transitions per gradient step."""
    learning_rate: float = 3e-4
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor (not used by DiscreteBC)."""
    alpha: float = 1.0
    """DiscreteCQL's conservative weight."""
    target_update_interval: int = 1_000
    """Gradient steps between target-network copies (Q-learning algorithms)."""
    hidden_units: tuple[int, ...] = (256, 256)
    """Widths of the MLP encoder over `encode_observations` features."""
    seed: int = 0
    """Seed of d3rlpy's sampling and initialisation."""
    device: str = "cpu"
    """torch device for training and acting."""

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError("D3rlpyConfig.dataset: give a Minari dataset id, e.g. 'seqrec/world-egreedy-v0'")
        check_choice("D3rlpyConfig.algo", self.algo, ALGORITHMS)
        check_choice("D3rlpyConfig.device", self.device, DEVICES)
        check = functools.partial(check_config_fields, self, prefix="D3rlpyConfig.", store=True)
        check(("steps", "steps_per_epoch", "batch_size", "target_update_interval"), check_integer, low=1)
        check(("seed",), check_integer, low=0)
        check(("learning_rate", "alpha"), check_real, low=0.0, low_open=True)
        check(("gamma",), check_real, low=0.0, high=1.0)
        units = tuple(self.hidden_units)
        if not units or any(isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in units):
            raise ValueError(f"D3rlpyConfig.hidden_units: positive integers, got {self.hidden_units!r}")
        object.__setattr__(self, "hidden_units", units)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "hidden_units": list(self.hidden_units)}

    def algo_config(self):
        """The d3rlpy config of `algo` with these settings."""
        import d3rlpy

        encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=list(self.hidden_units))
        common = {"batch_size": self.batch_size, "learning_rate": self.learning_rate, "gamma": self.gamma}
        if self.algo == "discrete_bc":
            return d3rlpy.algos.DiscreteBCConfig(encoder_factory=encoder, **common)
        q_learning = {
            **common,
            "encoder_factory": encoder,
            "target_update_interval": self.target_update_interval,
        }
        if self.algo == "discrete_cql":
            return d3rlpy.algos.DiscreteCQLConfig(alpha=self.alpha, **q_learning)
        if self.algo == "dqn":
            return d3rlpy.algos.DQNConfig(**q_learning)
        return d3rlpy.algos.DoubleDQNConfig(**q_learning)
