"""Ray RLlib (new API stack) backend: the one adapter between this project and RLlib's moving API.

- `agents.rllib.env`: `recsim_env` environments registered for RLlib (the native vector env on each runner).
- `agents.rllib.module`: `SequenceActorCriticModule` (PPO) and `SequenceQModule` (DQN), `TorchRLModule`s
  over a project sequence encoder.
- `agents.rllib.policy`: `RLModulePolicy`, a trained RLModule as an `agents.Policy`.
- `agents.rllib.train`: `train_rllib`, what `seqrec train --backend rllib` runs.

Written against ray 2.60; import this package only when RLlib is installed (`pip install "ray[rllib]"`).
"""
