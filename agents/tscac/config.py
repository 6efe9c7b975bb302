"""TSCAC settings: the signals, which of them are constrained, and `TSCACConfig`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsim_env.checks import DEVICES, check_choice, check_config_fields, check_integer, check_real
from recsim_env.world import UserWorld

MAX_ITEMS = 10_000_000
"""Largest catalogue a saved policy may declare (a file must not make `load` allocate at will)."""

SIGNALS: tuple[str, ...] = UserWorld.signals
"""The world's signals, in the order of every feedback vector."""
MAIN_SIGNAL = "watch_time"
AUX_SIGNALS: tuple[str, ...] = tuple(name for name in SIGNALS if name != MAIN_SIGNAL)
"""Constrained signals (the world's others), in the order of `lambdas`, `aux_gammas`, `scalarised_weights`."""
AUX_SIGN = np.array([-1.0 if name in UserWorld.negative_signals else 1.0 for name in AUX_SIGNALS])
"""+1: keep the rate above a threshold; -1 (a cost, e.g. hate): keep it below (maximise -hate)."""
VARIANTS = ("tscac", "bc", "rcpo", "scalarised")
MAIN = SIGNALS.index(MAIN_SIGNAL)
AUX = np.array([SIGNALS.index(name) for name in AUX_SIGNALS])


@dataclass(frozen=True, kw_only=True)
class TSCACConfig:
    """Everything that defines a TSCAC (or baseline) training run."""

    variant: str = "tscac"
    """`tscac`, `bc`, `rcpo` or `scalarised` (see the module docstring)."""
    lambdas: tuple[float, ...] = (0.2, 0.2, 0.2, 0.2, 0.2)
    """lambda_i > 0 of each auxiliary signal (`AUX_SIGNALS` order) in stage two's closed form; smaller
    sum = more weight on watch time (0.2 each kept every constraint in `benchmarks/tscac_world.py`, 3 seeds)."""
    gamma: float = 0.9
    """Discount of the main (watch time) return."""
    aux_gammas: tuple[float, ...] = (0.9, 0.9, 0.9, 0.9, 0.9)
    """gamma_i of each auxiliary return."""
    tolerance: float = 0.1
    """Constraint thresholds: behaviour rate x (1 - tolerance), x (1 + tolerance) for hate."""
    history_len: int = 20
    """L: exposures in a state (as `SeqRec-v0`'s `history_len`)."""
    d_model: int = 32
    """Width of the SASRec encoders."""
    n_layers: int = 1
    """Self-attention blocks per encoder."""
    dropout: float = 0.1
    """Dropout inside the encoders."""
    n_candidates: int = 0
    """0: softmax over the whole catalogue; C > 0: over the logged item and C uniform candidates."""
    watch_time_scale: float = 30.0
    """Seconds per unit of watch time, in rewards and encoder inputs (keeps A_1 of order 1)."""
    actor_objective: str = "awr"
    """Stage-one / baseline actor step: `awr` (offline, default) or `pg` (the paper's -A log pi)."""
    awr_temperature: float = 0.5
    """beta of the AWR weights exp(A / beta)."""
    max_weight: float = 20.0
    """Clip of the AWR weights."""
    scalarised_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    """k_i of the scalarised baseline, on the signed auxiliary advantages (hate enters as -hate)."""
    rcpo_learning_rate: float = 0.05
    """eta: dual ascent step of RCPO's multipliers."""
    critic_steps: int = 2000
    """Gradient steps of the critic."""
    actor_steps: int = 1500
    """Gradient steps of each actor."""
    batch_size: int = 256
    """Transitions per gradient step."""
    learning_rate: float = 1e-3
    """Adam learning rate of actors and critic."""
    target_tau: float = 0.02
    """Polyak rate of the critic's target network."""
    seed: int = 0
    """Seed of initialisation, minibatches and action sampling."""
    device: str = "cpu"
    """`cpu`, `cuda` or `auto` (CUDA when present)."""

    def __post_init__(self) -> None:
        check_config_fields(self, ("variant",), check_choice, choices=VARIANTS)
        check_config_fields(self, ("device",), check_choice, choices=DEVICES)
        for name in ("lambdas", "aux_gammas", "scalarised_weights"):
            value = getattr(self, name)
            if len(value) != len(AUX_SIGNALS):
                raise ValueError(
                    f"TSCACConfig.{name} needs {len(AUX_SIGNALS)} values ({AUX_SIGNALS}), got {value}"
                )
        for i, value in enumerate(self.lambdas):
            check_real(f"TSCACConfig.lambdas[{i}]", value, 0.0, low_open=True)
        for i, value in enumerate(self.aux_gammas):
            check_real(f"TSCACConfig.aux_gammas[{i}]", value, 0.0, 1.0, high_open=True)
        check_config_fields(self, ("gamma", "tolerance"), check_real, low=0.0, high=1.0, high_open=True)
        check_config_fields(self, ("actor_objective",), check_choice, choices=("awr", "pg"))
        sizes = ("history_len", "d_model", "n_layers", "critic_steps", "actor_steps", "batch_size")
        check_config_fields(self, sizes, check_integer, low=1)
        scales = ("watch_time_scale", "awr_temperature", "max_weight", "learning_rate")
        check_config_fields(self, scales, check_real, low=0.0, low_open=True)
        check_config_fields(self, ("n_candidates",), check_integer, low=0)
        check_config_fields(self, ("target_tau",), check_real, low=0.0, high=1.0, low_open=True)

    @property
    def gammas(self) -> np.ndarray:
        """[6] discount of each signal, `SIGNALS` order (unused signals get the main gamma)."""
        gammas = np.full(len(SIGNALS), self.gamma)
        gammas[AUX] = self.aux_gammas
        return gammas

    @property
    def reward_scale(self) -> np.ndarray:
        """[6] multiplier of each feedback signal in rewards and encoder inputs."""
        scale = np.ones(len(SIGNALS), dtype=np.float32)
        scale[MAIN] = 1.0 / self.watch_time_scale
        return scale
