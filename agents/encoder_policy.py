"""A trained next-item encoder (`seqrec train-encoder`) used as a stochastic recommendation policy.

    policy = EncoderPolicy.load("runs/sasrec")        # an encoder checkpoint directory
    probs = policy.action_distribution(obs)           # softmax(score(user_state(history)) / T)

The encoder reads the observation's item history (and its feedback, when it was trained with
feedback) and scores the whole catalogue; the policy is

    pi(a | history) = softmax_a(score(a) / temperature)      over items not in the history

(items already in the history get probability 0 unless `exclude_seen=False`). This is how a team
evaluates its supervised recommender offline: `seqrec ope-report --logs LOGS --policy runs/sasrec`
(an encoder checkpoint directory is loaded as this policy by `agents.load_policy`).

Encoders that read timestamps (HSTU) get zeros: `SeqRec` observations carry no clock, so HSTU's
time-interval buckets are all the first one.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from agents.policy import ProbabilityPolicy, open_policy, save_policy
from recsim_env.checkpoint import Artifact, check_fields
from recsim_env.encoders.checkpoint import (
    Checkpoint,
    checkpoint_from_artifact,
    encoder_metadata,
    write_encoder_files,
)
from recsim_env.errors import CheckpointError

KIND = "encoder"


class EncoderPolicy(ProbabilityPolicy):
    """An encoder checkpoint behind the `agents.Policy` contract (one item per step).

    Args:
        checkpoint: a loaded encoder checkpoint (`recsim_env.encoders.checkpoint.load_checkpoint`).
        temperature: softmax temperature of the scores (> 0; smaller is closer to greedy).
        exclude_seen: never recommend an item already in the observed history.
        seed: seed of the action sampling.
    """

    def __init__(
        self, checkpoint: Checkpoint, *, temperature: float = 1.0, exclude_seen: bool = True, seed: int = 0
    ) -> None:
        if not temperature > 0:
            raise ValueError(f"argument 'temperature' must be > 0, got {temperature}")
        self.checkpoint = checkpoint
        self.encoder = checkpoint.encoder.eval()
        self.item_tokens = list(checkpoint.item_tokens)
        self.n_items = self.encoder.n_items
        self.slate_size = 1
        self.temperature = float(temperature)
        self.exclude_seen = bool(exclude_seen)
        self.name = f"{self.encoder.name} encoder"
        self.seed(seed)

    def seed(self, seed: int | None) -> None:
        """Reset the sampling generator."""
        self.rng = np.random.default_rng(seed)

    @torch.inference_mode()
    def _probabilities(self, batch: dict[str, np.ndarray], chunk: int = 2048) -> np.ndarray:
        cfg = self.encoder.config
        items = np.asarray(batch["item_ids"], dtype=np.int64)[:, -cfg.max_len :]
        real = items < self.n_items  # observation padding is n_items (`SeqRec` convention)
        items = np.where(real, items, cfg.pad_id)
        feedback = None
        if cfg.feedback_dim:
            if "feedback" not in batch:
                raise ValueError("this encoder reads feedback: the observation needs a 'feedback' entry")
            feedback = np.asarray(batch["feedback"], dtype=np.float32)[:, -cfg.max_len :]
            if feedback.shape[-1] != cfg.feedback_dim:
                raise ValueError(
                    f"observation 'feedback' has {feedback.shape[-1]} signal(s), the encoder reads {cfg.feedback_dim}"
                )
        device = next(self.encoder.parameters()).device
        out = np.empty((len(items), self.n_items))
        for lo in range(0, len(items), chunk):
            rows = slice(lo, lo + chunk)
            ids = torch.from_numpy(items[rows]).to(device)
            state = self.encoder.user_state(
                ids,
                timestamps=torch.zeros(ids.shape, dtype=torch.float64, device=device)
                if self.encoder.uses_timestamps
                else None,
                feedback=torch.from_numpy(feedback[rows]).to(device) if feedback is not None else None,
            )
            logits = self.encoder.score(state).double() / self.temperature  # [b, N]
            if self.exclude_seen:
                history = np.where(real[rows], items[rows], self.n_items)  # padding -> an extra column
                seen = np.zeros((len(history), self.n_items + 1), dtype=bool)
                seen[np.arange(len(history))[:, None], history] = True
                seen = seen[:, : self.n_items]
                # A history that covers the whole catalogue leaves nothing unseen: fall back to all items.
                seen &= ~seen.all(axis=1, keepdims=True)
                logits = logits.masked_fill(torch.from_numpy(seen).to(device), float("-inf"))
            out[rows] = torch.softmax(logits, dim=1).cpu().numpy()
        return out

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike) -> None:
        """Write the encoder's files and `policy.json` into the policy artifact `path`."""
        config = {
            "temperature": self.temperature,
            "exclude_seen": self.exclude_seen,
            "encoder": encoder_metadata(self.encoder, self.checkpoint.metadata),
        }
        save_policy(
            path,
            KIND,
            config,
            lambda tmp: write_encoder_files(
                tmp, self.encoder, item_ids=self.item_tokens, user_ids=self.checkpoint.user_tokens
            ),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> EncoderPolicy:
        """Restore a saved policy, or wrap a bare encoder checkpoint directory (default settings)."""
        return cls.from_artifact(*open_policy(path, KIND))

    @classmethod
    def from_artifact(cls, artifact: Artifact, manifest: dict) -> EncoderPolicy:
        if artifact.kind == "encoder":  # a bare encoder checkpoint
            return cls(checkpoint_from_artifact(artifact, artifact.metadata))
        where = str(artifact.root / "policy.json")
        config = check_fields(
            manifest["config"], {"temperature": float, "exclude_seen": bool, "encoder": dict}, where=where
        )
        checkpoint = checkpoint_from_artifact(artifact, config.pop("encoder", {}))
        try:
            return cls(checkpoint, **config)
        except ValueError as error:
            raise CheckpointError(f"{where}: {error}") from None
