"""Configuration of the ground-truth user world (equations in docs/world.md)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class WorldConfig:
    """Every constant of the ground-truth world. The defaults are the embedded `SeqRec-v0` world."""

    seed: int = 0
    """Seed of the world itself (catalogue and user population); episodes are seeded separately."""
    n_items: int = 500
    """Catalogue size."""
    n_categories: int = 10
    """Item categories; satiation is tracked per category."""
    n_users: int = 5000
    """Size of the user population episodes draw from."""
    embedding_dim: int = 16
    """Width of the latent item embeddings and user interest vectors."""
    category_spread: float = 0.6
    """Spread of item embeddings around their category centroid (0: all items of a category alike)."""
    interest_spread: float = 0.7
    """Spread of a user's interest around the centroid of their favourite category."""
    history_len_at_start: int = 10
    """Items a user has consumed before the episode starts (the warm-start history)."""

    # Choice (click) model: multinomial logit with a no-click option and position bias.
    affinity_weight: float = 4.0
    """Weight of interest-item affinity (cosine) in the click utility."""
    clickbait_weight: float = 2.5
    """Weight of an item's clickbait score in the click utility."""
    satiation_weight: float = 0.8
    """How much satiation with an item's category lowers its click utility."""
    click_bias: float = -2.0
    """Click utility offset; the no-click option has utility 0."""
    position_bias: float = 0.75
    """Examination weight of slate position k is position_bias ** k."""

    # Consumption: completion, watch time and the other signals.
    completion_quality_weight: float = 5.0
    """Weight of item quality (centred) in the completion logit."""
    completion_affinity_weight: float = 2.0
    """Weight of affinity in the completion logit."""
    completion_noise: float = 0.5
    """Scale of the logistic noise in the completion logit."""
    mean_duration_s: float = 45.0
    """Median item duration in seconds (log-normal)."""

    # Satiation, interest drift, satisfaction and leaving.
    satiation_step_decay: float = 0.85
    """Per-step multiplicative decay of category satiation within a session."""
    satiation_daily_decay: float = 1.0
    """Satiation decays by exp(-satiation_daily_decay * gap_days) between sessions."""
    interest_drift: float = 0.08
    """Step size with which interest moves toward a consumed item's embedding."""
    satisfaction_memory: float = 0.7
    """Exponential-average memory of the per-step experience (the satisfaction level)."""
    initial_satisfaction: float = 0.2
    """Satisfaction at the start of a user's first session."""
    no_click_penalty: float = 0.25
    """Experience of a step with nothing consumed."""
    hate_penalty: float = 1.0
    """Experience cost of a hate."""
    leave_bias: float = -3.5
    """Leave logit at zero satisfaction (a patience-1 user leaves with prob sigmoid(-3.5) = 3% a step)."""
    leave_dissatisfaction_weight: float = 4.0
    """How fast the leave probability rises as satisfaction falls."""

    # Returning between sessions.
    mean_gap_days: float = 2.0
    """Mean return gap in days at zero satisfaction for an average user."""
    gap_satisfaction_weight: float = 1.5
    """Return gap shrinks as exp(-gap_satisfaction_weight * satisfaction at session end)."""
    satisfaction_carry_over: float = 0.5
    """Fraction of end-of-session satisfaction a user brings to the next session."""

    def __post_init__(self) -> None:
        positive = ("n_items", "n_categories", "n_users", "embedding_dim", "mean_duration_s", "mean_gap_days")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"WorldConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.history_len_at_start < 0:
            raise ValueError(
                f"WorldConfig.history_len_at_start must be >= 0, got {self.history_len_at_start}"
            )
        if self.n_categories > self.n_items:
            raise ValueError(
                f"WorldConfig.n_categories ({self.n_categories}) cannot exceed n_items ({self.n_items})"
            )
        unit_interval = (
            "position_bias",
            "satiation_step_decay",
            "satisfaction_memory",
            "satisfaction_carry_over",
        )
        for name in unit_interval:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"WorldConfig.{name} must lie in [0, 1], got {value!r}")

    def replace(self, **changes) -> WorldConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
