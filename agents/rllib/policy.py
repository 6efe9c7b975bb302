"""A trained RLlib RLModule as an `agents.Policy` (no Ray cluster needed to act, save or load).

Saved as a directory: `policy.json` (kind "rllib"; algorithm, environment id and arguments, the
RLModule's `model_config`) and `module_state.pt` (the module's `state_dict`, tensors only).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.policy import (
    ProbabilityPolicy,
    read_manifest,
    write_atomic,
    write_manifest,
)
from agents.rllib.module import MODULES, model_config

STATE_FILE = "module_state.pt"


class RLModulePolicy(ProbabilityPolicy):
    """`SequenceActorCriticModule` (its pi) or `SequenceQModule` (its greedy policy) behind the contract.

    Sampling uses the policy's own numpy generator (`seed`); deterministic actions are the argmax.
    """

    kind = "rllib"

    def __init__(
        self,
        module,
        *,
        algo: str,
        env_id: str = "SeqRec-v0",
        env_config: Mapping[str, Any] | None = None,
        module_config: Mapping[str, Any] | None = None,
        seed: int | None = 0,
    ) -> None:
        self.module = module.eval()
        self.algo = algo
        self.name = f"rllib-{algo}"
        self.env_id = env_id
        self.env_config = dict(env_config or {})
        self.module_config = dict(module_config or {})
        self.n_items = int(module.action_space.n)
        self.slate_size = 1
        self.keys = tuple(module.observation_space.spaces)
        self.rng = np.random.default_rng(seed)

    @classmethod
    def build(
        cls,
        *,
        algo: str = "ppo",
        env_id: str = "SeqRec-v0",
        env_config: Mapping[str, Any] | None = None,
        seed: int = 0,
        **module_changes: Any,
    ) -> RLModulePolicy:
        """A fresh (untrained) module for the environment, e.g. for tests; `module_changes` as in `model_config`."""
        from agents.training.config import check_env_config

        observation_space, action_space = check_env_config(env_id, dict(env_config or {}))
        config = model_config(**module_changes)
        torch.manual_seed(seed)
        module = MODULES[algo](
            observation_space=observation_space, action_space=action_space, model_config=config
        )
        return cls(module, algo=algo, env_id=env_id, env_config=env_config, module_config=config, seed=seed)

    @property
    def trunk(self):
        """The module's `SequenceFeaturesExtractor`."""
        return self.module.trunk if hasattr(self.module, "trunk") else self.module.encoder.trunk

    def seed(self, seed: int | None) -> None:
        """Reset the sampling generator."""
        self.rng = np.random.default_rng(seed)

    def _probabilities(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        obs = {key: torch.as_tensor(np.asarray(batch[key])) for key in self.keys}
        with torch.no_grad():
            probabilities = self.module.action_probabilities(obs).double().cpu().numpy()
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def save(self, path: str | os.PathLike) -> None:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        state = {
            key: value.detach().cpu()
            for key, value in self.module.state_dict().items()
            if not key.startswith("_target")  # DQN's target network is training state, not the policy
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomic(out / STATE_FILE, buffer.getvalue())
        encoder = self.trunk.encoder
        # The encoder as built (not a pretrained checkpoint path that may move): the weights are in the state.
        module_config = {
            **_module_fields(self.module_config),
            "encoder": encoder.name,
            "encoder_config": encoder.config.to_dict(),
            "encoder_checkpoint": None,
        }
        config = {
            "algo": self.algo,
            "env_id": self.env_id,
            "env_config": self.env_config,
            "module_config": module_config,
        }
        write_manifest(out, self.kind, config)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RLModulePolicy:
        config = read_manifest(path)["config"]
        policy = cls.build(
            algo=config["algo"],
            env_id=config["env_id"],
            env_config=config["env_config"],
            **config["module_config"],
        )
        state = torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=True)
        policy.module.load_state_dict(state)
        policy.module.eval()
        return policy


def _module_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of `config` that `model_config` knows (RLlib adds its own, e.g. DQN's epsilon)."""
    from agents.rllib.module import DEFAULT_MODEL_CONFIG

    return {key: value for key, value in config.items() if key in DEFAULT_MODEL_CONFIG}
