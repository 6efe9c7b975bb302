"""DT4IER: a decision transformer that balances immediate feedback and long-term retention.

Liu et al., "Sequential Recommendation for Optimizing Both Immediate Feedback and Long-term Retention",
SIGIR 2024, on top of DT4Rec (Zhao et al., "User Retention-oriented Recommendation with Decision
Transformer", WWW 2023) and the Decision Transformer (Chen et al., NeurIPS 2021). Trained offline from
logged trajectories, evaluated online in `SeqRec-v0` through `agents.Policy`.

Trajectories. One per logged user, in chronological order. Step t: state s_t = the user's last L
exposures before t (item ids and scaled feedback, left-padded with the pad id N, as `SeqRec-v0`'s
observation), action a_t = the logged item, reward vector r_t = (r^s_t, r^l_t):

- immediate r^s_t: the `immediate_signal` of the step: `click` in world logs; for MovieLens (feedback
  `rating`, no clicks) `rating>=4` (a rating of 4 or 5 counts as positive feedback);
- retention r^l_t: 1 / (1 + g) at the last step of a session, g = days until the user's next session
  (the env's `retention_weight` reward), 0 at every other step. Sessions are the logs' `session_id`
  when present (world logs), else runs of events less than `session_gap_s` apart (ml-100k: 1 hour,
  so "retention" is the inverse of the days until the user rates again after a pause of an hour).
  The gap after a user's last logged session is unknown (censored): it gets the mean retention of the
  sessions whose gap is known.

Returns-to-go are undiscounted and 2-D, R_t = sum_{t' >= t} r_t', summed to the end of the current
session (`return_horizon="session"`, the default: the retention part is then the session's retention,
held fixed within it) or of the user's trajectory (`"trajectory"`). Within a session the immediate
part falls with every click. The prompt is log(1 + R) / log(1 + scale) per component (scale: the 95th
percentile of initial returns), which keeps "one click left" apart from "none left". Negative sessions:
sessions (with a known gap) whose click total and retention both lie in the bottom `negative_quantile`.

Tokens. Each step contributes (R_t, s_t, a_t); K steps make 3K tokens (left-padded for a trajectory's
first steps). s_t is embedded by the project's SASRec encoder (`recsim_env.encoders`, feedback as
input), a_t by that encoder's (tied) item embedding, R_t by the multi-reward embedding:

    beta(R) = softmax(h + W_r h),  h = LeakyReLU(W R)              (B bucket weights)
    e_R = sum_b beta_b(R) M_b                                      (M: B learned meta embeddings [B, D])

Type and step embeddings are added; a causal transformer (the SASRec block) runs over the tokens with
a strictly causal mask (token i sees tokens j <= i), so the prediction of a_t, read at s_t's token,
sees R_1, s_1, a_1, ..., R_t, s_t and never a_t or anything after it (the public DT4IER code feeds the
target action's encoding to its decoder; we do not). The predicted action embedding y_t = W_o h_{s_t}
scores items with the tied item table: logits = y_t E^T + b.

Adaptive return balancing. A small network over user attributes u (the user's observable profile:
the mean of each scaled feedback signal over the state window and the window's fill; SeqRec-v0 exposes
no user features by default) gives (w_s, w_l) = softmax(f(u)), trained on the normalised returns R~ with

    L_bal = -(w_s R~_s + w_l R~_l) + gamma |w_s R~_s - w_l R~_l|,     gamma = 0.5

and then frozen; the return prompt fed to the reward embedding is 2 (w_s R~_s, w_l R~_l) (uniform
weights leave R~ unchanged).

Loss. L = L_ce + alpha L_contra (alpha = 0.1): L_ce the cross-entropy of every logged action in the
context; L_contra an InfoNCE on y_t at steps of non-negative sessions (cosine similarities, temperature
tau), the logged action's embedding as positive (a target: only y_t moves). The negatives
(`contrastive_negatives`):

- `returns` (default): the model's own predictions y^-_t for the same context with the return prompt
  replaced by the return-to-go of a step of a negative session (`negative_prompts` draws per context),
  so a prediction made for a good return must differ from the predictions the same history gets when
  heading for a session that fails on both rewards. This is DT4Rec's weighted contrastive learning as
  its public code builds it (negative copies of each sequence with other returns-to-go; DT4IER's code
  inherits the construction, with the term commented out of the loss in both repositories). Like the
  positive, y^- is a fixed reference (no gradient): the term shapes y_t, the prediction for the prompt
  actually given, and leaves the predictions under negative prompts to L_ce.
- `items`: the item embeddings of actions characteristic of negative sessions (a larger share of their
  steps than of all steps; drawn by frequency they were mostly the logger's favourite item, which every
  session shows).

The negatives are drawn from a generator of their own (and the negative-prompt pass runs under a forked
torch RNG), so every variant trains on the same minibatches, and a variant with the term starts from
the same weights and draws the same dropout masks as the same network without it: the two differ only in
the loss (`benchmarks/RESULTS.md`, DT4IER section, for what the term does in the world).

Inference. The policy is conditioned on a target return R* = the `target_quantile` of the training
trajectories' initial returns (each component), and keeps, per env row, the running return-to-go and
the last K - 1 tokens. A row continues its episode when its new history is the previous one shifted by
the item the policy just showed (anything else, e.g. the vector env's autoreset, starts a new episode
at R*). The immediate part decreases by the reward read from the observation (the newest history
entry's feedback). A new session (the observation's `session_step` back at 0 with `gap_days` > 0)
starts a new horizon at R* (`return_horizon="session"`), or (`"trajectory"`) decreases the retention
part by 1 / (1 + gap_days), read from the observation at the session's first step, the step at which
the logged returns-to-go drop the previous session's retention. The env reports the return gap only in
`info` at the session end, so within a session the retention part is held fixed either way; the
prompt floors returns-to-go at 0. Observations without `session_step`/`gap_days` (e.g. logged ones)
never start a new session. Memory is kept for the last batch size seen; `seed` clears it.

Variants (`DT4IERConfig.variant`): `dt4ier`; `dt` (plain DT: linear return embedding, no balancing,
no contrastive term); the ablations `no_weights`, `no_reward_encoder`, `no_contrastive`; and `bc`,
behaviour cloning with the same encoder and transformer over (s_t, a_t) tokens, no returns.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.policy import as_batch, open_policy, sample_slates, save_policy, unbatch_action
from recsim_env.checkpoint import Artifact, check_fields, dataclass_from_json, write_json, write_tensors
from recsim_env.data.batching import history_windows
from recsim_env.encoders.base import attention_mask
from recsim_env.encoders.sasrec import SASRecBlock
from recsim_env.encoders.trainer import autocast, resolve_device
from recsim_env.errors import CheckpointError, DataError

MAX_ITEMS = 10_000_000
"""Largest catalogue a saved policy may declare (a file must not make `load` allocate at will)."""

KIND = "dt4ier"
VARIANTS = ("dt4ier", "dt", "no_weights", "no_reward_encoder", "no_contrastive", "bc")
SECONDS_PER_DAY = 86_400.0
_THRESHOLD = re.compile(r"^(?P<column>[A-Za-z_][\w]*)\s*>=\s*(?P<value>-?[\d.]+)$")


@dataclass(frozen=True, kw_only=True)
class DT4IERConfig:
    """Everything that defines a DT4IER (or ablation / baseline) training run."""

    variant: str = "dt4ier"
    """`dt4ier`, `dt`, `no_weights`, `no_reward_encoder`, `no_contrastive` or `bc` (module docstring)."""
    history_len: int = 20
    """L: exposures in a state window (as `SeqRec-v0`'s `history_len`)."""
    context_len: int = 8
    """K: steps (R, s, a) the transformer reads."""
    d_model: int = 32
    """Width of the state encoder and the transformer."""
    encoder_layers: int = 1
    """Self-attention blocks of the SASRec state encoder."""
    n_layers: int = 1
    """Causal transformer blocks over the token sequence."""
    n_heads: int = 1
    """Attention heads (divides d_model)."""
    dropout: float = 0.1
    """Dropout in the encoder and the transformer."""
    n_buckets: int = 16
    """B: meta embeddings of the multi-reward embedding."""
    balance_gamma: float = 0.5
    """gamma of the balancing loss -(w_s R_s + w_l R_l) + gamma |w_s R_s - w_l R_l|."""
    alpha: float = 0.1
    """Weight of the contrastive term in L_ce + alpha L_contra."""
    temperature: float = 0.1
    """tau of the contrastive InfoNCE (cosine similarities / tau)."""
    contrastive_negatives: str = "returns"
    """What y_t is contrasted against. `returns` (DT4Rec's weighted contrastive learning, the lineage's
    reference code): the model's own predictions y^-_t for the same context with the return prompt
    replaced by negative sessions' returns-to-go; `items`: the item embeddings of actions characteristic
    of negative sessions."""
    negative_prompts: int = 4
    """`returns`: negative sessions' return prompts per context (each one more pass of the token
    transformer, not of the state encoder)."""
    n_negatives: int = 32
    """`items`: actions of negative sessions per batch."""
    negative_quantile: float = 0.25
    """Negative sessions: clicks and retention both at or below this quantile over sessions."""
    target_quantile: float = 0.9
    """Target return at inference: this quantile (per component) of the training horizons' initial returns."""
    immediate_signal: str = "auto"
    """Immediate reward: a feedback column (`click`) or `column>=value` (`rating>=4`); `auto` picks
    `click` if logged, else `rating>=4`."""
    session_gap_s: float = 3600.0
    """Without a `session_id` column, a gap longer than this (seconds) starts a new session."""
    return_horizon: str = "session"
    """Returns-to-go to the end of the current `session` (retention held fixed within it) or of the
    user's whole `trajectory` (retention decremented at each session end)."""
    steps: int = 2000
    """Gradient steps of the transformer (the return conditioning is learnt late: far fewer leave the
    prompt nearly ignored)."""
    balance_steps: int = 300
    """Gradient steps of the balancing network (before the transformer's)."""
    batch_size: int = 64
    """Contexts (of K steps) per gradient step."""
    learning_rate: float = 3e-3
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    seed: int = 0
    """Seed of initialisation, minibatches and action sampling."""
    device: str = "cpu"
    """`cpu`, `cuda` or `auto` (CUDA and bf16 autocast when present)."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"DT4IERConfig.variant must be one of {list(VARIANTS)}, got {self.variant!r}")
        for name in ("history_len", "context_len", "d_model", "encoder_layers", "n_layers", "n_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"DT4IERConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("n_buckets", "n_negatives", "negative_prompts", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"DT4IERConfig.{name} must be positive, got {getattr(self, name)}")
        if self.steps < 0 or self.balance_steps < 0:
            raise ValueError("DT4IERConfig.steps and balance_steps must be >= 0")
        if self.d_model % self.n_heads:
            raise ValueError(f"DT4IERConfig.n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DT4IERConfig.dropout must lie in [0, 1), got {self.dropout}")
        for name in ("negative_quantile", "target_quantile"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"DT4IERConfig.{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("temperature", "learning_rate", "session_gap_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DT4IERConfig.{name} must be positive, got {getattr(self, name)}")
        if self.contrastive_negatives not in ("returns", "items"):
            raise ValueError(
                "DT4IERConfig.contrastive_negatives must be 'returns' or 'items', "
                f"got {self.contrastive_negatives!r}"
            )
        if self.return_horizon not in ("session", "trajectory"):
            raise ValueError(
                f"DT4IERConfig.return_horizon must be 'session' or 'trajectory', got {self.return_horizon!r}"
            )
        if self.alpha < 0 or self.balance_gamma < 0 or self.weight_decay < 0:
            raise ValueError("DT4IERConfig.alpha, balance_gamma and weight_decay must be >= 0")
        if self.immediate_signal != "auto" and not (
            _THRESHOLD.match(self.immediate_signal) or self.immediate_signal.isidentifier()
        ):
            raise ValueError(
                "DT4IERConfig.immediate_signal must be 'auto', a column name or 'column>=value', "
                f"got {self.immediate_signal!r}"
            )

    @property
    def return_conditioned(self) -> bool:
        """Whether the tokens include returns-to-go (every variant but `bc`)."""
        return self.variant != "bc"

    @property
    def reward_encoder(self) -> bool:
        """Multi-reward (soft-bucket) embedding of R; else a linear map."""
        return self.variant in ("dt4ier", "no_weights", "no_contrastive")

    @property
    def adaptive_weights(self) -> bool:
        """Adaptive return balancing of the R prompt."""
        return self.variant in ("dt4ier", "no_reward_encoder", "no_contrastive")

    @property
    def contrastive(self) -> bool:
        """The contrastive term against negative sessions' actions."""
        return self.variant in ("dt4ier", "no_weights", "no_reward_encoder") and self.alpha > 0


# ---------------------------------------------------------------------------------------------- data
class ImmediateSignal(NamedTuple):
    """The immediate reward: a feedback column, or the indicator column >= threshold."""

    column: str
    threshold: float | None

    @classmethod
    def parse(cls, text: str, columns: tuple[str, ...]) -> ImmediateSignal:
        if text == "auto":
            if "click" in columns:
                text = "click"
            elif "rating" in columns:
                text = "rating>=4"
            else:
                raise DataError(
                    f"no 'click' or 'rating' feedback column (columns: {list(columns)}); "
                    "set DT4IERConfig.immediate_signal to a column or 'column>=value'"
                )
        match = _THRESHOLD.match(text)
        signal = cls(match["column"], float(match["value"])) if match else cls(text, None)
        if signal.column not in columns:
            raise DataError(
                f"immediate signal {text!r}: no feedback column {signal.column!r} (columns: {list(columns)})"
            )
        return signal

    def __str__(self) -> str:
        return self.column if self.threshold is None else f"{self.column}>={self.threshold:g}"

    def of(self, feedback: np.ndarray, columns: tuple[str, ...]) -> np.ndarray:
        """[...] immediate reward from raw feedback [..., F] in `columns` order."""
        values = np.asarray(feedback)[..., columns.index(self.column)].astype(np.float64)
        return values if self.threshold is None else (values >= self.threshold).astype(np.float64)


class Trajectories(NamedTuple):
    """Logged trajectories, one per user; states are rows of the shared windows (`item_ids`, `feedback`)."""

    item_ids: np.ndarray  # [S, L] int64 state windows, left-padded with N
    feedback: np.ndarray  # [S, L, F] float32 raw feedback of the windows' items
    state: np.ndarray  # [T] int64 window row of s_t
    action: np.ndarray  # [T] int64 logged item
    reward: np.ndarray  # [T, 2] float64 (immediate, retention)
    rtg: np.ndarray  # [T, 2] float64 undiscounted return-to-go
    start: np.ndarray  # [T] int64 step index of the trajectory's first step
    first: np.ndarray  # [T] bool: first step of a return horizon (a session, or a trajectory)
    negative: np.ndarray  # [T] bool: the step belongs to a negative session
    n_items: int
    feedback_columns: tuple[str, ...]
    immediate: ImmediateSignal

    def __len__(self) -> int:
        return len(self.action)

    def initial_returns(self) -> np.ndarray:
        """[H, 2] return of each return horizon (session or trajectory): its first return-to-go."""
        return self.rtg[self.first]


def trajectories_from_logs(data, config: DT4IERConfig) -> Trajectories:
    """Trajectories (module docstring) from a `LoggedInteractions` of one-item slates.

    Raises:
        DataError: no feedback columns, no usable immediate signal, or slates of several items.
    """
    frame = data.frame
    columns = tuple(data.feedback_columns)
    if len(frame) == 0:
        raise DataError(f"{data.name}: no interactions")
    if not columns:
        raise DataError(f"{data.name}: no feedback columns; DT4IER needs an immediate reward signal")
    if "position" in frame.columns and (frame["position"].to_numpy() != 0).any():
        row = int(np.flatnonzero(frame["position"].to_numpy() != 0)[0]) + 1
        raise DataError(
            f"{data.name}: column 'position' is non-zero at row {row}; DT4IER needs one-item slates"
        )
    immediate = ImmediateSignal.parse(config.immediate_signal, columns)
    windows = history_windows(data, history_len=config.history_len, feedback_columns=columns)
    raw = frame[list(columns)].to_numpy(np.float64)
    if not np.isfinite(raw).all():
        row = int(np.flatnonzero(~np.isfinite(raw).all(axis=1))[0]) + 1
        raise DataError(f"{data.name}: non-finite feedback at row {row}")
    users = frame["user_id"].to_numpy(np.int64)
    times = frame["timestamp"].to_numpy(np.float64)
    n = len(frame)

    new_user = np.r_[True, users[1:] != users[:-1]]
    if "session_id" in frame.columns:
        sessions = frame["session_id"].to_numpy(np.int64)
        new_session = new_user | np.r_[True, sessions[1:] != sessions[:-1]]
    else:
        new_session = new_user | np.r_[True, np.diff(times) > config.session_gap_s]
    last_of_user = np.r_[new_user[1:], True]
    session_end = np.r_[new_session[1:], True]
    known = session_end & ~last_of_user  # the user came back: the gap is observed
    rows = np.flatnonzero(known)
    gap_days = np.maximum(times[np.minimum(rows + 1, n - 1)] - times[rows], 0.0) / SECONDS_PER_DAY
    reward = np.zeros((n, 2))
    reward[:, 0] = immediate.of(raw, columns)
    reward[rows, 1] = 1.0 / (1.0 + gap_days)
    censored = session_end & last_of_user
    reward[censored, 1] = reward[rows, 1].mean() if len(rows) else 0.0  # unknown gap: the mean retention

    # Undiscounted returns-to-go within each horizon (session or user): total - cumulative + own reward.
    new_group = new_session if config.return_horizon == "session" else new_user
    group = np.cumsum(new_group) - 1
    cumulative = np.cumsum(reward, axis=0)
    totals = cumulative[np.r_[new_group[1:], True]]
    before = np.vstack([np.zeros((1, 2)), totals[:-1]])  # cumulative sum before each group's first row
    rtg = (totals - before)[group] - (cumulative - before[group]) + reward
    user_index = np.cumsum(new_user) - 1
    start = np.flatnonzero(new_user)[user_index]

    # Negative sessions: both the session's clicks and its retention in the bottom quantile.
    session_index = np.cumsum(new_session) - 1
    session_clicks = np.bincount(session_index, weights=reward[:, 0])
    session_known = known[session_end]
    session_retention = reward[session_end, 1]
    negative_session = np.zeros(len(session_clicks), dtype=bool)
    if session_known.any():
        q = config.negative_quantile
        click_cut = np.quantile(session_clicks[session_known], q)
        retention_cut = np.quantile(session_retention[session_known], q)
        negative_session = (
            session_known & (session_clicks <= click_cut) & (session_retention <= retention_cut)
        )
    return Trajectories(
        item_ids=windows.item_ids,
        feedback=windows.feedback,
        state=windows.before,
        action=frame["item_id"].to_numpy(np.int64),
        reward=reward,
        rtg=rtg,
        start=start,
        first=new_group,
        negative=negative_session[session_index],
        n_items=int(data.n_items),
        feedback_columns=columns,
        immediate=immediate,
    )


class DataStats(NamedTuple):
    """What a trained policy keeps from its training data (saved as `stats.json`)."""

    n_items: int
    feedback_columns: tuple[str, ...]
    feedback_scale: tuple[float, ...]
    """Multiplier of each feedback column in the encoder's input (1 / its 99th percentile, at most 1)."""
    immediate: str
    rtg_scale: tuple[float, float]
    """Divisor of each return component (95th percentile of the initial returns)."""
    return_quantiles: tuple[tuple[float, float], ...]
    """Initial returns at quantiles 0, 0.01, ..., 1 (101 rows): the targets `set_target` reads."""

    @classmethod
    def of(cls, data: Trajectories) -> DataStats:
        high = np.quantile(np.abs(data.feedback.reshape(-1, data.feedback.shape[-1])), 0.99, axis=0)
        initial = data.initial_returns()
        rtg_scale = np.quantile(initial, 0.95, axis=0)
        rtg_scale = np.where(rtg_scale > 1e-6, rtg_scale, np.maximum(initial.max(axis=0), 1.0))
        grid = np.quantile(initial, np.linspace(0.0, 1.0, 101), axis=0)
        return cls(
            n_items=data.n_items,
            feedback_columns=data.feedback_columns,
            feedback_scale=tuple(float(1.0 / max(h, 1.0)) for h in high),
            immediate=str(data.immediate),
            rtg_scale=tuple(float(s) for s in rtg_scale),
            return_quantiles=tuple((float(a), float(b)) for a, b in grid),
        )

    def normalise(self, rtg: np.ndarray) -> np.ndarray:
        """[..., 2] returns-to-go -> log(1 + max(R, 0)) / log(1 + scale): about [0, 1], with the
        resolution kept at small returns (one click more or less near the end of a horizon)."""
        return np.log1p(np.maximum(rtg, 0.0)) / np.log1p(np.asarray(self.rtg_scale))

    def target(self, quantile: float) -> np.ndarray:
        """[2] initial return at `quantile` (interpolated on the stored grid)."""
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"target quantile must lie in [0, 1], got {quantile}")
        grid = np.asarray(self.return_quantiles)
        points = np.linspace(0.0, 1.0, len(grid))
        return np.array([np.interp(quantile, points, grid[:, j]) for j in range(2)])

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self._asdict().items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataStats:
        return cls(
            n_items=int(d["n_items"]),
            feedback_columns=tuple(d["feedback_columns"]),
            feedback_scale=tuple(float(x) for x in d["feedback_scale"]),
            immediate=str(d["immediate"]),
            rtg_scale=tuple(float(x) for x in d["rtg_scale"]),
            return_quantiles=tuple(tuple(float(x) for x in row) for row in d["return_quantiles"]),
        )


# ---------------------------------------------------------------------------------------------- networks
class RewardEmbedding(nn.Module):
    """DT4IER's multi-reward embedding: soft buckets over B learned meta embeddings.

    `beta(R) = softmax(h + W_r h)`, `h = LeakyReLU(W R)` (a small network of the 2-D return R), and
    `e_R = sum_b beta_b(R) M_b` with `M` the [B, D] meta embeddings.
    """

    def __init__(self, d_model: int, n_buckets: int, n_rewards: int = 2) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(n_rewards, n_buckets), nn.LeakyReLU())
        self.residual = nn.Linear(n_buckets, n_buckets, bias=False)
        self.meta = nn.Parameter(torch.randn(n_buckets, d_model) / d_model**0.5)
        # Returns come normalised to about [0, 1]: start with buckets that tell such values apart.
        nn.init.normal_(self.score[0].weight, std=4.0)
        nn.init.uniform_(self.score[0].bias, -2.0, 2.0)

    def bucket_weights(self, returns: torch.Tensor) -> torch.Tensor:
        """[..., 2] -> [..., B] bucket weights (a softmax: non-negative, sum 1)."""
        h = self.score(returns)
        return torch.softmax(h + self.residual(h), dim=-1)

    def forward(self, returns: torch.Tensor) -> torch.Tensor:
        """[..., 2] -> [..., D]."""
        return self.bucket_weights(returns) @ self.meta


class BalancingNet(nn.Module):
    """Adaptive return balancing: user attributes [..., A] -> (w_s, w_l) = softmax(f(u)) [..., 2]."""

    def __init__(self, n_attributes: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_attributes, hidden), nn.Tanh(), nn.Linear(hidden, 2))

    def forward(self, attributes: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(attributes), dim=-1)


def balancing_loss(weights: torch.Tensor, returns: torch.Tensor, gamma: float) -> torch.Tensor:
    """Mean over rows of `-(w_s R_s + w_l R_l) + gamma |w_s R_s - w_l R_l|` (weights, returns: [B, 2])."""
    weighted = weights * returns
    return (-weighted.sum(-1) + gamma * (weighted[..., 0] - weighted[..., 1]).abs()).mean()


def user_attributes(item_ids: torch.Tensor, feedback: torch.Tensor, pad_id: int) -> torch.Tensor:
    """[..., F + 1] observable profile of a state window [..., L] / [..., L, F] (scaled feedback): the
    mean of each signal over the window's real items (0 if none) and the fraction of real items."""
    real = (item_ids != pad_id).to(feedback.dtype)  # [..., L]
    count = real.sum(-1, keepdim=True)
    mean = (feedback * real[..., None]).sum(-2) / count.clamp(min=1.0)
    return torch.cat([mean, count / item_ids.shape[-1]], dim=-1)


class DecisionTransformer(nn.Module):
    """States by SASRec, actions by its item table, returns by `RewardEmbedding` (or a linear map);
    a strictly causal transformer over (R_t, s_t, a_t) tokens; y_t read at s_t's token."""

    def __init__(self, config: DT4IERConfig, n_items: int, n_feedback: int) -> None:
        super().__init__()
        from recsim_env.encoders import build

        d = config.d_model
        self.config = config
        self.n_items = n_items
        self.encoder = build(
            "sasrec",
            {
                "n_items": n_items,
                "max_len": config.history_len,
                "d_model": d,
                "n_layers": config.encoder_layers,
                "n_heads": config.n_heads,
                "dropout": config.dropout,
                "feedback_dim": n_feedback,
            },
        )
        self.tokens_per_step = 3 if config.return_conditioned else 2
        if not config.return_conditioned:
            self.return_embedding = None
        elif config.reward_encoder:
            self.return_embedding = RewardEmbedding(d, config.n_buckets)
        else:
            self.return_embedding = nn.Linear(2, d)
        self.balancing = BalancingNet(n_feedback + 1) if config.adaptive_weights else None
        self.type_embedding = nn.Embedding(self.tokens_per_step, d)
        self.step_embedding = nn.Embedding(config.context_len, d)
        self.embed_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            SASRecBlock(d, config.n_heads, config.dropout) for _ in range(config.n_layers)
        )
        self.final_norm = nn.LayerNorm(d)
        self.action_head = nn.Linear(d, d)
        self.item_bias = nn.Parameter(torch.zeros(n_items))

    def encode_states(self, item_ids: torch.Tensor, feedback: torch.Tensor) -> torch.Tensor:
        """[M, L], [M, L, F] (scaled) -> [M, D] state embeddings."""
        return self.encoder.user_state(item_ids, feedback=feedback)

    def return_prompt(self, rtg: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        """[..., 2] normalised return-to-go -> the prompt fed to the return embedding: 2 w(u) * R~
        with adaptive balancing, else R~."""
        if self.balancing is None:
            return rtg
        return 2.0 * self.balancing(attributes).detach() * rtg

    def predict(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        prompts: torch.Tensor | None,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """Predicted action embeddings y_t [B, K, D] at every step's state token.

        Args:
            states: [B, K, D] state embeddings.
            actions: [B, K] items (the pad id N where unknown: padding, or the step being predicted).
            prompts: [B, K, 2] return prompts (None for `bc`).
            valid: [B, K] bool, False at left padding.
        """
        b, k, d = states.shape
        parts = [states, self.encoder.item_embedding(actions)]
        if self.return_embedding is not None:
            parts.insert(0, self.return_embedding(prompts.to(states.dtype)))
        t = self.tokens_per_step
        tokens = torch.stack([part.to(states.dtype) for part in parts], dim=2)  # [B, K, T, D]
        steps = self.step_embedding(torch.arange(k - 1, -1, -1, device=states.device))  # counted from the end
        tokens = tokens + self.type_embedding.weight[None, None] + steps[None, :, None]
        x = self.dropout(self.embed_norm(tokens.reshape(b, k * t, d)))
        keep = valid.repeat_interleave(t, dim=1)  # [B, K T]
        mask = attention_mask(keep, causal=True)  # token i sees tokens j <= i, never padding
        x = x * keep[..., None]
        for block in self.blocks:
            x = block(x, mask) * keep[..., None]
        hidden = self.final_norm(x).view(b, k, t, d)[:, :, t - 2]  # the state tokens
        return self.action_head(hidden)

    def logits(self, predicted: torch.Tensor) -> torch.Tensor:
        """[..., D] predicted action embeddings -> [..., N] item logits (tied item table + bias)."""
        return self.encoder.score(predicted) + self.item_bias


# ---------------------------------------------------------------------------------------------- training
class _Batcher:
    """Context windows of K steps ending at sampled steps, as tensors on the device."""

    def __init__(self, data: Trajectories, config: DT4IERConfig, stats: DataStats, device: torch.device):
        self.data, self.config, self.device = data, config, device
        self.item_ids = torch.as_tensor(np.array(data.item_ids), device=device)
        self.feedback = torch.as_tensor(
            data.feedback * np.asarray(stats.feedback_scale, np.float32), device=device
        )
        self.rtg = torch.as_tensor(stats.normalise(data.rtg), dtype=torch.float32, device=device)
        self.action = torch.as_tensor(np.array(data.action), device=device)
        self.rng = np.random.default_rng(config.seed)
        self.pad = data.n_items

    def sample(self) -> np.ndarray:
        return self.rng.integers(0, len(self.data), size=min(self.config.batch_size, len(self.data)))

    def windows(self, steps: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.as_tensor(self.data.state[steps], device=self.device)
        return self.item_ids[rows], self.feedback[rows]

    def contexts(self, last: np.ndarray):
        """Steps [B, K] ending at `last` [B] (clipped at each trajectory's start) and their validity."""
        k = self.config.context_len
        steps = last[:, None] - (k - 1) + np.arange(k)
        valid = steps >= self.data.start[last][:, None]
        return np.where(valid, steps, last[:, None]), valid


def fit_balancing(
    config: DT4IERConfig, data: Trajectories, stats: DataStats, *, progress: bool = True
) -> BalancingNet:
    """The adaptive balancing network, trained alone on L_bal over logged steps (then frozen)."""
    from tqdm.auto import tqdm

    device = resolve_device(config.device)
    torch.manual_seed(config.seed + 1)
    net = BalancingNet(len(stats.feedback_columns) + 1).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    batcher = _Batcher(data, dataclasses.replace(config, seed=config.seed + 1, batch_size=256), stats, device)
    for _ in tqdm(range(config.balance_steps), desc="dt4ier balancing", disable=not progress):
        steps = batcher.sample()
        attributes = user_attributes(*batcher.windows(steps), batcher.pad)
        loss = balancing_loss(
            net(attributes), batcher.rtg[torch.as_tensor(steps, device=device)], config.balance_gamma
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


def contrastive_loss(
    predicted: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    tau: float,
    same: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE with cosine similarities: -log softmax([cos(y, e+), cos(y, e-_1..Q)] / tau)[0].

    Args:
        predicted: [M, D] predicted action embeddings; positive: [M, D] embeddings of the logged actions;
        negatives: [M, Q, D] (per row) or [1, Q, D] (shared) negative embeddings; same: optional [M, Q],
        True where a negative is the positive item itself (left out).
    """
    pos = F.cosine_similarity(predicted, positive, dim=-1)[:, None]
    neg = F.cosine_similarity(predicted[:, None], negatives, dim=-1)
    if same is not None:
        neg = neg.masked_fill(same, float("-inf"))
    logits = torch.cat([pos, neg.expand(len(pos), -1)], dim=1).float() / tau
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def negative_actions(data: Trajectories) -> np.ndarray:
    """The distinct items characteristic of negative sessions: shown there more often (as a share of
    their steps) than overall. Items every session shows (the logger's favourite) are left out: as
    negatives they would only teach the model to avoid what good and bad sessions share."""
    if not data.negative.any():
        return np.zeros(0, dtype=np.int64)
    overall = np.bincount(data.action, minlength=data.n_items) / len(data)
    negative = np.bincount(data.action[data.negative], minlength=data.n_items) / data.negative.sum()
    return np.flatnonzero(negative > overall).astype(np.int64)


def fit(
    config: DT4IERConfig, data: Trajectories, *, progress: bool = True, on_step=None
) -> tuple[DecisionTransformer, DataStats, dict]:
    """Train the transformer (and, first, the balancing network) offline; deterministic on CPU."""
    from tqdm.auto import tqdm

    if len(data) == 0:
        raise DataError("DT4IER: no logged steps to train on")
    device = resolve_device(config.device)
    stats = DataStats.of(data)
    torch.manual_seed(config.seed)
    model = DecisionTransformer(config, data.n_items, len(stats.feedback_columns)).to(device)
    if model.balancing is not None:
        model.balancing.load_state_dict(fit_balancing(config, data, stats, progress=progress).state_dict())
        model.balancing.requires_grad_(False)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    batcher = _Batcher(data, config, stats, device)
    by_returns = config.contrastive_negatives == "returns"
    pool_np = np.flatnonzero(data.negative) if by_returns else negative_actions(data)
    pool = torch.as_tensor(pool_np, device=device)  # negative sessions' steps (`returns`) or items (`items`)
    use_contrastive = config.contrastive and len(pool) > 0
    # The contrastive negatives have a generator of their own, so every variant trains on the same
    # minibatches (common random numbers): the ablations then differ only in their losses.
    negative_rng = np.random.default_rng([config.seed, 1])
    k = config.context_len
    history = {"ce": [], "contrastive": []}
    model.train()
    for step in tqdm(range(config.steps), desc=f"dt4ier[{config.variant}]", disable=not progress):
        last = batcher.sample()
        steps, valid_np = batcher.contexts(last)
        flat = steps.reshape(-1)
        valid = torch.as_tensor(valid_np, device=device)
        item_ids, feedback = batcher.windows(flat)
        actions = batcher.action[torch.as_tensor(flat, device=device)].view(-1, k)
        with autocast(device):
            states = model.encode_states(item_ids, feedback).view(len(last), k, -1)
            prompts = attributes = None
            if config.return_conditioned:
                rtg = batcher.rtg[torch.as_tensor(flat, device=device)]
                attributes = user_attributes(item_ids, feedback, batcher.pad)
                prompts = model.return_prompt(rtg, attributes).view(-1, k, 2)
            # Padding steps show the pad action; real actions are inputs (the causal mask hides a_t from y_t).
            inputs = torch.where(valid, actions, torch.full_like(actions, batcher.pad))
            predicted = model.predict(states, inputs, prompts, valid)[valid]  # [M, D]
            targets = actions[valid]
            ce = F.cross_entropy(model.logits(predicted).float(), targets)
            loss = ce
            contrastive = torch.zeros((), device=device)
            positive_steps = ~torch.as_tensor(data.negative[flat].reshape(-1, k), device=device)[valid]
            if use_contrastive and positive_steps.any():
                table = model.encoder.item_embedding  # the logged action is a target: only y_t moves
                positive = table(targets[positive_steps]).detach()
                if by_returns:
                    # y^-: the same contexts prompted with the return-to-go of a step of a negative session
                    # (one per context and copy, held over the K steps). Like the positive, y^- is a fixed
                    # reference (detached): the term moves y_t only, not the predictions under other prompts.
                    q, b = config.negative_prompts, len(last)
                    drawn = pool[torch.as_tensor(negative_rng.integers(0, len(pool), (q, b)), device=device)]
                    negative_rtg = batcher.rtg[drawn][:, :, None].expand(q, b, k, 2).reshape(-1, 2)
                    negative_prompts = model.return_prompt(negative_rtg, attributes.repeat(q, 1)).view(
                        -1, k, 2
                    )
                    repeat = (q, 1, 1)
                    # a forked RNG: this pass's dropout leaves the training stream's masks as they were
                    with (
                        torch.no_grad(),
                        torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
                    ):
                        negative_predicted = model.predict(
                            states.repeat(repeat), inputs.repeat(q, 1), negative_prompts, valid.repeat(q, 1)
                        ).view(q, b, k, -1)[:, valid]  # [Q, M, D]
                    contrastive = contrastive_loss(
                        predicted[positive_steps],
                        positive,
                        negative_predicted[:, positive_steps].transpose(0, 1),
                        config.temperature,
                    )
                else:
                    negatives = pool[torch.as_tensor(negative_rng.integers(0, len(pool), config.n_negatives))]
                    contrastive = contrastive_loss(
                        predicted[positive_steps],
                        positive,
                        table(negatives).detach()[None],
                        config.temperature,
                        targets[positive_steps][:, None] == negatives[None],
                    )
                loss = ce + config.alpha * contrastive
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        history["ce"].append(float(ce.detach()))
        history["contrastive"].append(float(contrastive.detach()))
        if on_step is not None:
            on_step(step, {"ce": history["ce"][-1], "contrastive": history["contrastive"][-1]})
    tail = max(1, len(history["ce"]) // 10)
    train_stats = {
        "final_ce": float(np.mean(history["ce"][-tail:])) if history["ce"] else None,
        "final_contrastive": float(np.mean(history["contrastive"][-tail:])) if history["ce"] else None,
        "negative_steps": int(data.negative.sum()),
        "steps": len(data),
        "trajectories": int(len(np.unique(data.start))),
    }
    return model.eval(), stats, train_stats


# ---------------------------------------------------------------------------------------------- policy
class _Rows(NamedTuple):
    """Per-env-row memory of the policy between calls (the running return-to-go and the last K-1 tokens)."""

    items: np.ndarray  # [N, L] history the last action was chosen on
    last_action: np.ndarray  # [N]
    rtg: np.ndarray  # [N, 2] raw return-to-go at that step
    states: torch.Tensor  # [N, K-1, D] state embeddings of the previous steps
    actions: torch.Tensor  # [N, K-1]
    prompts: torch.Tensor  # [N, K-1, 2]
    valid: torch.Tensor  # [N, K-1] bool


class DT4IERPolicy:
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
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> DT4IERPolicy:
        """Restore a policy written by `save`; a wrong kind or a damaged file raises `CheckpointError`."""
        return cls.from_artifact(*open_policy(path, cls.kind), device=device)

    @classmethod
    def from_artifact(cls, artifact: Artifact, manifest: dict, device: str = "cpu") -> DT4IERPolicy:
        where = artifact.root / "policy.json"
        fields = check_fields(
            manifest["config"], {"n_items": int, "name": str | None, "variant": str}, where=str(where)
        )
        config = dataclass_from_json(DT4IERConfig, artifact.read_json("config.json"), where=str(artifact.root / "config.json"))
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
        if not isinstance(stats.n_items, int) or isinstance(stats.n_items, bool) or not 0 < stats.n_items <= MAX_ITEMS:
            raise CheckpointError(f"{stats_file}: 'n_items' must be an integer in [1, {MAX_ITEMS}]")
        if fields.get("n_items", stats.n_items) != stats.n_items:
            raise CheckpointError(f"{where}: n_items differs from {stats_file.name}'s")
        model = DecisionTransformer(config, stats.n_items, len(stats.feedback_columns))
        state = artifact.read_tensors("weights.safetensors", framework="pt")
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise CheckpointError(f"{artifact.root / 'weights.safetensors'}: weights do not fit: {error}") from None
        return cls(model.to(resolve_device(device)), config, stats, name=fields.get("name"))


# ---------------------------------------------------------------------------------------------- entry point
def train(config: DT4IERConfig, data, *, progress: bool = True) -> tuple[DT4IERPolicy, dict]:
    """Train `config.variant` offline on logs (`LoggedInteractions` or `Trajectories`); policy and statistics."""
    trajectories = data if isinstance(data, Trajectories) else trajectories_from_logs(data, config)
    model, stats, train_stats = fit(config, trajectories, progress=progress)
    return DT4IERPolicy(model, config, stats), train_stats
