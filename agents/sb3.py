"""Stable-Baselines3 adapter: any project sequence encoder as a `BaseFeaturesExtractor`.

from stable_baselines3 import PPO
from agents.sb3 import SequenceFeaturesExtractor

model = PPO(
    "MultiInputPolicy",
    env,
    policy_kwargs=dict(
        features_extractor_class=SequenceFeaturesExtractor,
        features_extractor_kwargs=dict(encoder="sasrec", encoder_config={"d_model": 64}),
        # or: dict(checkpoint="runs/sasrec", freeze=True)
    ),
)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from recsim_env import encoders
from recsim_env.encoders.base import EncoderConfig, SequenceEncoder
from recsim_env.encoders.item_text import build_encoder

SCALAR_KEYS = ("session_step", "gap_days")
FEEDBACK_TRANSFORMS = ("none", "log1p")
"""How `SequenceFeaturesExtractor` feeds the feedback to the encoder: as observed, or `sign(x) log(1 + |x|)`."""


class SequenceFeaturesExtractor(BaseFeaturesExtractor):
    """Features `[B, D + 2S (+ S)]` from the environment's Dict observation.

    `concat(user_state(item_ids, feedback), g(log1p(session_step)), g(log1p(gap_days)) [, g_u(user_features)])`
    where `g(x) = ReLU(W x + b)` are small (`scalar_dim`-wide) learned projections.

    Observation keys: `"item_ids"` (`[L]` item ids, pad id = n_items, most recent last; SB3 hands them over
    as floats, cast back with `.long()`), `"feedback"` (`[L, F]`), `"session_step"` (`[1]`),
    `"gap_days"` (`[1]`) and optionally `"user_features"` (`[U]`).

    Args:
        observation_space: the environment's `spaces.Dict`.
        encoder: an encoder name (`"sasrec"`, `"bert4rec"`, `"hstu"`, `"gru4rec"`) or a built encoder.
        encoder_config: config fields when building by name; `n_items` and `max_len` default to the
            observation's catalogue size and history length, `feedback_dim` to its feedback width.
        item_content: `[N, T]` item content attached to an encoder built by name
            (`recsim_env.encoders.item_text.build_encoder`; H2Rec needs it), or None.
        checkpoint: load the encoder from this checkpoint directory instead (overrides `encoder`).
        freeze: keep the encoder's weights fixed (and in eval mode); only the projections learn.
        scalar_dim: width S of each scalar-feature projection.
        feedback_transform: "none" (the feedback as observed) or "log1p" (`sign(x) log(1 + |x|)` per
            signal). Watch times in seconds are tens of times larger than the 0/1 signals and would
            swamp the item embedding they are added to; `log(watch) = log(completion) + log(duration)`
            is also linear in the completion, with an offset per item the item's embedding can absorb.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        *,
        encoder: str | SequenceEncoder = "sasrec",
        encoder_config: Mapping[str, Any] | EncoderConfig | None = None,
        item_content: np.ndarray | None = None,
        checkpoint: str | os.PathLike | None = None,
        freeze: bool = False,
        scalar_dim: int = 8,
        feedback_transform: str = "none",
    ) -> None:
        if feedback_transform not in FEEDBACK_TRANSFORMS:
            raise ValueError(
                f"feedback_transform must be one of {', '.join(FEEDBACK_TRANSFORMS)}, got {feedback_transform!r}"
            )
        if not isinstance(observation_space, spaces.Dict) or "item_ids" not in observation_space.spaces:
            raise ValueError(
                "SequenceFeaturesExtractor needs a Dict observation space with an 'item_ids' key"
            )
        item_space = observation_space["item_ids"]
        if not isinstance(item_space, spaces.Box) or len(item_space.shape) != 1:
            raise ValueError(f"observation 'item_ids' must be a 1-D Box of item ids, got {item_space}")
        history_len = int(item_space.shape[0])
        n_items = int(item_space.high.max())  # the pad id is the upper bound
        feedback_space = observation_space.spaces.get("feedback")
        feedback_width = int(feedback_space.shape[-1]) if feedback_space is not None else 0

        if item_content is not None and (checkpoint is not None or isinstance(encoder, SequenceEncoder)):
            raise ValueError(
                "item_content is for an encoder built by name; a checkpoint or a built encoder has its own"
            )
        if checkpoint is not None:
            module = encoders.load(checkpoint)
        elif isinstance(encoder, SequenceEncoder):
            module = encoder
        else:
            if isinstance(encoder_config, EncoderConfig):
                config: Any = encoder_config.to_dict()
            else:
                fields = {"n_items": n_items, "max_len": history_len, "feedback_dim": feedback_width}
                config = {**fields, **dict(encoder_config or {})}
            module = build_encoder(encoder, config, item_content)
        if module.n_items != n_items:
            raise ValueError(
                f"encoder catalogue n_items={module.n_items} differs from the observation's pad id {n_items}"
            )
        if module.config.feedback_dim not in (0, feedback_width):
            raise ValueError(
                f"encoder feedback_dim={module.config.feedback_dim} but the observation has {feedback_width} signals"
            )
        user_space = observation_space.spaces.get("user_features")
        n_scalar_blocks = sum(key in observation_space.spaces for key in SCALAR_KEYS)
        features_dim = module.config.d_model + scalar_dim * (n_scalar_blocks + (user_space is not None))
        super().__init__(observation_space, features_dim)

        self.encoder = module
        self.freeze = freeze
        self.feedback_transform = feedback_transform
        if freeze:
            self.encoder.requires_grad_(False)
            self.encoder.eval()
        self.scalar_keys = tuple(key for key in SCALAR_KEYS if key in observation_space.spaces)
        self.scalar_projections = nn.ModuleDict(
            {key: nn.Sequential(nn.Linear(1, scalar_dim), nn.ReLU()) for key in self.scalar_keys}
        )
        self.user_projection = (
            nn.Sequential(nn.Linear(int(user_space.shape[-1]), scalar_dim), nn.ReLU())
            if user_space is not None
            else None
        )

    def train(self, mode: bool = True) -> SequenceFeaturesExtractor:
        super().train(mode)
        if self.freeze:
            self.encoder.eval()  # a frozen encoder never runs dropout
        return self

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        item_ids = observations["item_ids"].long()  # [B, L]
        feedback = observations.get("feedback") if self.encoder.config.feedback_dim > 0 else None
        if feedback is not None and self.feedback_transform == "log1p":
            feedback = torch.sign(feedback) * torch.log1p(feedback.abs())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            state = self.encoder.user_state(item_ids, feedback=feedback)  # [B, D]
        parts = [state]
        for key in self.scalar_keys:
            value = observations[key].float().reshape(-1, 1)
            parts.append(self.scalar_projections[key](torch.log1p(value.clamp(min=0.0))))
        if self.user_projection is not None:
            parts.append(self.user_projection(observations["user_features"].float()))
        return torch.cat(parts, dim=-1)
