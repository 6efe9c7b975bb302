"""`Sim2RecPolicy`: a trained Sim2Rec (or baseline) network behind the `agents.Policy` contract."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from agents.policy import DeviceLoadable, save_policy
from agents.sim2rec.config import MAX_NETWORK_SIZE, Sim2RecConfig
from agents.sim2rec.model import ActorCritic, network_class
from recsim_env.checkpoint import Artifact, check_fields, dataclass_from_json, write_json, write_tensors
from recsim_env.encoders.trainer import autocast, resolve_device
from recsim_env.errors import CheckpointError


class Sim2RecPolicy(DeviceLoadable):
    """A trained Sim2Rec (or baseline) network behind the `agents.Policy` contract.

    Observations: `lts`, the windows of `make_env(config, ...)`, `[W, obs]` for one user, `[N, W, obs]`
    for a batch; `seqrec`, `SeqRec-v0` Dict observations (single or batched; ORACLE also needs the
    `hidden_parameters` entry of `agents.sim2rec.envs`).
    """

    kind = "sim2rec"

    def __init__(self, network: ActorCritic, config: Sim2RecConfig, n_items: int) -> None:
        self.network = network.eval()
        self.config = config
        self.n_items = n_items
        self.slate_size = 1
        self.seed(config.seed)

    def seed(self, seed: int | None) -> None:
        """Reset the generator `act` samples with (every rollout loop calls this first)."""
        self._generator = torch.Generator().manual_seed(self.config.seed if seed is None else seed)

    @torch.inference_mode()
    def action_distribution(self, obs) -> np.ndarray:
        """[N, n_items] (or [n_items]) probabilities of each item."""
        device = next(self.network.parameters()).device
        batch, single = self.network.as_input(obs, device)
        with autocast(device):
            features, _ = self.network.features(batch)
            logits = self.network.actor(features)
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return probs[0] if single else probs

    def act(self, obs, deterministic: bool = False):
        """The item to recommend (an int for one observation, [N] for a batch)."""
        probs = self.action_distribution(obs)
        batch = np.atleast_2d(probs)
        if deterministic:
            actions = batch.argmax(axis=1)
        else:
            draws = torch.multinomial(torch.as_tensor(batch), 1, generator=self._generator)
            actions = draws[:, 0].numpy()
        return int(actions[0]) if probs.ndim == 1 else actions

    def save(self, path: str | os.PathLike) -> None:
        """Write the policy artifact `path`: `config.json`, `weights.safetensors` and `policy.json`."""

        def write(tmp: Path) -> None:
            write_json(tmp / "config.json", dataclasses.asdict(self.config))
            write_tensors(tmp / "weights.safetensors", self.network.state_dict())

        save_policy(path, self.kind, self.network.manifest(), write)

    @classmethod
    def from_artifact(cls, artifact: Artifact, manifest: dict, device: str = "cpu") -> Sim2RecPolicy:
        where = artifact.root / "policy.json"
        config = dataclass_from_json(
            Sim2RecConfig, artifact.read_json("config.json"), where=str(artifact.root / "config.json")
        )
        shape = check_fields(manifest["config"], dict.fromkeys(manifest["config"], int), where=str(where))
        if any(value < 0 or value > MAX_NETWORK_SIZE for value in shape.values()):
            raise CheckpointError(f"{where}: network sizes {shape} outside [0, {MAX_NETWORK_SIZE}]")
        try:
            network = network_class(config).from_manifest(config, shape)
        except (KeyError, ValueError, TypeError) as error:
            raise CheckpointError(f"{where}: cannot build the network ({error!r})") from None
        artifact.load_state_dict(network, "weights.safetensors")
        return cls(network.to(resolve_device(device)), config, shape["n_items"])
