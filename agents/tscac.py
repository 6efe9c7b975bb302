"""TSCAC: Two-Stage Constrained Actor-Critic (Cai et al., WWW 2023).

"Two-Stage Constrained Actor-Critic for Short Video Recommendation". Recommendation as a constrained
MDP: maximise the main return (here watch time) subject to each auxiliary return (click, like, follow,
share, and hate with a negative sign) staying above a threshold:

    max_pi J_1(pi)   s.t.   J_i(pi) >= c_i,   i = 2..m,        J_i(pi) = E_pi[sum_t gamma_i^t r_i,t]

Stage one, for each auxiliary signal i: a critic V_i trained by TD(0) on r_i with its own discount
gamma_i, and an actor pi_i trained with the advantage

    A_i(s, a) = r_i + gamma_i V_i(s') - V_i(s)                                     (TSCAC eq. 4)

Stage two: a main critic V_1 on watch time, and the main actor fitted to the closed-form solution of
"maximise A_1 while staying close (in KL, weights lambda_i) to every pi_i":

    pi*(a|s)  proportional to  prod_i pi_i(a|s)^(lambda_i / Lambda) exp(A_1(s, a) / Lambda),
    Lambda = sum_i lambda_i                                                         (TSCAC eq. 8)

by minimising KL(pi* || pi) over logged actions, i.e. the weighted log-likelihood

    L(pi) = -sum_j w_j log pi(a_j|s_j),
    w_j  proportional to  prod_i pi_i(a_j|s_j)^(lambda_i/Lambda) exp(A_1(s_j,a_j)/Lambda) / pi_b(a_j|s_j)

where pi_b is the logged propensity and the weights are self-normalised over the batch (sum_j w_j = 1),
which stands in for the per-state normaliser of pi* (`stage_two_weights`). Online, pi_b is the policy
that collected the batch (`train_online`).

Offline form of the stage-one actors: logged data comes from pi_b, so the actor step is advantage-
weighted regression (Peng et al. 2019), `-E_b[min(exp(A_i / beta), w_max) log pi_i(a|s)]`, the
KL-regularised solution of maximising A_i near pi_b (`actor_objective="awr"`, the default); the paper's
on-policy form `-E[A_i log pi_i(a|s)]` is `actor_objective="pg"`.

Baselines in the same code (`TSCACConfig.variant`):
- `bc`: behaviour cloning, `-E_b[log pi(a|s)]`.
- `rcpo`: Lagrangian constrained actor-critic (RCPO, Tessler et al. 2019): advantage
  `A_1 + sum_i mu_i A_i`; multipliers `mu_i >= 0` by dual ascent `mu_i <- max(0, mu_i + eta (c_i - J_i))`
  with `J_i` the SNIPS estimate of the actor's per-step rate on the batch.
- `scalarised`: a fixed weighted sum of the signals ("Pareto" scalarisation), advantage
  `A_1 + sum_i k_i A_i`.
Both baselines use the same AWR actor step as stage one.

Data. Transitions come from world logs per user in chronological order: s_t = the last L exposures
before step t (item ids and their feedback, left-padded with the pad id N, like `SeqRec-v0`'s
observation), a_t = the logged item, r_t = the step's feedback vector, s_{t+1}, done at the user's last
logged step, pi_b(a_t|s_t) = the logged `propensity`. Note the shift against the environment: the
env's first observation already holds the user's warm-start history, which logs do not contain, so
a logged user's first states have shorter (empty at t = 0) histories than any state the policy meets
online.

Networks: every actor and the critic read the state with a small SASRec encoder
(`recsim_env.encoders`, feedback_dim = 6). An actor's logits are `score(head(state)) + b` over the
whole catalogue, or, with `n_candidates > 0`, over the logged item plus `n_candidates` items drawn
uniformly per batch (sampled softmax, for large catalogues; acting still scores every item). The
critic has one value head per signal, trained together (TD(0) with a Polyak-averaged target). Stage
one's m policies pi_i are the m heads of one actor on a shared encoder (each head's projection and item
bias see only its own loss, the encoder their sum), which keeps CPU training to one forward pass; the
main actor and every baseline have their own encoder.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.policy import (
    as_batch,
    open_policy,
    save_policy,
    unbatch_action,
    unbatch_probabilities,
)
from agents.sim2rec import resolve_device
from recsim_env.checkpoint import Artifact, check_fields, dataclass_from_json, write_json, write_tensors
from recsim_env.data.batching import history_windows
from recsim_env.errors import CheckpointError, DataError

MAX_ITEMS = 10_000_000
"""Largest catalogue a saved policy may declare (a file must not make `load` allocate at will)."""

SIGNALS: tuple[str, ...] = ("click", "watch_time", "like", "follow", "share", "hate")
"""The world's signals, in the order of every feedback vector."""
MAIN_SIGNAL = "watch_time"
AUX_SIGNALS: tuple[str, ...] = ("click", "like", "follow", "share", "hate")
"""Constrained signals, in the order of `lambdas`, `aux_gammas`, `scalarised_weights`."""
AUX_SIGN = np.array([1.0, 1.0, 1.0, 1.0, -1.0])
"""+1: keep the rate above a threshold; -1 (hate): keep it below (maximise -hate)."""
VARIANTS = ("tscac", "bc", "rcpo", "scalarised")
MAIN = SIGNALS.index(MAIN_SIGNAL)
AUX = np.array([SIGNALS.index(name) for name in AUX_SIGNALS])


@dataclass(frozen=True, kw_only=True)
class TSCACConfig:
    """Everything that defines a TSCAC (or baseline) training run."""

    variant: str = "tscac"
    """`tscac`, `bc`, `rcpo` or `scalarised` (see the module docstring)."""
    lambdas: tuple[float, ...] = (0.2, 0.2, 0.2, 0.2, 0.2)
    """lambda_i > 0 of each auxiliary signal (`AUX_SIGNALS` order) in stage two's closed form; smaller
    sum = more weight on watch time (0.2 each kept every constraint in `benchmarks/tscac_world.py`, 3 seeds)."""
    gamma: float = 0.9
    """Discount of the main (watch time) return."""
    aux_gammas: tuple[float, ...] = (0.9, 0.9, 0.9, 0.9, 0.9)
    """gamma_i of each auxiliary return."""
    tolerance: float = 0.1
    """Constraint thresholds: behaviour rate x (1 - tolerance), x (1 + tolerance) for hate."""
    history_len: int = 20
    """L: exposures in a state (as `SeqRec-v0`'s `history_len`)."""
    d_model: int = 32
    """Width of the SASRec encoders."""
    n_layers: int = 1
    """Self-attention blocks per encoder."""
    dropout: float = 0.1
    """Dropout inside the encoders."""
    n_candidates: int = 0
    """0: softmax over the whole catalogue; C > 0: over the logged item and C uniform candidates."""
    watch_time_scale: float = 30.0
    """Seconds per unit of watch time, in rewards and encoder inputs (keeps A_1 of order 1)."""
    actor_objective: str = "awr"
    """Stage-one / baseline actor step: `awr` (offline, default) or `pg` (the paper's -A log pi)."""
    awr_temperature: float = 0.5
    """beta of the AWR weights exp(A / beta)."""
    max_weight: float = 20.0
    """Clip of the AWR weights."""
    scalarised_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    """k_i of the scalarised baseline, on the signed auxiliary advantages (hate enters as -hate)."""
    rcpo_learning_rate: float = 0.05
    """eta: dual ascent step of RCPO's multipliers."""
    critic_steps: int = 2000
    """Gradient steps of the critic."""
    actor_steps: int = 1500
    """Gradient steps of each actor."""
    batch_size: int = 256
    """Transitions per gradient step."""
    learning_rate: float = 1e-3
    """Adam learning rate of actors and critic."""
    target_tau: float = 0.02
    """Polyak rate of the critic's target network."""
    seed: int = 0
    """Seed of initialisation, minibatches and action sampling."""
    device: str = "cpu"
    """`cpu`, `cuda` or `auto` (CUDA when present)."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"TSCACConfig.variant must be one of {list(VARIANTS)}, got {self.variant!r}")
        for name in ("lambdas", "aux_gammas", "scalarised_weights"):
            value = getattr(self, name)
            if len(value) != len(AUX_SIGNALS):
                raise ValueError(
                    f"TSCACConfig.{name} needs {len(AUX_SIGNALS)} values ({AUX_SIGNALS}), got {value}"
                )
        if any(v <= 0 for v in self.lambdas):
            raise ValueError(f"TSCACConfig.lambdas must be positive, got {self.lambdas}")
        if any(not 0.0 <= g < 1.0 for g in (self.gamma, *self.aux_gammas)):
            raise ValueError("TSCACConfig.gamma and aux_gammas must lie in [0, 1)")
        if not 0.0 <= self.tolerance < 1.0:
            raise ValueError(f"TSCACConfig.tolerance must lie in [0, 1), got {self.tolerance}")
        if self.actor_objective not in ("awr", "pg"):
            raise ValueError(
                f"TSCACConfig.actor_objective must be 'awr' or 'pg', got {self.actor_objective!r}"
            )
        for name in ("history_len", "d_model", "n_layers", "critic_steps", "actor_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TSCACConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("watch_time_scale", "awr_temperature", "max_weight", "learning_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TSCACConfig.{name} must be positive, got {getattr(self, name)}")
        if self.n_candidates < 0:
            raise ValueError(f"TSCACConfig.n_candidates must be >= 0, got {self.n_candidates}")
        if not 0.0 < self.target_tau <= 1.0:
            raise ValueError(f"TSCACConfig.target_tau must lie in (0, 1], got {self.target_tau}")

    @property
    def gammas(self) -> np.ndarray:
        """[6] discount of each signal, `SIGNALS` order (unused signals get the main gamma)."""
        gammas = np.full(len(SIGNALS), self.gamma)
        gammas[AUX] = self.aux_gammas
        return gammas

    @property
    def reward_scale(self) -> np.ndarray:
        """[6] multiplier of each feedback signal in rewards and encoder inputs."""
        scale = np.ones(len(SIGNALS), dtype=np.float32)
        scale[MAIN] = 1.0 / self.watch_time_scale
        return scale


# ---------------------------------------------------------------------------------------------- data
class Transitions(NamedTuple):
    """Logged transitions; s_t and s_{t+1} are rows of the shared state windows (`item_ids`, `feedback`)."""

    item_ids: np.ndarray  # [S, L] int64 state windows, left-padded with N
    feedback: np.ndarray  # [S, L, 6] float32 raw feedback of the window's items
    state: np.ndarray  # [T] int64 row of s_t
    next_state: np.ndarray  # [T] int64 row of s_{t+1}
    action: np.ndarray  # [T] int64 logged item
    reward: np.ndarray  # [T, 6] float32 raw feedback of the step, `SIGNALS` order
    done: np.ndarray  # [T] float32, 1 at a user's last logged step
    propensity: np.ndarray  # [T] float64 pi_b(a_t|s_t)
    n_items: int

    def __len__(self) -> int:
        return len(self.action)

    def observations(self, index: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The `SeqRec-v0`-style observations (`item_ids`, `feedback`) of the states s_t (all, or `index`)."""
        rows = self.state if index is None else self.state[index]
        return {"item_ids": self.item_ids[rows], "feedback": self.feedback[rows]}

    def behaviour_rates(self) -> dict[str, float]:
        """Per-step mean of each signal in the logs."""
        return {name: float(self.reward[:, j].mean()) for j, name in enumerate(SIGNALS)}


def transitions_from_logs(data, history_len: int) -> Transitions:
    """Transitions (see the module docstring) from world logs (a `LoggedInteractions` of one-item slates).

    Raises:
        DataError: a feedback signal or the `propensity` column is missing, or slates have several items.
    """
    frame = data.frame
    missing = [name for name in (*SIGNALS, "propensity") if name not in frame.columns]
    if missing:
        raise DataError(f"{data.name}: logs lack column(s) {missing}, needed for TSCAC's transitions")
    if "position" in frame.columns and (frame["position"].to_numpy() != 0).any():
        row = int(np.flatnonzero(frame["position"].to_numpy() != 0)[0]) + 1
        raise DataError(
            f"{data.name}: column 'position' is non-zero at row {row}; TSCAC needs one-item slates"
        )
    windows = history_windows(data, history_len=history_len, feedback_columns=SIGNALS)
    feedback = frame[list(SIGNALS)].to_numpy(np.float32)
    done = np.zeros(len(frame), dtype=np.float32)
    users = frame["user_id"].to_numpy(np.int64)
    done[np.flatnonzero(np.r_[users[1:] != users[:-1], True])] = 1.0  # each user's last logged step
    return Transitions(
        item_ids=windows.item_ids,
        feedback=windows.feedback,
        state=windows.before,
        next_state=windows.after,
        action=frame["item_id"].to_numpy(np.int64),
        reward=feedback,
        done=done,
        propensity=frame["propensity"].to_numpy(np.float64),
        n_items=int(data.n_items),
    )


def constraint_thresholds(behaviour_rates: Mapping[str, float], tolerance: float) -> dict[str, float]:
    """Per-step rate each auxiliary signal must keep: behaviour x (1 - tol), x (1 + tol) for hate (a ceiling)."""
    return {
        name: behaviour_rates[name] * (1.0 - sign * tolerance)
        for name, sign in zip(AUX_SIGNALS, AUX_SIGN, strict=True)
    }


def constraint_violations(rates: Mapping[str, float], thresholds: Mapping[str, float]) -> list[str]:
    """The auxiliary signals whose rate breaks its threshold (below it, or above it for hate)."""
    return [
        name
        for name, sign in zip(AUX_SIGNALS, AUX_SIGN, strict=True)
        if sign * (rates[name] - thresholds[name]) < 0
    ]


# ---------------------------------------------------------------------------------------------- networks
def _encoder(config: TSCACConfig, n_items: int) -> nn.Module:
    from recsim_env.encoders import build

    return build(
        "sasrec",
        {
            "n_items": n_items,
            "max_len": config.history_len,
            "d_model": config.d_model,
            "n_layers": config.n_layers,
            "dropout": config.dropout,
            "feedback_dim": len(SIGNALS),
        },
    )


class Actor(nn.Module):
    """Softmax policies over items on one SASRec trunk: `logits_h = score(head_h(encoder(s))) + b_h`.

    `n_heads` policies share the state encoder (stage one's pi_i are the heads of one actor, so the
    five of them cost one forward pass); each head has its own projection and item bias and is
    trained only by its own loss. Logits are [B, H, N], or [B, H, C] over candidates.
    """

    def __init__(self, config: TSCACConfig, n_items: int, n_heads: int = 1) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.encoder = _encoder(config, n_items)
        self.head = nn.Linear(config.d_model, config.d_model * n_heads)
        self.item_bias = nn.Parameter(torch.zeros(n_heads, n_items))
        self.register_buffer("feedback_scale", torch.as_tensor(config.reward_scale))

    def state(self, item_ids: torch.Tensor, feedback: torch.Tensor) -> torch.Tensor:
        """[B, L], [B, L, 6] -> [B, H, D]."""
        state = self.encoder.user_state(item_ids, feedback=feedback * self.feedback_scale)
        return self.head(state).view(len(state), self.n_heads, -1)

    def logits(self, item_ids: torch.Tensor, feedback: torch.Tensor, items: torch.Tensor | None = None):
        """[B, H, N] logits, or [B, H, C] of the candidates `items` [B, C]."""
        state = self.state(item_ids, feedback)
        if items is None:
            return self.encoder.score(state) + self.item_bias
        heads = torch.arange(self.n_heads, device=items.device)[:, None]
        return (
            self.encoder.score(state, items[:, None].expand(-1, self.n_heads, -1))
            + self.item_bias[heads, items[:, None]]
        )

    def log_prob(self, item_ids, feedback, action, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """[B, H] log pi_h(a|s): full softmax, or sampled softmax over (a, candidates [C]) when given."""
        if candidates is None:
            logits = self.logits(item_ids, feedback)  # [B, H, N]
            return torch.log_softmax(logits, -1).gather(2, action[:, None, None].expand(-1, self.n_heads, 1))[
                ..., 0
            ]
        items = torch.cat([action[:, None], candidates.expand(len(action), -1)], dim=1)  # [B, 1 + C]
        logits = self.logits(item_ids, feedback, items)  # [B, H, 1 + C]
        # A candidate equal to the logged item would be counted twice: mask the duplicate out.
        duplicate = torch.cat(
            [torch.zeros_like(action[:, None], dtype=torch.bool), items[:, 1:] == action[:, None]], 1
        )
        return torch.log_softmax(logits.masked_fill(duplicate[:, None], float("-inf")), -1)[..., 0]


class Critic(nn.Module):
    """V_i(s) of every signal i: one encoder, one linear head per signal -> [B, 6]."""

    def __init__(self, config: TSCACConfig, n_items: int) -> None:
        super().__init__()
        self.encoder = _encoder(config, n_items)
        self.values = nn.Linear(config.d_model, len(SIGNALS))
        self.register_buffer("feedback_scale", torch.as_tensor(config.reward_scale))

    def forward(self, item_ids: torch.Tensor, feedback: torch.Tensor) -> torch.Tensor:
        return self.values(self.encoder.user_state(item_ids, feedback=feedback * self.feedback_scale))


# ---------------------------------------------------------------------------------------------- losses
def stage_two_log_weights(
    aux_log_probs: torch.Tensor,
    main_advantage: torch.Tensor,
    log_propensity: torch.Tensor,
    lambdas: Sequence[float],
) -> torch.Tensor:
    """[B] log of the unnormalised stage-two weight of each logged (s, a) (TSCAC eq. 8 over pi_b):

    log w = sum_i (lambda_i / Lambda) log pi_i(a|s) + A_1(s, a) / Lambda - log pi_b(a|s),  Lambda = sum_i lambda_i

    Args:
        aux_log_probs: [B, m] log pi_i(a|s) of the stage-one actors at the logged action.
        main_advantage: [B] A_1(s, a) of the main critic.
        log_propensity: [B] log pi_b(a|s).
        lambdas: m positive lambda_i.
    """
    lam = torch.as_tensor(lambdas, dtype=aux_log_probs.dtype, device=aux_log_probs.device)
    total = lam.sum()
    return aux_log_probs @ (lam / total) + main_advantage / total - log_propensity


def stage_two_weights(aux_log_probs, main_advantage, log_propensity, lambdas) -> torch.Tensor:
    """[B] stage-two weights self-normalised over the batch (they sum to 1): softmax of the log weights."""
    return torch.softmax(stage_two_log_weights(aux_log_probs, main_advantage, log_propensity, lambdas), 0)


def awr_weights(advantage: torch.Tensor, temperature: float, max_weight: float) -> torch.Tensor:
    """[B] min(exp(A / beta), w_max) (advantage-weighted regression, Peng et al. 2019)."""
    return torch.exp(advantage / temperature).clamp(max=max_weight)


# ---------------------------------------------------------------------------------------------- training
class _Batcher:
    """Minibatches of transitions as tensors on the device (states gathered from the shared windows)."""

    def __init__(self, data: Transitions, config: TSCACConfig, device: torch.device) -> None:
        self.data, self.config, self.device = data, config, device
        self.item_ids = torch.as_tensor(data.item_ids, device=device)
        self.feedback = torch.as_tensor(data.feedback, device=device)
        self.rng = np.random.default_rng(config.seed)

    def sample(self) -> np.ndarray:
        return self.rng.integers(0, len(self.data), size=min(self.config.batch_size, len(self.data)))

    def states(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.as_tensor(rows, device=self.device)
        return self.item_ids[rows], self.feedback[rows]

    def tensor(self, array: np.ndarray, dtype=torch.float32) -> torch.Tensor:
        return torch.as_tensor(array, dtype=dtype, device=self.device)


def fit_critic(
    config: TSCACConfig,
    data: Transitions,
    *,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
) -> Critic:
    """TD(0) for every signal's value: V_i(s) <- r_i + gamma_i (1 - done) V_i^target(s')."""
    from tqdm.auto import tqdm

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    critic = Critic(config, data.n_items).to(device)
    target = copy.deepcopy(critic).eval()
    optimizer = torch.optim.Adam(critic.parameters(), lr=config.learning_rate)
    batcher = _Batcher(data, config, device)
    gammas = batcher.tensor(config.gammas)
    scale = batcher.tensor(config.reward_scale)
    for step in tqdm(range(config.critic_steps), desc="tscac critic", disable=not progress):
        index = batcher.sample()
        reward = batcher.tensor(data.reward[index]) * scale  # [B, 6]
        done = batcher.tensor(data.done[index])[:, None]
        with torch.no_grad():
            target_value = reward + gammas * (1.0 - done) * target(*batcher.states(data.next_state[index]))
        loss = F.smooth_l1_loss(critic(*batcher.states(data.state[index])), target_value)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # Polyak-averaged target network
            for p, p_target in zip(critic.parameters(), target.parameters(), strict=True):
                p_target.lerp_(p, config.target_tau)
        if on_step is not None:
            on_step(step, {"critic_loss": float(loss.detach())})
    return critic.eval()


@torch.no_grad()
def advantages(critic: Critic, config: TSCACConfig, data: Transitions, chunk: int = 4096) -> np.ndarray:
    """[T, 6] one-step advantages A_i = r_i + gamma_i (1 - done) V_i(s') - V_i(s) (TSCAC eq. 4), scaled rewards."""
    device = next(critic.parameters()).device
    batcher = _Batcher(data, config, device)
    gammas = batcher.tensor(config.gammas)
    out = np.empty((len(data), len(SIGNALS)), dtype=np.float32)
    for start in range(0, len(data), chunk):
        rows = np.arange(start, min(start + chunk, len(data)))
        reward = batcher.tensor(data.reward[rows]) * batcher.tensor(config.reward_scale)
        done = batcher.tensor(data.done[rows])[:, None]
        value = critic(*batcher.states(data.state[rows]))
        following = critic(*batcher.states(data.next_state[rows]))
        out[rows] = (reward + gammas * (1.0 - done) * following - value).cpu().numpy()
    return out


def signed_aux(advantage: np.ndarray) -> np.ndarray:
    """[T, m] auxiliary advantages, hate with a negative sign (every constraint reads 'keep it high')."""
    return advantage[:, AUX] * AUX_SIGN


WeightFn = Callable[[np.ndarray, torch.Tensor], torch.Tensor]
"""(batch rows [B], log pi_h(a|s) [B, H] of the actor being fitted) -> [B, H] weights of `-sum w log pi`."""


def fit_actor(
    config: TSCACConfig,
    data: Transitions,
    weights: WeightFn,
    *,
    n_heads: int = 1,
    desc: str = "tscac actor",
    seed_offset: int = 0,
    progress: bool = True,
    on_step: Callable[[int, torch.Tensor, np.ndarray], None] | None = None,
) -> Actor:
    """Fit an actor by weighted log-likelihood `-sum_j w_j log pi(a_j|s_j)` over minibatches of logged actions.

    Every actor of the module is this loop with a different weight function (per head with `n_heads > 1`);
    `on_step(step, log_pi, rows)` sees each batch (RCPO's dual ascent uses it).
    """
    from tqdm.auto import tqdm

    device = resolve_device(config.device)
    torch.manual_seed(config.seed + seed_offset)
    actor = Actor(config, data.n_items, n_heads).to(device)
    optimizer = torch.optim.Adam(actor.parameters(), lr=config.learning_rate)
    batcher = _Batcher(data, dataclasses.replace(config, seed=config.seed + seed_offset), device)
    generator = torch.Generator(device=device).manual_seed(config.seed + seed_offset)
    for step in tqdm(range(config.actor_steps), desc=desc, disable=not progress):
        rows = batcher.sample()
        action = batcher.tensor(data.action[rows], torch.long)
        candidates = None
        if config.n_candidates:
            candidates = torch.randint(
                0, data.n_items, (config.n_candidates,), device=device, generator=generator
            )
        log_pi = actor.log_prob(*batcher.states(data.state[rows]), action, candidates)
        loss = -(weights(rows, log_pi.detach()).detach() * log_pi).sum()
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(actor.parameters(), 1.0)
        optimizer.step()
        if on_step is not None:
            on_step(step, log_pi.detach(), rows)
    return actor.eval()


def _actor_step_weights(config: TSCACConfig, advantage: torch.Tensor) -> torch.Tensor:
    """Mean-normalised per-sample weights of an AWR (or PG) actor step on advantage [B] (or [B, H])."""
    if config.actor_objective == "pg":
        return advantage / len(advantage)
    return awr_weights(advantage, config.awr_temperature, config.max_weight) / len(advantage)


def fit_stage_one(
    config: TSCACConfig, data: Transitions, advantage: np.ndarray, *, progress: bool = True
) -> Actor:
    """Stage one: one policy pi_i per auxiliary signal (head i), each on its own (signed) advantage A_i."""
    aux = signed_aux(advantage)

    def weights(rows, log_pi):
        return _actor_step_weights(config, torch.as_tensor(aux[rows], device=log_pi.device))

    return fit_actor(
        config,
        data,
        weights,
        n_heads=len(AUX_SIGNALS),
        desc="tscac stage one",
        seed_offset=1,
        progress=progress,
    )


@torch.no_grad()
def logged_log_probs(actor: Actor, data: Transitions, chunk: int = 4096) -> np.ndarray:
    """[T, H] log pi_h(a_t|s_t) of each head at the logged actions (full-catalogue softmax)."""
    device = next(actor.parameters()).device
    item_ids = torch.as_tensor(data.item_ids, device=device)
    feedback = torch.as_tensor(data.feedback, device=device)
    out = np.empty((len(data), actor.n_heads), dtype=np.float32)
    for start in range(0, len(data), chunk):
        rows = torch.as_tensor(data.state[start : start + chunk], device=device)
        action = torch.as_tensor(np.array(data.action[start : start + chunk]), device=device)
        out[start : start + len(rows)] = actor.log_prob(item_ids[rows], feedback[rows], action).cpu().numpy()
    return out


class StageOne(NamedTuple):
    """What every variant's actor step reads: the critic's advantages and the stage-one actors' log-probs."""

    critic: Critic
    advantage: np.ndarray  # [T, 6]
    actors: Actor | None  # stage-one pi_i, one head per auxiliary signal (None unless TSCAC needs them)
    aux_log_probs: np.ndarray | None  # [T, m]


def fit_critics_and_stage_one(
    config: TSCACConfig, data: Transitions, *, with_actors: bool = True, progress: bool = True
) -> StageOne:
    """The critic on every signal and (for TSCAC) the stage-one actors; shared by all variants of a run."""
    critic = fit_critic(config, data, progress=progress)
    advantage = advantages(critic, config, data)
    if not with_actors:
        return StageOne(critic, advantage, None, None)
    actors = fit_stage_one(config, data, advantage, progress=progress)
    return StageOne(critic, advantage, actors, logged_log_probs(actors, data))


def fit_main_actor(
    config: TSCACConfig,
    data: Transitions,
    stage_one: StageOne,
    *,
    thresholds: Mapping[str, float] | None = None,
    progress: bool = True,
) -> tuple[Actor, dict]:
    """The final actor of `config.variant` (stage two for TSCAC); returns it and training statistics."""
    adv_main = stage_one.advantage[:, MAIN]
    aux = signed_aux(stage_one.advantage)
    log_pb = np.log(data.propensity)
    stats: dict = {}
    on_step = None
    if config.variant == "tscac":
        if stage_one.aux_log_probs is None:
            raise ValueError(
                "TSCAC's stage two needs the stage-one actors (fit_critics_and_stage_one(with_actors=True))"
            )

        def weights(rows, log_pi):
            tensor = lambda a: torch.as_tensor(a, dtype=torch.float32, device=log_pi.device)  # noqa: E731
            return stage_two_weights(
                tensor(stage_one.aux_log_probs[rows]),
                tensor(adv_main[rows]),
                tensor(log_pb[rows]),
                config.lambdas,
            )[:, None]

    elif config.variant == "bc":

        def weights(rows, log_pi):
            return torch.full_like(log_pi, 1.0 / len(log_pi))  # [B, 1]

    elif config.variant == "scalarised":
        combined = adv_main + aux @ np.asarray(config.scalarised_weights)

        def weights(rows, log_pi):
            return _actor_step_weights(config, torch.as_tensor(combined[rows], device=log_pi.device))[:, None]

    else:  # rcpo
        if thresholds is None:
            raise ValueError("RCPO needs the constraint thresholds")
        signed_threshold = np.array([thresholds[n] for n in AUX_SIGNALS]) * AUX_SIGN
        signed_reward = data.reward[:, AUX] * AUX_SIGN
        mu = np.zeros(len(AUX_SIGNALS))
        estimate = signed_reward.mean(axis=0)  # running SNIPS estimate of J_i(pi), starts at the behaviour's
        stats["mu"] = mu

        def weights(rows, log_pi):
            advantage = torch.as_tensor(adv_main[rows] + aux[rows] @ mu, device=log_pi.device)
            return _actor_step_weights(config, advantage)[:, None]

        def on_step(step, log_pi, rows):
            # Dual ascent on the estimated violation c_i - J_i(pi) (SNIPS of the per-step rate on the batch).
            ratio = np.exp(log_pi[:, 0].cpu().numpy().astype(np.float64) - log_pb[rows])
            batch_rate = ratio @ signed_reward[rows] / ratio.sum()
            estimate[:] = 0.9 * estimate + 0.1 * batch_rate
            mu[:] = np.maximum(0.0, mu + config.rcpo_learning_rate * (signed_threshold - estimate))

    actor = fit_actor(
        config,
        data,
        weights,
        desc=f"tscac[{config.variant}]",
        seed_offset=100,
        progress=progress,
        on_step=on_step,
    )
    if "mu" in stats:
        stats["mu"] = dict(zip(AUX_SIGNALS, map(float, stats["mu"]), strict=True))
    return actor, stats


# ---------------------------------------------------------------------------------------------- policy
class TSCACPolicy:
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
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> TSCACPolicy:
        """Restore a policy written by `save`; a wrong kind or a damaged file raises `CheckpointError`."""
        return cls.from_artifact(*open_policy(path, cls.kind), device=device)

    @classmethod
    def from_artifact(cls, artifact: Artifact, manifest: dict, device: str = "cpu") -> TSCACPolicy:
        where = artifact.root / "policy.json"
        fields = check_fields(manifest["config"], {"n_items": int, "name": str | None}, where=str(where))
        n_items = fields.get("n_items")
        if n_items is None or not 0 < n_items <= MAX_ITEMS:
            raise CheckpointError(f"{where}: 'n_items' must be an integer in [1, {MAX_ITEMS}]")
        config = dataclass_from_json(TSCACConfig, artifact.read_json("config.json"), where=str(artifact.root / "config.json"))
        actor = Actor(config, n_items)
        state = artifact.read_tensors("weights.safetensors", framework="pt")
        try:
            actor.load_state_dict(state)
        except RuntimeError as error:
            raise CheckpointError(f"{artifact.root / 'weights.safetensors'}: weights do not fit: {error}") from None
        return cls(actor.to(resolve_device(device)), config, n_items, name=fields.get("name"))


# ---------------------------------------------------------------------------------------------- entry points
def train(
    config: TSCACConfig,
    data,
    *,
    stage_one: StageOne | None = None,
    progress: bool = True,
) -> tuple[TSCACPolicy, dict]:
    """Train `config.variant` offline on logs (`LoggedInteractions` or `Transitions`); returns policy and stats.

    `stage_one` (from `fit_critics_and_stage_one` on the same data and critic settings) lets several
    variants or lambda values share one critic and one set of stage-one actors. Deterministic on CPU.
    """
    transitions = data if isinstance(data, Transitions) else transitions_from_logs(data, config.history_len)
    thresholds = constraint_thresholds(transitions.behaviour_rates(), config.tolerance)
    if stage_one is None:
        stage_one = fit_critics_and_stage_one(
            config, transitions, with_actors=config.variant == "tscac", progress=progress
        )
    actor, stats = fit_main_actor(config, transitions, stage_one, thresholds=thresholds, progress=progress)
    stats["thresholds"] = thresholds
    return TSCACPolicy(actor, config, transitions.n_items), stats


def collect_transitions(
    policy, *, steps: int, seed: int = 0, num_envs: int = 64, history_len: int = 20, **env_kwargs
) -> Transitions:
    """Run `policy` (any `agents.Policy`, stochastic) in `SeqRec-v0` for `steps` steps; its exact
    probabilities of the shown items are the propensities. Episodes still running at the end are cut
    (their last step is marked done)."""
    from recsim_env.envs import SeqRecVectorEnv

    env = SeqRecVectorEnv(num_envs=num_envs, history_len=history_len, **env_kwargs)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    n_items = env.user_model.n_items
    item_ids, feedback, state, next_state, action, reward, done, propensity = ([] for _ in range(8))
    current = np.arange(num_envs)  # row of each sub-env's current observation
    item_ids.append(obs["item_ids"].copy())
    feedback.append(obs["feedback"].copy())
    n_states = num_envs
    just_reset = np.zeros(num_envs, dtype=bool)
    taken = 0
    while taken < steps:
        probs = np.atleast_2d(policy.action_distribution(obs))
        cdf = probs.cumsum(axis=1)
        chosen = np.minimum((cdf < rng.random((num_envs, 1)) * cdf[:, -1:]).sum(axis=1), n_items - 1)
        obs, _, terminated, truncated, info = env.step(chosen)
        rows = n_states + np.arange(num_envs)
        item_ids.append(obs["item_ids"].copy())
        feedback.append(obs["feedback"].copy())
        n_states += num_envs
        live = np.flatnonzero(~just_reset)
        state.append(current[live])
        next_state.append(rows[live])
        action.append(chosen[live])
        reward.append(info["feedback"][live].astype(np.float32))
        done.append((terminated | truncated)[live].astype(np.float32))
        propensity.append(probs[live, chosen[live]])
        taken += len(live)
        current = rows
        just_reset = terminated | truncated
    done_all = np.concatenate(done)
    done_all[-num_envs:] = 1.0  # cut episodes: no bootstrapping past the data
    return Transitions(
        item_ids=np.concatenate(item_ids).astype(np.int64),
        feedback=np.concatenate(feedback).astype(np.float32),
        state=np.concatenate(state),
        next_state=np.concatenate(next_state),
        action=np.concatenate(action).astype(np.int64),
        reward=np.concatenate(reward),
        done=done_all,
        propensity=np.concatenate(propensity).astype(np.float64),
        n_items=n_items,
    )


def train_online(
    config: TSCACConfig,
    *,
    rounds: int = 3,
    steps_per_round: int = 20_000,
    num_envs: int = 64,
    progress: bool = True,
    **env_kwargs,
) -> tuple[TSCACPolicy, dict]:
    """Online TSCAC in the world: each round the current policy (uniform at first) collects
    `steps_per_round` steps with known probabilities, and both stages are refitted on all data so far.
    Stage two's pi_b is then the collecting policy, i.e. the weights are over sampled actions."""
    if rounds < 1 or steps_per_round < 1:
        raise ValueError("train_online: rounds and steps_per_round must be positive")

    class _Uniform:
        n_items = None

        def action_distribution(self, obs):
            n = np.asarray(obs["item_ids"]).shape[0]
            return np.full((n, self.n_items), 1.0 / self.n_items)

    from recsim_env.envs import SeqRecVectorEnv

    collector = _Uniform()
    collector.n_items = SeqRecVectorEnv(num_envs=1, **env_kwargs).user_model.n_items
    pieces: list[Transitions] = []
    history = []
    policy, stats = None, {}
    for round_ in range(rounds):
        pieces.append(
            collect_transitions(
                collector,
                steps=steps_per_round,
                seed=config.seed * 1000 + round_,
                num_envs=num_envs,
                history_len=config.history_len,
                **env_kwargs,
            )
        )
        data = _concatenate(pieces)
        policy, stats = train(dataclasses.replace(config, seed=config.seed + round_), data, progress=progress)
        history.append(
            {name: float(data.reward[-steps_per_round:, j].mean()) for j, name in enumerate(SIGNALS)}
        )
        collector = policy
    stats["collected_rates"] = history
    return policy, stats


def _concatenate(pieces: Sequence[Transitions]) -> Transitions:
    offsets = np.cumsum([0] + [len(p.item_ids) for p in pieces[:-1]])
    return Transitions(
        item_ids=np.concatenate([p.item_ids for p in pieces]),
        feedback=np.concatenate([p.feedback for p in pieces]),
        state=np.concatenate([p.state + o for p, o in zip(pieces, offsets, strict=True)]),
        next_state=np.concatenate([p.next_state + o for p, o in zip(pieces, offsets, strict=True)]),
        action=np.concatenate([p.action for p in pieces]),
        reward=np.concatenate([p.reward for p in pieces]),
        done=np.concatenate([p.done for p in pieces]),
        propensity=np.concatenate([p.propensity for p in pieces]),
        n_items=pieces[0].n_items,
    )


def world_rates(
    policy, *, n_episodes: int, seed: int = 0, num_envs: int = 64, deterministic: bool = False, **env_kwargs
) -> dict[str, float]:
    """Per-step mean of every signal of `policy` rolled out in `SeqRec-v0` over `n_episodes` episodes (truth)."""
    from recsim_env.envs import SeqRecVectorEnv

    if n_episodes < 1:
        raise ValueError(f"argument 'n_episodes' must be positive, got {n_episodes}")
    env = SeqRecVectorEnv(num_envs=num_envs, **env_kwargs)
    if hasattr(policy, "seed"):
        policy.seed(seed)
    obs, _ = env.reset(seed=seed)
    totals = np.zeros(len(env.signals))
    episode_totals = np.zeros((num_envs, len(env.signals)))
    episode_steps = np.zeros(num_envs)
    steps = 0.0
    finished = 0
    just_reset = np.zeros(num_envs, dtype=bool)
    while finished < n_episodes:
        obs, _, terminated, truncated, info = env.step(
            np.asarray(policy.act(obs, deterministic=deterministic))
        )
        live = ~just_reset
        episode_totals += np.where(live[:, None], info["feedback"], 0.0)
        episode_steps += live
        done = np.flatnonzero(terminated | truncated)[: n_episodes - finished]
        totals += episode_totals[done].sum(axis=0)
        steps += episode_steps[done].sum()
        finished += len(done)
        episode_totals[terminated | truncated] = 0.0
        episode_steps[terminated | truncated] = 0.0
        just_reset = terminated | truncated
    return {name: float(totals[j] / steps) for j, name in enumerate(env.signals)}
