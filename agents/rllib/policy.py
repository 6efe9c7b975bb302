"""A trained RLlib RLModule as an `agents.Policy` (no Ray cluster needed to act, save or load).

Saved as a policy artifact (`agents.policy.save_policy`, kind "rllib"): `policy.json` (the algorithm,
the environment id and arguments, the RLModule's `model_config` with the encoder as built) and
`weights.safetensors` (the module's tensors; DQN's target network is training state and is left out),
both hashed in `manifest.json`. Loading checks every field of `policy.json` before anything is built:
the environment id must be one of `recsim_env.ENV_IDS` and the algorithm one of `ALGOS`, so a file can
never choose what is imported; the weights are then loaded strictly into the module built from that
config. Nothing is unpickled (no `torch.load`).

This module imports only torch at load time; Ray (through `agents.rllib.module`) is imported when a
module is built, after the checks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from agents.policy import ProbabilityPolicy, open_policy, save_policy
from recsim_env.checkpoint import Artifact, check_fields, dataclass_from_json, write_tensors
from recsim_env.errors import CheckpointError

WEIGHTS_FILE = "weights.safetensors"
ALGOS = ("ppo", "dqn")
"""Algorithms whose modules a saved policy may name (the keys of `agents.rllib.module.MODULES`)."""
CONFIG_FIELDS: dict[str, Any] = {"algo": str, "env_id": str, "env_config": dict, "module_config": dict}
"""The entries of `policy.json`'s "config", each required, with their JSON types."""
MODULE_CONFIG_FIELDS: dict[str, Any] = {
    "encoder": str,
    "encoder_config": dict,
    "encoder_checkpoint": str | None,
    "freeze_encoder": bool,
    "mask_history": bool,
    "hidden_dim": int,
}
"""The keys of a saved `model_config` (`agents.rllib.module.DEFAULT_MODEL_CONFIG`) with their JSON types."""


def is_target_key(key: str) -> bool:
    """A state key of DQN's target network (`_target_encoder.*`, `_target_af.*`, ...)."""
    return key.startswith("_target")


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
        from agents.rllib.module import MODULES, model_config
        from agents.training.config import check_env_config

        if algo not in MODULES:
            raise ValueError(f"argument 'algo': unknown algorithm {algo!r}; known: {', '.join(MODULES)}")
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

    def policy_state(self) -> dict[str, torch.Tensor]:
        """The module's tensors without DQN's target network (training state, not the policy)."""
        return {
            key: value.detach().cpu()
            for key, value in self.module.state_dict().items()
            if not is_target_key(key)
        }

    def save(self, path: str | os.PathLike) -> None:
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
            "env_config": dict(self.env_config),
            "module_config": module_config,
        }
        state = self.policy_state()
        save_policy(path, self.kind, config, lambda tmp: write_tensors(tmp / WEIGHTS_FILE, state))

    @classmethod
    def load(cls, path: str | os.PathLike) -> RLModulePolicy:
        """The policy saved at `path` (a policy artifact, or a run directory's `policy/`)."""
        return cls.from_artifact(*open_policy(path, cls.kind))

    @classmethod
    def from_artifact(cls, artifact: Artifact, manifest: Mapping[str, Any]) -> RLModulePolicy:
        """Rebuild the module from `policy.json`'s checked config and load its weights, strictly.

        Raises:
            CheckpointError: naming `policy.json` (a missing or mistyped field, an environment id
                outside `recsim_env.ENV_IDS`, an unknown algorithm, module or environment setting) or
                `weights.safetensors` (unreadable, or tensors that do not fit the module).
        """
        where = artifact.root / "policy.json"
        fields = check_policy_config(manifest["config"], where=str(where))
        try:
            policy = cls.build(
                algo=fields["algo"],
                env_id=fields["env_id"],
                env_config=fields["env_config"],
                **fields["module_config"],
            )
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{where}: the module cannot be built from this config: {error}") from None
        if not artifact.has(WEIGHTS_FILE):
            raise CheckpointError(f"{artifact.root / WEIGHTS_FILE}: missing (not listed in the manifest)")
        artifact.load_state_dict(policy.module, WEIGHTS_FILE)
        policy.module.eval()
        return policy


def check_policy_config(config: Any, *, where: str) -> dict[str, Any]:
    """`policy.json`'s "config", each field type-checked, before anything is imported or built.

    The environment id must be one of `recsim_env.ENV_IDS` (gymnasium would import the module of an
    id written as `module:Env`), the algorithm one of `ALGOS`, the module config's keys those of
    `model_config`, its encoder a registered one with a well-typed config, and no encoder checkpoint
    path (a saved policy holds its encoder's weights; it never points at files elsewhere).
    """
    from recsim_env import ENV_IDS
    from recsim_env.encoders.registry import config_class

    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: 'config' must be a JSON object")
    fields = check_fields(config, CONFIG_FIELDS, where=where)
    missing = [name for name in CONFIG_FIELDS if name not in fields]
    if missing:
        raise CheckpointError(f"{where}: 'config' has no {', '.join(map(repr, missing))}")
    if fields["env_id"] not in ENV_IDS:
        raise CheckpointError(
            f"{where}: env_id {fields['env_id']!r} is not one of {', '.join(ENV_IDS)} "
            "(environment ids in saved files are limited to this package's)"
        )
    if fields["algo"] not in ALGOS:
        raise CheckpointError(f"{where}: unknown algo {fields['algo']!r}; known: {', '.join(ALGOS)}")
    module_where = f"{where}: 'module_config'"
    module = check_fields(fields["module_config"], MODULE_CONFIG_FIELDS, where=module_where)
    if module.get("encoder_checkpoint") is not None:
        raise CheckpointError(
            f"{module_where}: 'encoder_checkpoint' must be null (a saved policy holds its encoder's weights)"
        )
    encoder = module.get("encoder", "sasrec")
    try:
        encoder_config = config_class(encoder)
    except ValueError as error:
        raise CheckpointError(f"{module_where}: {error}") from None
    dataclass_from_json(
        encoder_config, module.get("encoder_config", {}), where=f"{module_where}: 'encoder_config'"
    )
    hidden = module.get("hidden_dim", 1)
    if hidden < 1:
        raise CheckpointError(f"{module_where}: 'hidden_dim' must be positive, got {hidden}")
    return {**fields, "module_config": module}


def _module_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of `config` that `model_config` knows (RLlib adds its own, e.g. DQN's epsilon)."""
    return {key: value for key, value in config.items() if key in MODULE_CONFIG_FIELDS}
