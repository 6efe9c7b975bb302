"""Configuration of the ground-truth user world (equations in docs/world.md)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recsim_env.checks import check_choice, check_config_fields, check_integer, check_real, describe
from recsim_env.errors import ArgumentError
from recsim_env.world.warm_start import SAMPLERS

MAX_ITEMS = 1_000_000
"""Largest catalogue (`n_items`) a world may have."""
MAX_USERS = 10_000_000
"""Largest user population (`n_users`)."""
MAX_EMBEDDING_DIM = 1024
"""Widest item embedding / user interest vector (`embedding_dim`)."""
MAX_HISTORY_AT_START = 10_000
"""Longest warm-start history (`history_len_at_start`)."""
MAX_WORLD_VALUES = 2**26
"""Cap on each of the world's catalogue and population tables (values, ~512 MiB as float64):
`n_items * (embedding_dim + 4)` and `n_users * (embedding_dim + n_categories + 3)`."""


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
    warm_start_sampler: str = "auto"
    """How the warm-start history is drawn (the same distribution either way; docs/catalogue.md):
    `"table"` (inverse CDF over the catalogue, cost per reset grows with `n_items`), `"rejection"`
    (per-category rejection sampling, cost independent of `n_items`) or `"auto"` (`"table"` up to
    `recsim_env.world.warm_start.TABLE_SAMPLER_MAX_ITEMS` = 500 items, `"rejection"` above)."""

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
        """Check every field (`ArgumentError` naming it) and store numbers as plain `int` / `float`."""

        check_group = functools.partial(check_config_fields, self, prefix="", store=True)
        check_group(("seed",), check_integer, low=0)
        check_group(("n_items",), check_integer, low=1, high=MAX_ITEMS)
        check_group(("n_categories",), check_integer, low=1, high=self.n_items)
        check_group(("n_users",), check_integer, low=1, high=MAX_USERS)
        check_group(("embedding_dim",), check_integer, low=1, high=MAX_EMBEDDING_DIM)
        check_group(("history_len_at_start",), check_integer, low=0, high=MAX_HISTORY_AT_START)
        check_group(("warm_start_sampler",), check_choice, choices=SAMPLERS)
        check_group(_UNIT_INTERVAL, check_real, low=0.0, high=1.0)
        check_group(_NON_NEGATIVE, check_real, low=0.0)
        check_group(_POSITIVE, check_real, low=0.0, low_open=True)
        check_group(_ANY_FINITE, check_real)
        catalogue = self.n_items * (self.embedding_dim + 4)
        if catalogue > MAX_WORLD_VALUES:
            raise ArgumentError(
                f"n_items, embedding_dim: the catalogue would hold {self.n_items:,} x "
                f"{self.embedding_dim + 4} = {catalogue:,} values, over the cap of {MAX_WORLD_VALUES:,}"
            )
        population = self.n_users * (self.embedding_dim + self.n_categories + 3)
        if population > MAX_WORLD_VALUES:
            raise ArgumentError(
                f"n_users, embedding_dim, n_categories: the population would hold {self.n_users:,} x "
                f"{self.embedding_dim + self.n_categories + 3} = {population:,} values, "
                f"over the cap of {MAX_WORLD_VALUES:,}"
            )

    @classmethod
    def from_mapping(cls, fields: Any, *, name: str = "world_config") -> WorldConfig:
        """The config from a dict of its fields; an unknown key or a bad value is an `ArgumentError`
        whose message starts with `name.field`."""
        if not isinstance(fields, Mapping):
            raise ArgumentError(
                f"{name} must be a WorldConfig or a dict of its fields, got {describe(fields)}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [key for key in fields if key not in known]
        if unknown:
            raise ArgumentError(
                f"{name}: unknown field(s) {describe(unknown)}; the fields of WorldConfig are {sorted(known)}"
            )
        try:
            return cls(**dict(fields))
        except ArgumentError as error:
            raise type(error)(f"{name}.{error}") from None

    def replace(self, **changes) -> WorldConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


_UNIT_INTERVAL = (
    "position_bias",
    "satiation_step_decay",
    "interest_drift",
    "satisfaction_memory",
    "satisfaction_carry_over",
)
"""Fields that are probabilities or convex weights."""
_NON_NEGATIVE = ("category_spread", "interest_spread", "completion_noise", "satiation_daily_decay")
"""Spreads, noise scales and decay rates."""
_POSITIVE = ("mean_duration_s", "mean_gap_days")
_ANY_FINITE = (
    "affinity_weight",
    "clickbait_weight",
    "satiation_weight",
    "click_bias",
    "completion_quality_weight",
    "completion_affinity_weight",
    "initial_satisfaction",
    "no_click_penalty",
    "hate_penalty",
    "leave_bias",
    "leave_dissatisfaction_weight",
    "gap_satisfaction_weight",
)
