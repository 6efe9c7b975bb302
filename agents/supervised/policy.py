"""The supervised policy: a trained click model behind `agents.Policy`, saved as a safe artifact
(`config.json`, `weights.safetensors`, `policy.json`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.policy import DeviceLoadable, as_batch, save_policy, unbatch_action, unbatch_probabilities
from agents.supervised.config import KIND, MAX_ITEMS, SupervisedConfig
from agents.supervised.model import ClickModel
from recsim_env.checkpoint import Artifact, check_fields, dataclass_from_json, write_json, write_tensors
from recsim_env.encoders.trainer import autocast, resolve_device
from recsim_env.errors import CheckpointError
from recsim_env.policies import one_hot, top_k

CHUNK = 2048
"""Observations per forward pass."""


class SupervisedPolicy(DeviceLoadable):
    """The practitioner's baseline: recommend the K items of highest predicted click probability.

    a(history) = top-K_i sigma(<h, E_i> + b_i) over items not in the history (`exclude_seen`), h the
    encoder's state of the observed window (package docstring). Deterministic: `act` gives the same
    items with `deterministic` True or False, and `action_distribution` is one-hot on the first.

    Observations are `SeqRec-v0` dicts (`item_ids` [L] / [N, L], `feedback` [L, F] / [N, L, F] with
    the signals of the training logs, in their order); longer histories keep their last `history_len`.

    Args:
        model: a trained `ClickModel`.
        config: its training config (slate size, seen-item exclusion, history length).
        feedback_columns: the feedback signals the model reads, in the observation's order.
        click_signal: the label it was trained on (`click`, `rating>=4`).
        name: shown in evaluation reports.
    """

    kind = KIND

    def __init__(
        self,
        model: ClickModel,
        config: SupervisedConfig,
        *,
        feedback_columns: Sequence[str],
        click_signal: str,
        name: str | None = None,
    ) -> None:
        if len(feedback_columns) != model.n_feedback:
            raise ValueError(
                f"argument 'feedback_columns' names {len(feedback_columns)} signal(s), the model reads {model.n_feedback}"
            )
        self.model = model.eval()
        self.config = config
        self.feedback_columns = tuple(feedback_columns)
        self.click_signal = str(click_signal)
        self.n_items = model.n_items
        self.slate_size = config.slate_size
        self.name = name or f"supervised {config.encoder}"
        if self.slate_size > self.n_items:
            raise ValueError(f"slate size {self.slate_size} exceeds the catalogue ({self.n_items} items)")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- scoring -----------------------------------------------------------------------------------
    def _inputs(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """`[N, L]` item ids (anything outside 0..N-1 as padding) and `[N, L, F]` feedback, last L kept."""
        length = self.config.history_len
        items = np.asarray(batch["item_ids"], dtype=np.int64)[:, -length:]
        if "feedback" not in batch:
            raise ValueError(
                "observation needs a 'feedback' entry (the click model reads the history's feedback)"
            )
        feedback = np.asarray(batch["feedback"], dtype=np.float32)
        if feedback.ndim != 3 or feedback.shape[-1] != self.model.n_feedback:
            raise ValueError(
                f"observation 'feedback' must be [N, L, {self.model.n_feedback}] ({', '.join(self.feedback_columns)}), "
                f"got shape {feedback.shape}"
            )
        real = (items >= 0) & (items < self.n_items)
        return np.where(real, items, self.n_items), feedback[:, -length:] * real[..., None]

    @torch.inference_mode()
    def _logits(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """`([N, n_items] float64 click logits, [N, L] model item ids)`."""
        items, feedback = self._inputs(batch)
        device = self.device
        out = np.empty((len(items), self.n_items))
        for lo in range(0, len(items), CHUNK):
            rows = slice(lo, lo + CHUNK)
            ids = torch.from_numpy(items[rows]).to(device)
            with autocast(device):
                state = self.model.user_state(ids, torch.from_numpy(feedback[rows]).to(device))
            out[rows] = self.model.logits(state).double().cpu().numpy()
        return out, items

    def _scores(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """`[N, n_items]` logits, -inf at the history's items (unless that leaves fewer than K items)."""
        logits, items = self._logits(batch)
        if self.config.exclude_seen:
            seen = np.zeros((len(items), self.n_items + 1), dtype=bool)
            seen[np.arange(len(items))[:, None], items] = True  # padding -> the extra column
            seen = seen[:, : self.n_items]
            seen &= (self.n_items - seen.sum(axis=1, keepdims=True)) >= self.slate_size
            logits[seen] = -np.inf
        return logits

    def click_probabilities(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Predicted click probability of every item after each history: `[n_items]`, or `[N, n_items]`."""
        batch, single = as_batch(obs)
        logits, _ = self._logits(batch)
        return unbatch_probabilities(1.0 / (1.0 + np.exp(-logits)), single)

    # -- the Policy contract -----------------------------------------------------------------------
    def seed(self, seed: int | None) -> None:
        """Nothing to reset: the policy draws no random numbers."""

    def act(self, obs: Mapping[str, np.ndarray], deterministic: bool = False) -> Any:
        """The K items of highest predicted click probability (int / [K], or [N] / [N, K] for a batch)."""
        del deterministic  # the policy is deterministic either way
        batch, single = as_batch(obs)
        return unbatch_action(top_k(self._scores(batch), self.slate_size), single, self.slate_size)

    def action_distribution(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """One-hot on the first recommended item: `[n_items]`, or `[N, n_items]` for a batch."""
        batch, single = as_batch(obs)
        return unbatch_probabilities(one_hot(top_k(self._scores(batch), 1)[:, 0], self.n_items), single)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the policy artifact `path`: `config.json`, `weights.safetensors`, `policy.json`."""

        def write(tmp: Path) -> None:
            write_json(tmp / "config.json", self.config.to_dict())
            write_tensors(tmp / "weights.safetensors", self.model.state_dict())

        manifest = {
            "n_items": self.n_items,
            "feedback_columns": list(self.feedback_columns),
            "click_signal": self.click_signal,
            "name": self.name,
        }
        save_policy(path, self.kind, manifest, write)

    @classmethod
    def from_artifact(cls, artifact: Artifact, manifest: dict, device: str = "cpu") -> SupervisedPolicy:
        where = str(artifact.root / "policy.json")
        fields = check_fields(
            manifest["config"],
            {"n_items": int, "feedback_columns": tuple[str, ...], "click_signal": str, "name": str},
            where=where,
        )
        missing = sorted({"n_items", "feedback_columns", "click_signal", "name"} - set(fields))
        if missing:
            raise CheckpointError(f"{where}: missing setting(s) {missing}")
        if not 0 < fields["n_items"] <= MAX_ITEMS:
            raise CheckpointError(f"{where}: 'n_items' must be an integer in [1, {MAX_ITEMS}]")
        config = dataclass_from_json(
            SupervisedConfig, artifact.read_json("config.json"), where=str(artifact.root / "config.json")
        )
        # the scale's values are weights (a buffer); these placeholders only give it its shape
        model = ClickModel(config, fields["n_items"], [1.0] * len(fields["feedback_columns"]))
        artifact.load_state_dict(model, "weights.safetensors")
        try:
            return cls(
                model.to(resolve_device(device)),
                config,
                feedback_columns=fields["feedback_columns"],
                click_signal=fields["click_signal"],
                name=fields["name"],
            )
        except ValueError as error:
            raise CheckpointError(f"{where}: {error}") from None
