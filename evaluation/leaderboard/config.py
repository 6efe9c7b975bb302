"""What a leaderboard run compares: settings, reference policies, trained agents and the budget."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.baselines import BASELINES
from recsim_env.errors import ArgumentError
from recsim_env.policies import REFERENCE_POLICIES

SETTINGS = ("default", "retention")
"""`default`: `SeqRec-v0` as registered (one session, click reward). `retention`: several sessions per
episode and a retention term at each session end (`retention_sessions`, `retention_weight`)."""

WORLD_REFERENCES = tuple(REFERENCE_POLICIES)
"""Know the world's equations (`recsim_env.policies.REFERENCE_POLICIES`); the oracles also read its hidden state."""
REFERENCES = BASELINES + WORLD_REFERENCES

ONLINE_AGENTS = ("ppo", "a2c", "dqn")
"""`agents.training` (Stable-Baselines3) in the setting's environment, under `time_budget_s`."""
OFFLINE_AGENTS = ("supervised", "dt4ier", "tscac")
"""Registered agents trained on the seed's logs."""
SIMULATOR_AGENTS = ("sim2rec",)
"""Registered agents trained in simulators (their config says which)."""
AGENTS = ONLINE_AGENTS + OFFLINE_AGENTS + SIMULATOR_AGENTS

CEILING = "filter-farsighted"
"""The strongest policy that sees only the observation: agents are scored as a share of it."""

QUICK = {"seeds": 2, "episodes": 200, "time_budget_s": 60.0, "log_steps": 20_000}
"""The fields `--quick` changes (where the command line leaves them at their defaults)."""


@dataclass(frozen=True, kw_only=True)
class LeaderboardConfig:
    """One leaderboard: every policy on the same seeds and users, in each setting."""

    seeds: int = 5
    """Seeds per setting: each trains every agent once and evaluates every policy on its own users."""
    episodes: int = 1000
    """Evaluation episodes per policy, setting and seed."""
    time_budget_s: float = 600.0
    """Training budget in seconds per agent, setting and seed (agents whose config has no time budget run it as set)."""
    settings: tuple[str, ...] = SETTINGS
    """Which of `default` and `retention` to run."""
    references: tuple[str, ...] = REFERENCES
    """Reference policies: uniform, popularity, greedy, filter-myopic, filter-farsighted and the two oracles."""
    agents: tuple[str, ...] = ("ppo", "dqn", "supervised", "dt4ier")
    """Agents to train: ppo, a2c, dqn (online); supervised, dt4ier, tscac (on logs); sim2rec (in simulators)."""
    agent_configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Config fields per agent, as {"ppo": {"algo_config": {"ent_coef": 0.01}}, "dt4ier": {"steps": 500}}; the
    fields the leaderboard sets for every agent (seed, budget, environment, algorithm) are refused."""
    sampled_rows: bool = True
    """Also evaluate each agent whose policy is a distribution (ppo, a2c, dt4ier, sim2rec) sampling from it."""
    log_steps: int = 50_000
    """User-steps of uniform world logs per seed (baselines and offline agents are fitted on them)."""
    retention_sessions: int = 4
    """Sessions per episode in the retention setting."""
    retention_weight: float = 5.0
    """Reward per session end in the retention setting: retention_weight / (1 + return gap in days)."""
    device: str = "cpu"
    """Torch device of the agents: cpu, cuda or auto."""

    def __post_init__(self) -> None:
        for name in ("seeds", "episodes", "log_steps", "retention_sessions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f"{name} must be a positive integer, got {value!r}")
        if self.episodes < 2:
            raise ArgumentError(f"episodes must be at least 2 (an interval needs two), got {self.episodes}")
        for name in ("time_budget_s", "retention_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ArgumentError(f"{name} must be a non-negative number, got {value!r}")
        if not self.time_budget_s > 0:
            raise ArgumentError(f"time_budget_s must be positive, got {self.time_budget_s!r}")
        for name, known in (("settings", SETTINGS), ("references", REFERENCES), ("agents", AGENTS)):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, tuple | list):
                raise ArgumentError(f"{name} must be a list of names from {list(known)}, got {value!r}")
            unknown = [v for v in value if v not in known]
            if unknown or len(set(value)) != len(value):
                raise ArgumentError(
                    f"{name}: unknown or repeated name(s) {unknown or list(value)}; known: {list(known)}"
                )
            object.__setattr__(self, name, tuple(value))
        if not self.settings:
            raise ArgumentError("settings must name at least one setting")
        if not isinstance(self.agent_configs, Mapping) or not all(
            isinstance(value, Mapping) for value in self.agent_configs.values()
        ):
            raise ArgumentError(
                f"agent_configs must map agent names to dicts of config fields, got {self.agent_configs!r}"
            )
        stray = sorted(set(self.agent_configs) - set(self.agents))
        if stray:
            raise ArgumentError(f"agent_configs: {stray} are not in agents {list(self.agents)}")
        for agent, fields in self.agent_configs.items():
            _check_agent_fields(agent, fields)
        if self.device not in ("cpu", "cuda", "auto"):
            raise ArgumentError(f"device must be cpu, cuda or auto, got {self.device!r}")

    def env_kwargs(self, setting: str) -> dict[str, Any]:
        """`SeqRec-v0` arguments of `setting`."""
        if setting == "default":
            return {}
        return {
            "sessions_per_episode": self.retention_sessions,
            "retention_weight": float(self.retention_weight),
        }

    def with_quick_defaults(self, given: set[str] = frozenset()) -> LeaderboardConfig:
        """`QUICK`'s values for each of its fields not in `given` (the fields a caller chose)."""
        return dataclasses.replace(
            self, **{name: value for name, value in QUICK.items() if name not in given}
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            if not isinstance(getattr(self, f.name), Mapping)
            else {k: dict(v) for k, v in getattr(self, f.name).items()}
            for f in dataclasses.fields(self)
        }


FIXED_FIELDS = (
    "seed",
    "time_budget_s",
    "stop_timesteps",
    "env_id",
    "env_config",
    "env_kwargs",
    "algo",
    "backend",
)
"""Config fields the leaderboard sets alike for every agent, so `agent_configs` may not change them."""


def _check_agent_fields(agent: str, fields: Mapping[str, Any]) -> None:
    """`agent_configs[agent]` names only fields of the agent's config, and none of `FIXED_FIELDS`."""
    if agent in ONLINE_AGENTS:
        from agents.training import TrainConfig

        config_class = TrainConfig
    else:
        from agents.registry import AGENTS

        config_class = AGENTS[agent].config_class
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ArgumentError(
            f"agent_configs[{agent!r}]: unknown {config_class.__name__} field(s) {unknown}; known: {sorted(names)}"
        )
    fixed = sorted(set(fields) & set(FIXED_FIELDS))
    if fixed:
        raise ArgumentError(f"agent_configs[{agent!r}]: {fixed} are set by the leaderboard for every agent")
