"""Sim2Rec settings: the variants, the front ends (`lts`, `seqrec`) and `Sim2RecConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from recsim_env.checks import DEVICES, check_choice, check_config_fields, check_integer
from recsim_env.envs.lts import SIM2REC_TRAIN_DOMAINS

VARIANTS = ("sim2rec", "universal", "direct", "oracle")
MAX_NETWORK_SIZE = 10_000_000
"""Largest width or catalogue a saved network may declare (a file must not make `load` allocate at will)."""
ENVS = ("lts", "seqrec")
HIDDEN_KEY = "hidden_parameters"
"""Observation entry of ORACLE: `[K + 4]` hidden parameters of the user (`hidden_vector`)."""
CONTINUOUS = ("leave_shift", "position_decay", "satiation_rate", "noise_scale")
"""The set's continuous hidden parameters (`simulators.simset.SimSetConfig`), in `hidden_vector` order."""


@dataclass(frozen=True, kw_only=True)
class Sim2RecConfig:
    """Everything that defines a Sim2Rec (or baseline) training run."""

    variant: str = "sim2rec"
    """`sim2rec` (context extractor), `universal`, `direct` or `oracle` (see `agents.sim2rec`)."""
    env: str = "lts"
    """`lts`: `SeqRecLTS-v0` (Box observations); `seqrec`: the `SeqRec-v0` family (Dict observations,
    trained on `SeqRecSimSet-v0` from a learned simulator; see `agents.sim2rec.envs`)."""
    train_domains: tuple[float, ...] = SIM2REC_TRAIN_DOMAINS
    """`lts`: choc_mean of the training simulators (`SeqRecLTS-v0` domains)."""
    direct_domain: float = 8.0
    """`lts`: the one training simulator of DIRECT."""
    simulator: str | None = None
    """`seqrec`: directory of the base learned simulator (None: `default_world_simulator()`)."""
    simset: dict = field(default_factory=dict)
    """`seqrec`: `SimSetConfig` fields (ranges of the hidden parameters); empty: its defaults."""
    d_model: int = 32
    """`seqrec`: width of the SASRec state encoder."""
    n_layers: int = 1
    """`seqrec`: self-attention blocks of the SASRec state encoder."""
    rollout_steps: int = 32
    """`seqrec`: steps per env per PPO iteration (`lts` rolls out exactly one episode)."""
    window: int = 20
    """Steps of history the extractor reads (`lts`: stacked observations; `seqrec`: the last
    `window` (item, feedback) pairs of the observation's history)."""
    context_dim: int = 16
    """Width of the context vector z."""
    hidden_dim: int = 64
    """Width of the actor and critic MLPs."""
    num_envs: int = 16
    """Parallel episodes per PPO iteration."""
    total_timesteps: int = 200_000
    """Environment steps of training."""
    learning_rate: float = 1e-3
    """Adam learning rate (annealed linearly to 0)."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_coef: float = 0.2
    """PPO clipping epsilon."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    consistency_coef: float = 0.8
    """Weight of the context consistency loss (0 disables it; Sim2Rec uses 0.8)."""
    update_epochs: int = 4
    """PPO epochs per iteration."""
    num_minibatches: int = 4
    """Minibatches per epoch."""
    max_grad_norm: float = 0.5
    """Gradient clipping."""
    reward_scale: float = 0.1
    """Rewards are multiplied by this for the value targets (engagement is ~1-20 per step)."""
    seed: int = 0
    """Seed of the environments, the network initialisation and the action sampling."""
    device: str = "cpu"
    """`cpu`, `cuda` or `auto` (CUDA when present)."""
    env_kwargs: dict = field(default_factory=dict)
    """Extra environment arguments (`SeqRecLTS-v0`'s, e.g. {"time_budget": 60}, or `SeqRec-v0`'s)."""

    def __post_init__(self) -> None:
        check_config_fields(self, ("variant",), check_choice, choices=VARIANTS)
        check_config_fields(self, ("device",), check_choice, choices=DEVICES)
        check_config_fields(self, ("env",), check_choice, choices=ENVS)
        positive = ("window", "context_dim", "hidden_dim", "num_envs", "total_timesteps")
        check_config_fields(self, positive + ("d_model", "n_layers", "rollout_steps"), check_integer, low=1)
        if self.num_envs % self.num_minibatches:
            raise ValueError("Sim2RecConfig.num_envs must be divisible by num_minibatches")
        if not self.train_domains:
            raise ValueError("Sim2RecConfig.train_domains must not be empty")

    @property
    def domains(self) -> tuple[float, ...]:
        """The simulators this variant trains on."""
        return (self.direct_domain,) if self.variant == "direct" else tuple(self.train_domains)

    @property
    def num_steps(self) -> int:
        """Steps per env per iteration. `lts`: exactly one episode (the time budget), so that each
        env's steps in a rollout belong to one user; `seqrec`: `rollout_steps` (episodes end at
        different times; the consistency loss then groups the steps by episode)."""
        if self.env == "seqrec":
            return self.rollout_steps
        return int(self.env_kwargs.get("time_budget", 140))

    @property
    def iterations(self) -> int:
        return max(1, self.total_timesteps // (self.num_envs * self.num_steps))
