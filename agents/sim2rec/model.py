"""Sim2Rec's networks: actor and critic heads (`ActorCritic`) over the features of a front end.

- `lts` (`Sim2RecNetwork`, `SeqRecLTS-v0` Box observations): the extractor is a GRU over the window of
  stacked observations; actor and critic read (latest observation, z_t).
- `seqrec` (`SequenceSim2RecNetwork`, `SeqRec-v0` Dict observations):

    state     s_t = SequenceFeaturesExtractor(obs)   SASRec over (item_ids, log1p feedback), plus
                                                     session_step and gap_days (`agents.sb3`)
    context   z_t = GRU(E[a_{t-W+1}], log1p r_{t-W+1}, ..., E[a_t], log1p r_t)      Sim2Rec only
    oracle    h   = [one-hot member, (leave_shift, position_decay, satiation_rate, noise_scale)
                     scaled to [0, 1] by the set's ranges]                           ORACLE only
    pi(a | s_t, z_t, h) and V(s_t, z_t, h): the MLPs of `ActorCritic`

In `SeqRec-v0` the observation already holds the last L items shown (the actions) and the user's
feedback to each (the reward and the other signals): the paper's history of (observation, action,
reward) is the observation itself, so the extractor reads its last `window` (item, feedback) pairs,
with the item embedded by the state encoder's table, and the policy stays a function of its
observation (the `agents.Policy` contract).
"""

from __future__ import annotations

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from agents.policy import as_batch
from agents.sim2rec.config import HIDDEN_KEY, Sim2RecConfig
from recsim_env.envs.core import SeqRecConfig, observation_space


def _layer(in_dim: int, out_dim: int, std: float = np.sqrt(2)) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    """Actor and critic MLPs over features; a subclass builds its front end, then calls `add_heads`,
    and implements `features`, `as_input`, `manifest`, `from_space` and `from_manifest`."""

    def add_heads(self, in_dim: int, n_actions: int, hidden_dim: int) -> None:
        h = hidden_dim
        self.actor = nn.Sequential(
            _layer(in_dim, h), nn.Tanh(), _layer(h, h), nn.Tanh(), _layer(h, n_actions, std=0.01)
        )
        self.critic = nn.Sequential(
            _layer(in_dim, h), nn.Tanh(), _layer(h, h), nn.Tanh(), _layer(h, 1, std=1.0)
        )

    def features(self, obs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Input of actor and critic `[B, H]`, and the per-step contexts `[B, W, C]` (Sim2Rec) or None."""
        raise NotImplementedError

    def get_value(self, obs) -> torch.Tensor:
        return self.critic(self.features(obs)[0]).squeeze(-1).float()

    def get_action_and_value(self, obs, action: torch.Tensor | None = None):
        features, contexts = self.features(obs)
        distribution = torch.distributions.Categorical(logits=self.actor(features).float())
        if action is None:
            action = distribution.sample()
        value = self.critic(features).squeeze(-1).float()
        return action, distribution.log_prob(action), distribution.entropy(), value, contexts


class Sim2RecNetwork(ActorCritic):
    """`SeqRecLTS-v0` front end: extractor (GRU over the window of observations, Sim2Rec only),
    actor and critic over (latest observation, z)."""

    def __init__(self, obs_dim: int, n_actions: int, config: Sim2RecConfig) -> None:
        super().__init__()
        self.use_context = config.variant == "sim2rec"
        context_dim = config.context_dim if self.use_context else 0
        if self.use_context:
            self.extractor = nn.GRU(obs_dim, config.context_dim, batch_first=True)
        self.add_heads(obs_dim + context_dim, n_actions, config.hidden_dim)

    def context(self, window: torch.Tensor) -> torch.Tensor:
        """[B, W, obs] -> [B, W, context]: z after each step of the window (the last is z_t)."""
        contexts, _ = self.extractor(window)
        return contexts

    def features(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        latest = window[:, -1]
        if not self.use_context:
            return latest, None
        contexts = self.context(window)
        return torch.cat([latest, contexts[:, -1]], dim=-1), contexts

    @staticmethod
    def as_input(obs, device: torch.device) -> tuple[torch.Tensor, bool]:
        """A window `[W, obs]` or a batch `[N, W, obs]` as a batched tensor, and whether it was single."""
        array = np.asarray(obs, dtype=np.float32)
        single = array.ndim == 2
        return torch.as_tensor(array[None] if single else array, device=device), single

    def manifest(self) -> dict:
        return {"n_items": self.actor[-1].out_features, "obs_dim": self.actor[0].in_features}

    @classmethod
    def from_space(cls, space: gym.spaces.Box, n_actions: int, config: Sim2RecConfig) -> Sim2RecNetwork:
        return cls(space.shape[1], n_actions, config)

    @classmethod
    def from_manifest(cls, config: Sim2RecConfig, manifest: dict) -> Sim2RecNetwork:
        context = config.context_dim if config.variant == "sim2rec" else 0
        return cls(manifest["obs_dim"] - context, manifest["n_items"], config)

class SequenceSim2RecNetwork(ActorCritic):
    """`SeqRec-v0` front end: SASRec state, GRU context (Sim2Rec), hidden parameters (ORACLE).

    Args:
        observation_space: the env's Dict space (with `hidden_parameters` for ORACLE).
        n_actions: catalogue size N.
        config: a `Sim2RecConfig` with `env="seqrec"`.
    """

    def __init__(self, observation_space: spaces.Dict, n_actions: int, config: Sim2RecConfig) -> None:
        from agents.sb3 import SequenceFeaturesExtractor

        super().__init__()
        if "user_features" in observation_space.spaces:
            raise ValueError("Sim2Rec's sequence front end does not read 'user_features'")
        if (config.variant == "oracle") != (HIDDEN_KEY in observation_space.spaces):
            raise ValueError(f"the observation must hold {HIDDEN_KEY!r} exactly for the ORACLE variant")
        state_space = spaces.Dict({k: v for k, v in observation_space.spaces.items() if k != HIDDEN_KEY})
        self.history_len, self.n_signals = state_space["feedback"].shape
        self.window = config.window
        self.state = SequenceFeaturesExtractor(
            state_space,
            encoder="sasrec",
            encoder_config={
                "d_model": config.d_model,
                "n_layers": config.n_layers,
                "n_heads": 1,
                "dropout": 0.0,
            },
        )
        in_dim = self.state.features_dim
        self.use_context = config.variant == "sim2rec"
        if self.use_context:
            self.extractor = nn.GRU(config.d_model + self.n_signals, config.context_dim, batch_first=True)
            in_dim += config.context_dim
        self.n_hidden = observation_space[HIDDEN_KEY].shape[0] if config.variant == "oracle" else 0
        self.add_heads(in_dim + self.n_hidden, n_actions, config.hidden_dim)

    def context(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """`[B, W, C]`: z after each of the last W (item, feedback) pairs (the last is z_t)."""
        items = obs["item_ids"][:, -self.window :].long()  # [B, W]; padding embeds to 0
        pairs = torch.cat([self.state.encoder.item_embedding(items), obs["feedback"][:, -self.window :]], -1)
        contexts, _ = self.extractor(pairs)
        return contexts

    def features(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        # watch time is in seconds (up to minutes): log1p keeps every signal on one scale
        obs = {**obs, "feedback": torch.log1p(obs["feedback"].float().clamp_min(0.0))}
        parts = [self.state(obs)]
        contexts = None
        if self.use_context:
            contexts = self.context(obs)
            parts.append(contexts[:, -1])
        if self.n_hidden:
            parts.append(obs[HIDDEN_KEY].float())
        return torch.cat(parts, dim=-1), contexts

    @staticmethod
    def as_input(obs, device: torch.device) -> tuple[dict[str, torch.Tensor], bool]:
        """A single or batched Dict observation as a dict of batched tensors, and whether it was single."""
        batch, single = as_batch(obs)
        return {key: torch.as_tensor(value, device=device) for key, value in batch.items()}, single

    def manifest(self) -> dict:
        return {
            "n_items": self.actor[-1].out_features,
            "history_len": int(self.history_len),
            "n_signals": int(self.n_signals),
            "n_hidden": self.n_hidden,
        }

    @classmethod
    def from_space(cls, space: spaces.Dict, n_actions: int, config: Sim2RecConfig) -> SequenceSim2RecNetwork:
        return cls(space, n_actions, config)

    @classmethod
    def from_manifest(cls, config: Sim2RecConfig, manifest: dict) -> SequenceSim2RecNetwork:
        users = SimpleNamespace(
            n_items=manifest["n_items"], signals=range(manifest["n_signals"]), n_user_features=0
        )
        space = observation_space(users, SeqRecConfig(history_len=manifest["history_len"]))
        if manifest["n_hidden"]:
            box = spaces.Box(0.0, 1.0, (manifest["n_hidden"],), np.float32)
            space = spaces.Dict({**space.spaces, HIDDEN_KEY: box})
        return cls(space, manifest["n_items"], config)

def network_class(config: Sim2RecConfig) -> type[ActorCritic]:
    """The front end of `config.env`."""
    if config.env == "seqrec":
        return SequenceSim2RecNetwork
    return Sim2RecNetwork
