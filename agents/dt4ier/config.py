"""DT4IER's configuration: `DT4IERConfig` (the dataclass and its validation) and the constants."""

from __future__ import annotations

import re
from dataclasses import dataclass

from recsim_env.checks import check_choice, check_config_fields, check_integer, check_real

MAX_ITEMS = 10_000_000
"""Largest catalogue a saved policy may declare (a file must not make `load` allocate at will)."""

KIND = "dt4ier"
VARIANTS = ("dt4ier", "dt", "no_weights", "no_reward_encoder", "no_contrastive", "bc")
_THRESHOLD = re.compile(r"^(?P<column>[A-Za-z_][\w]*)\s*>=\s*(?P<value>-?[\d.]+)$")


@dataclass(frozen=True, kw_only=True)
class DT4IERConfig:
    """Everything that defines a DT4IER (or ablation / baseline) training run."""

    variant: str = "dt4ier"
    """`dt4ier`, `dt`, `no_weights`, `no_reward_encoder`, `no_contrastive` or `bc` (module docstring)."""
    history_len: int = 20
    """L: exposures in a state window (as `SeqRec-v0`'s `history_len`)."""
    context_len: int = 8
    """K: steps (R, s, a) the transformer reads."""
    d_model: int = 32
    """Width of the state encoder and the transformer."""
    encoder_layers: int = 1
    """Self-attention blocks of the SASRec state encoder."""
    n_layers: int = 1
    """Causal transformer blocks over the token sequence."""
    n_heads: int = 1
    """Attention heads (divides d_model)."""
    dropout: float = 0.1
    """Dropout in the encoder and the transformer."""
    n_buckets: int = 16
    """B: meta embeddings of the multi-reward embedding."""
    balance_gamma: float = 0.5
    """gamma of the balancing loss -(w_s R_s + w_l R_l) + gamma |w_s R_s - w_l R_l|."""
    alpha: float = 0.1
    """Weight of the contrastive term in L_ce + alpha L_contra."""
    temperature: float = 0.1
    """tau of the contrastive InfoNCE (cosine similarities / tau)."""
    contrastive_negatives: str = "returns"
    """What y_t is contrasted against. `returns` (DT4Rec's weighted contrastive learning, the lineage's
    reference code): the model's own predictions y^-_t for the same context with the return prompt
    replaced by negative sessions' returns-to-go; `items`: the item embeddings of actions characteristic
    of negative sessions."""
    negative_prompts: int = 4
    """`returns`: negative sessions' return prompts per context (each one more pass of the token
    transformer, not of the state encoder)."""
    n_negatives: int = 32
    """`items`: actions of negative sessions per batch."""
    negative_quantile: float = 0.25
    """Negative sessions: clicks and retention both at or below this quantile over sessions."""
    target_quantile: float = 0.9
    """Target return at inference: this quantile (per component) of the training horizons' initial returns."""
    immediate_signal: str = "auto"
    """Immediate reward: a feedback column (`click`) or `column>=value` (`rating>=4`); `auto` picks
    `click` if logged, else `rating>=4`."""
    session_gap_s: float = 3600.0
    """Without a `session_id` column, a gap longer than this (seconds) starts a new session."""
    return_horizon: str = "session"
    """Returns-to-go to the end of the current `session` (retention held fixed within it) or of the
    user's whole `trajectory` (retention decremented at each session end)."""
    steps: int = 2000
    """Gradient steps of the transformer (the return conditioning is learnt late: far fewer leave the
    prompt nearly ignored)."""
    balance_steps: int = 300
    """Gradient steps of the balancing network (before the transformer's)."""
    batch_size: int = 64
    """Contexts (of K steps) per gradient step."""
    learning_rate: float = 3e-3
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    seed: int = 0
    """Seed of initialisation, minibatches and action sampling."""
    device: str = "cpu"
    """`cpu`, `cuda` or `auto` (CUDA and bf16 autocast when present)."""

    def __post_init__(self) -> None:
        check_config_fields(self, ("variant",), check_choice, choices=VARIANTS)
        sizes = ("history_len", "context_len", "d_model", "encoder_layers", "n_layers", "n_heads")
        counts = ("n_buckets", "n_negatives", "negative_prompts", "batch_size")
        check_config_fields(self, sizes + counts, check_integer, low=1)
        check_config_fields(self, ("steps", "balance_steps"), check_integer, low=0)
        if self.d_model % self.n_heads:
            raise ValueError(f"DT4IERConfig.n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        check_config_fields(self, ("dropout",), check_real, low=0.0, high=1.0, high_open=True)
        check_config_fields(self, ("negative_quantile", "target_quantile"), check_real, low=0.0, high=1.0)
        positive = ("temperature", "learning_rate", "session_gap_s")
        check_config_fields(self, positive, check_real, low=0.0, low_open=True)
        check_config_fields(self, ("contrastive_negatives",), check_choice, choices=("returns", "items"))
        check_config_fields(self, ("return_horizon",), check_choice, choices=("session", "trajectory"))
        check_config_fields(self, ("alpha", "balance_gamma", "weight_decay"), check_real, low=0.0)
        if self.immediate_signal != "auto" and not (
            _THRESHOLD.match(self.immediate_signal) or self.immediate_signal.isidentifier()
        ):
            raise ValueError(
                "DT4IERConfig.immediate_signal must be 'auto', a column name or 'column>=value', "
                f"got {self.immediate_signal!r}"
            )

    @property
    def return_conditioned(self) -> bool:
        """Whether the tokens include returns-to-go (every variant but `bc`)."""
        return self.variant != "bc"

    @property
    def reward_encoder(self) -> bool:
        """Multi-reward (soft-bucket) embedding of R; else a linear map."""
        return self.variant in ("dt4ier", "no_weights", "no_contrastive")

    @property
    def adaptive_weights(self) -> bool:
        """Adaptive return balancing of the R prompt."""
        return self.variant in ("dt4ier", "no_reward_encoder", "no_contrastive")

    @property
    def contrastive(self) -> bool:
        """The contrastive term against negative sessions' actions."""
        return self.variant in ("dt4ier", "no_weights", "no_reward_encoder") and self.alpha > 0
