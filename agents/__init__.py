"""Reinforcement-learning agents and the `Policy` contract (builds on `recsim_env` and `simulators`)."""
