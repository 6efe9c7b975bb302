"""The ground-truth user world: parametric users whose every probability is known (docs/world.md)."""

from recsim_env.world.config import WorldConfig
from recsim_env.world.world import SIGNALS, UserWorld, WorldState

__all__ = ["SIGNALS", "UserWorld", "WorldConfig", "WorldState"]
