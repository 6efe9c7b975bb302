"""DT4IER's policy: a trained transformer behind `agents.Policy`, stateful per env row, saved as a
safe artifact (`config.json`, `stats.json`, `weights.safetensors`, `policy.json`)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from agents.dt4ier.config import KIND, MAX_ITEMS, DT4IERConfig
from agents.dt4ier.data import DataStats, ImmediateSignal
from agents.dt4ier.model import DecisionTransformer, user_attributes
from agents.policy import DeviceLoadable, as_batch, sample_slates, save_policy, unbatch_action
from recsim_env.checkpoint import Artifact, check_fields, dataclass_from_json, write_json, write_tensors
from recsim_env.encoders.trainer import autocast, resolve_device
from recsim_env.errors import CheckpointError


class _Rows(NamedTuple):
    """Per-env-row memory of the policy between calls (the running return-to-go and the last K-1 tokens)."""

    items: np.ndarray  # [N, L] history the last action was chosen on
    last_action: np.ndarray  # [N]
    rtg: np.ndarray  # [N, 2] raw return-to-go at that step
    states: torch.Tensor  # [N, K-1, D] state embeddings of the previous steps
    actions: torch.Tensor  # [N, K-1]
    prompts: torch.Tensor  # [N, K-1, 2]
    valid: torch.Tensor  # [N, K-1] bool


class DT4IERPolicy(DeviceLoadable):
    """A trained DT4IER (Liu et al., SIGIR 2024) transformer, or an ablation / BC, behind `agents.Policy`.

    pi(a_t | R_1, s_1, a_1, ..., R_t, s_t) = softmax(y_t E^T + b), y_t read at s_t's token, R the running
    2-D return-to-go from the target R* (module docstring).

    Observations are `SeqRec-v0` dicts (`item_ids` [L] / [N, L], `feedback` [L, F] / [N, L, F],
    optionally `session_step`, `gap_days`); actions are single items. `act` is stateful per env row
    (see the module docstring: the running return-to-go and the last K - 1 tokens); `action_distribution`
    reads that memory without changing it; `seed` reseeds the sampling and clears it.
    """

    kind = KIND

    def __init__(
        self,
        model: DecisionTransformer,
        config: DT4IERConfig,
        stats: DataStats,
        name: str | None = None,
    ) -> None:
        self.model = model.eval()
        self.config = config
        self.stats = stats
        self.n_items = stats.n_items
        self.slate_size = 1
        self.name = name or config.variant
        self.immediate = ImmediateSignal.parse(stats.immediate, stats.feedback_columns)
        self.target = stats.target(config.target_quantile)
        self.rng = np.random.default_rng(config.seed)
        self._rows: _Rows | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def seed(self, seed: int) -> None:
        """Reseed the action sampling and forget every row's episode."""
        self.rng = np.random.default_rng(seed)
        self._rows = None

    def set_target(self, target: tuple[float, float] | None = None, *, quantile: float | None = None) -> None:
        """Condition on return `target` (immediate, retention), or on this quantile of training returns."""
        if (target is None) == (quantile is None):
            raise ValueError("set_target: give a target (immediate, retention) or a quantile, one of them")
        value = self.stats.target(quantile) if quantile is not None else np.asarray(target, dtype=np.float64)
        if value.shape != (2,) or not np.isfinite(value).all():
            raise ValueError(f"set_target: target must be 2 finite numbers, got {target!r}")
        self.target = value
        self._rows = None

    # -- the step ------------------------------------------------------------------------------------
    def _check(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if "feedback" not in batch:
            raise ValueError("observation needs a 'feedback' entry (a SeqRec observation)")
        items = np.asarray(batch["item_ids"], dtype=np.int64)
        feedback = np.asarray(batch["feedback"], dtype=np.float32)
        width = len(self.stats.feedback_columns)
        if feedback.ndim != 3 or feedback.shape[:2] != items.shape or feedback.shape[2] != width:
            raise ValueError(
                f"observation 'feedback' must be [N, L, {width}] ({', '.join(self.stats.feedback_columns)}) "
                f"for item_ids {items.shape}, got {feedback.shape}"
            )
        if items.min() < 0 or items.max() > self.n_items:
            raise ValueError(
                f"observation 'item_ids' outside [0, {self.n_items}] (the pad id is {self.n_items})"
            )
        length = self.config.history_len
        return items[:, -length:], feedback[:, -length:]

    @torch.inference_mode()
    def _step(self, batch: dict[str, np.ndarray]):
        """Probabilities [N, n_items] of the batch and what `act` commits: (rows, current token parts)."""
        items, feedback = self._check(batch)
        n = len(items)
        device = self.device
        k = self.config.context_len
        previous = self._rows
        if previous is not None and previous.items.shape == items.shape:
            continues = (items[:, :-1] == previous.items[:, 1:]).all(axis=1) & (
                items[:, -1] == previous.last_action
            )
        else:
            continues = np.zeros(n, dtype=bool)
        rtg = np.tile(self.target, (n, 1))
        if continues.any():
            rtg[continues] = previous.rtg[continues]
            rtg[continues, 0] -= self.immediate.of(feedback[continues, -1], self.stats.feedback_columns)
            if "session_step" in batch and "gap_days" in batch:
                session_step = np.asarray(batch["session_step"]).reshape(n)
                gap = np.asarray(batch["gap_days"], dtype=np.float64).reshape(n)
                new_session = continues & (session_step == 0) & (gap > 0)
                if self.config.return_horizon == "session":
                    rtg[new_session] = self.target  # a new return horizon
                else:
                    rtg[new_session, 1] -= 1.0 / (1.0 + gap[new_session])
        keep = torch.as_tensor(continues, device=device)
        if previous is not None and previous.items.shape == items.shape:
            past_states, past_actions = previous.states, previous.actions
            past_prompts, past_valid = previous.prompts, previous.valid & keep[:, None]
        else:
            past_states = torch.zeros(n, k - 1, self.config.d_model, device=device)
            past_actions = torch.full((n, k - 1), self.n_items, dtype=torch.long, device=device)
            past_prompts = torch.zeros(n, k - 1, 2, device=device)
            past_valid = torch.zeros(n, k - 1, dtype=torch.bool, device=device)

        item_t = torch.as_tensor(items, device=device)
        scale = torch.as_tensor(np.asarray(self.stats.feedback_scale, np.float32), device=device)
        feedback_t = torch.as_tensor(feedback, device=device) * scale
        with autocast(device):
            state = self.model.encode_states(item_t, feedback_t).float()  # [N, D]
            prompt = torch.zeros(n, 2, device=device)
            if self.config.return_conditioned:
                normalised = torch.as_tensor(self.stats.normalise(rtg), dtype=torch.float32, device=device)
                prompt = self.model.return_prompt(
                    normalised, user_attributes(item_t, feedback_t, self.n_items)
                ).float()
            states = torch.cat([past_states, state[:, None]], dim=1)
            actions = torch.cat(
                [past_actions, torch.full((n, 1), self.n_items, dtype=torch.long, device=device)], 1
            )
            prompts = torch.cat([past_prompts, prompt[:, None]], dim=1)
            valid = torch.cat([past_valid, torch.ones(n, 1, dtype=torch.bool, device=device)], dim=1)
            predicted = self.model.predict(states, actions, prompts, valid)[:, -1]
            logits = self.model.logits(predicted).float()
        probabilities = torch.softmax(logits.double(), dim=-1).cpu().numpy()
        pending = (items, rtg, states, actions, prompts, valid)
        return probabilities, pending

    @torch.inference_mode()
    def _commit(self, pending, chosen: np.ndarray) -> None:
        items, rtg, states, actions, prompts, valid = pending
        actions = actions.clone()
        actions[:, -1] = torch.as_tensor(chosen, device=actions.device)
        self._rows = _Rows(
            items=items.copy(),
            last_action=np.asarray(chosen, dtype=np.int64).copy(),
            rtg=rtg,
            states=states[:, 1:],
            actions=actions[:, 1:],
            prompts=prompts[:, 1:],
            valid=valid[:, 1:],
        )

    def action_distribution(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """[n_items] (or [N, n_items]) probabilities of the next item, given each row's episode so far."""
        batch, single = as_batch(obs)
        probabilities, _ = self._step(batch)
        return probabilities[0] if single else probabilities

    def act(self, obs: Mapping[str, np.ndarray], deterministic: bool = False):
        """The item to show (int, or [N] for a batch); advances each row's return-to-go and context."""
        batch, single = as_batch(obs)
        probabilities, pending = self._step(batch)
        chosen = sample_slates(probabilities, 1, self.rng, deterministic)[:, 0]
        self._commit(pending, chosen)
        return unbatch_action(chosen[:, None], single, 1)

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the policy artifact `path`: `config.json`, `stats.json`, `weights.safetensors`, `policy.json`."""

        def write(tmp: Path) -> None:
            write_json(tmp / "config.json", dataclasses.asdict(self.config))
            write_json(tmp / "stats.json", self.stats.to_dict())
            write_tensors(tmp / "weights.safetensors", self.model.state_dict())

        config = {"n_items": self.n_items, "name": self.name, "variant": self.config.variant}
        save_policy(path, self.kind, config, write)

    @classmethod
    def from_artifact(cls, artifact: Artifact, manifest: dict, device: str = "cpu") -> DT4IERPolicy:
        where = artifact.root / "policy.json"
        fields = check_fields(
            manifest["config"], {"n_items": int, "name": str | None, "variant": str}, where=str(where)
        )
        config = dataclass_from_json(
            DT4IERConfig, artifact.read_json("config.json"), where=str(artifact.root / "config.json")
        )
        stats_file = artifact.root / "stats.json"
        try:
            stats_fields = check_fields(
                artifact.read_json_object("stats.json"),
                {
                    "n_items": int,
                    "feedback_columns": tuple[str, ...],
                    "feedback_scale": tuple[float, ...],
                    "immediate": str,
                    "rtg_scale": tuple[float, ...],
                    "return_quantiles": tuple[tuple[float, ...], ...],
                },
                where=str(stats_file),
            )
            stats = DataStats.from_dict(stats_fields)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{stats_file}: {error!r}") from None
        if (
            not isinstance(stats.n_items, int)
            or isinstance(stats.n_items, bool)
            or not 0 < stats.n_items <= MAX_ITEMS
        ):
            raise CheckpointError(f"{stats_file}: 'n_items' must be an integer in [1, {MAX_ITEMS}]")
        if fields.get("n_items", stats.n_items) != stats.n_items:
            raise CheckpointError(f"{where}: n_items differs from {stats_file.name}'s")
        model = DecisionTransformer(config, stats.n_items, len(stats.feedback_columns))
        artifact.load_state_dict(model, "weights.safetensors")
        return cls(model.to(resolve_device(device)), config, stats, name=fields.get("name"))
