"""`TSCACPolicy`: a trained TSCAC (or baseline) actor behind the `agents.Policy` contract."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from agents.policy import (
    DeviceLoadable,
    as_batch,
    save_policy,
    unbatch_action,
    unbatch_probabilities,
)
from agents.tscac.config import MAX_ITEMS, TSCACConfig
from agents.tscac.model import Actor
from recsim_env.checkpoint import Artifact, check_fields, dataclass_from_json, write_json, write_tensors
from recsim_env.encoders.trainer import resolve_device
from recsim_env.errors import CheckpointError


class TSCACPolicy(DeviceLoadable):
    """A trained TSCAC (or baseline) actor behind the `agents.Policy` contract.

    Observations are `SeqRec-v0` dicts (`item_ids` [L] / [N, L], `feedback` [L, 6] / [N, L, 6]); the
    actor scores the whole catalogue.
    """

    kind = "tscac"

    def __init__(self, actor: Actor, config: TSCACConfig, n_items: int, name: str | None = None) -> None:
        self.actor = actor.eval()
        self.config = config
        self.n_items = n_items
        self.slate_size = 1
        self.name = name or config.variant
        self._generator = torch.Generator().manual_seed(config.seed)

    def seed(self, seed: int) -> None:
        """Reseed the action sampling."""
        self._generator.manual_seed(seed)

    @torch.inference_mode()
    def action_distribution(self, obs: Mapping[str, np.ndarray], chunk: int = 4096) -> np.ndarray:
        """[n_items] (or [N, n_items]) probabilities of each item."""
        batch, single = as_batch(obs)
        device = next(self.actor.parameters()).device
        out = []
        for start in range(0, len(batch["item_ids"]), chunk):
            item_ids = torch.as_tensor(
                batch["item_ids"][start : start + chunk], dtype=torch.long, device=device
            )
            feedback = torch.as_tensor(
                batch["feedback"][start : start + chunk], dtype=torch.float32, device=device
            )
            if item_ids.shape[1] > self.config.history_len:  # a longer env history: keep the newest L
                item_ids, feedback = (
                    item_ids[:, -self.config.history_len :],
                    feedback[:, -self.config.history_len :],
                )
            logits = self.actor.logits(item_ids, feedback)[:, 0]  # [B, N] of the (single-head) actor
            out.append(torch.softmax(logits.double(), -1).cpu().numpy())
        return unbatch_probabilities(np.concatenate(out), single)

    def act(self, obs: Mapping[str, np.ndarray], deterministic: bool = False):
        """The item to show: an int for one observation, [N] for a batch."""
        probs = np.atleast_2d(self.action_distribution(obs))
        single = np.asarray(obs["item_ids"]).ndim == 1
        if deterministic:
            actions = probs.argmax(axis=1)
        else:
            actions = torch.multinomial(torch.as_tensor(probs), 1, generator=self._generator)[:, 0].numpy()
        return unbatch_action(actions, single, 1)

    def save(self, path: str | os.PathLike) -> None:
        """Write the policy artifact `path`: `config.json`, `weights.safetensors` and `policy.json`."""

        def write(tmp: Path) -> None:
            write_json(tmp / "config.json", dataclasses.asdict(self.config))
            write_tensors(tmp / "weights.safetensors", self.actor.state_dict())

        save_policy(path, self.kind, {"n_items": self.n_items, "name": self.name}, write)

    @classmethod
    def from_artifact(cls, artifact: Artifact, manifest: dict, device: str = "cpu") -> TSCACPolicy:
        where = artifact.root / "policy.json"
        fields = check_fields(manifest["config"], {"n_items": int, "name": str | None}, where=str(where))
        n_items = fields.get("n_items")
        if n_items is None or not 0 < n_items <= MAX_ITEMS:
            raise CheckpointError(f"{where}: 'n_items' must be an integer in [1, {MAX_ITEMS}]")
        config = dataclass_from_json(
            TSCACConfig, artifact.read_json("config.json"), where=str(artifact.root / "config.json")
        )
        actor = Actor(config, n_items)
        artifact.load_state_dict(actor, "weights.safetensors")
        return cls(actor.to(resolve_device(device)), config, n_items, name=fields.get("name"))
