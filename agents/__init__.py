"""Reinforcement-learning agents and the `Policy` contract (builds on `recsim_env` and `simulators`).

Light on purpose: torch, Ray and Stable-Baselines3 load only when a backend is used.
"""

from agents.policy import Policy, load_policy

__all__ = ["Policy", "load_policy"]
