"""Reinforcement-learning agents (builds on `recsim_env` and `simulators`).

Every agent implements `recsim_env.policies.Policy` (re-exported here as `Policy`) and its
persistence, `SavablePolicy`; `load_policy` restores any saved kind.

Light on purpose: torch, Ray and Stable-Baselines3 load only when a backend is used.
"""

from agents.policy import Policy, SavablePolicy, load_policy

__all__ = ["Policy", "SavablePolicy", "load_policy"]
