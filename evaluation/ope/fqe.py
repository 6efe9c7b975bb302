"""Fitted Q evaluation (FQE) with a small torch Q-network over state features.

torch is imported here at module level: this module is only imported by code that fits FQE, never by
`evaluation.ope`'s package import.

The evaluation policy is dense (`[n, H, N]`) or a `SparseActionDist` with one row per step (episode-major,
`evaluation.ope.sequential`). Both Q-network heads are linear in an action embedding, `Q(s, a) = <h(s), e_a> +
b_a`, so for a sparse row (listed items `j`, the rest's mass spread uniformly over the other `N - T` items)

    E_{a ~ pi}[Q(s, a)] = sum_j probs_j Q(s, item_j) + rest / (N - T) * (sum_a Q(s, a) - sum_j Q(s, item_j)),
    sum_a Q(s, a)       = <h(s), sum_a e_a> + sum_a b_a

is exact, at `O(T W)` per state plus one `O(N W)` sum per backup, and never builds a `[states, N]` array.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from evaluation.ope.base import Estimate, bootstrap_interval
from evaluation.ope.checks import (
    FeedbackError,
    check_bootstrap_arguments,
    first_index,
    numeric_array,
    refuse_unknown,
)
from evaluation.ope.sequential import episode_where, sparse_episode_steps, validate_episode_inputs
from evaluation.ope.sparse import SparseActionDist
from recsim_env.checks import check_bool, check_integer, check_real
from recsim_env.encoders.trainer import torch_threads
from recsim_env.errors import ArgumentError


@dataclass(frozen=True, kw_only=True)
class FQEConfig:
    """Hyperparameters of fitted Q evaluation."""

    gamma: float = 1.0
    """Discount factor in [0, 1]."""
    horizon: int | None = None
    """Evaluate the first `horizon` steps; all logged steps when None. The last kept step is terminal."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the Q-network's hidden layers (after the encoder, if any)."""
    n_iterations: int = 20
    """Number of fitted-Q iterations (Bellman backups); at least the horizon for an exact finite-horizon fit."""
    n_steps_per_iteration: int = 200
    """Gradient steps regressing Q toward the frozen targets in each iteration."""
    batch_size: int = 256
    """Transitions per gradient step."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    time_feature: bool = True
    """Append the fraction of the horizon still to go to the state, since a finite-horizon Q depends on it."""
    seed: int = 0
    """Seeds network initialisation and minibatch order; a fixed seed is bit-for-bit reproducible on CPU."""
    progress: bool = False
    """Show a progress bar over iterations."""
    n_threads: int | None = 1
    """torch intra-op threads while fitting (None: leave torch's setting); small MLPs run fastest on one."""

    def __post_init__(self) -> None:
        check_real("gamma", self.gamma, low=0.0, high=1.0)
        if self.horizon is not None:
            check_integer("horizon", self.horizon, low=1)
        if not isinstance(self.hidden_sizes, tuple | list):
            raise ArgumentError(
                f"hidden_sizes: expected a tuple of ints, got {type(self.hidden_sizes).__name__}"
            )
        for width in self.hidden_sizes:
            check_integer("hidden_sizes", width, low=1, high=1 << 20)
        check_integer("n_iterations", self.n_iterations, low=1, high=1_000_000)
        check_integer("n_steps_per_iteration", self.n_steps_per_iteration, low=1, high=100_000_000)
        check_integer("batch_size", self.batch_size, low=1, high=1 << 24)
        check_real("learning_rate", self.learning_rate, low=0.0, low_open=True)
        check_real("weight_decay", self.weight_decay, low=0.0)
        check_bool("time_feature", self.time_feature)
        check_bool("progress", self.progress)
        check_integer("seed", self.seed, low=0)
        if self.n_threads is not None:
            check_integer("n_threads", self.n_threads, low=1, high=4096)


FIT_ARGUMENTS = ("state", "action", "reward", "pscore", "action_dist", "mask")
"""The keyword arguments of `FittedQEvaluation.fit` (and of its estimate methods, which fit when given data)."""
FULL_OUTPUT_MAX_ELEMENTS = 1 << 22
"""Up to this many batch x catalogue elements a regression step scores every action and picks the logged one;
above it only the logged action (`QNetwork.q_at`, the same value), since `[batch, N]` would dominate the step."""
CHUNK_ELEMENTS = 1 << 18
"""States x listed items per chunk of a sparse expectation (its `[chunk, T, W]` embeddings stay ~64 MiB)."""


class QNetwork(nn.Module):
    """`Q(s, .)`: an optional encoder, then an MLP mapping state features `[B, D]` to action values `[B, N]`.

    With `action_features` `[N, F]` the last layer is factorised, `Q(s, a) = <h(s), P f_a> + b_a`, so
    actions with similar features share what was learned about them (a one-hot head learns each of N
    actions from its own transitions only).
    """

    def __init__(
        self,
        in_features: int,
        n_actions: int,
        hidden_sizes: tuple[int, ...],
        encoder: nn.Module | None,
        action_features: torch.Tensor | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        if action_features is None:
            layers.append(nn.Linear(width, n_actions))
            self.action_projection = None
        else:
            self.register_buffer("action_features", action_features)  # [N, F]
            self.action_projection = nn.Linear(action_features.shape[1], width)
            self.action_bias = nn.Parameter(torch.zeros(n_actions))
        self.head = nn.Sequential(*layers)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        features = self.encoder(state) if self.encoder is not None else state
        hidden = self.head(features)  # [B, N] or [B, H]
        if self.action_projection is None:
            return hidden
        return hidden @ self.action_projection(self.action_features).T + self.action_bias  # [B, N]

    # Both heads are `Q(s, a) = <state_embedding(s), e_a> + b_a`: the one-hot head's e_a is its last layer's
    # row a, the factorised head's `P f_a`. The methods below use that to score a few actions per state.

    def state_embedding(self, state: torch.Tensor) -> torch.Tensor:
        """`h(s)` `[B, W]`: the input of the last linear map."""
        features = self.encoder(state) if self.encoder is not None else state
        if self.action_projection is None:
            return self.head[:-1](features)
        return self.head(features)

    def action_embedding(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(e_a [..., W], b_a [...])` of the actions `action` (int64, any shape)."""
        if self.action_projection is None:
            return self.head[-1].weight[action], self.head[-1].bias[action]
        return self.action_projection(self.action_features[action]), self.action_bias[action]

    def action_embedding_total(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`(sum_a e_a [W], sum_a b_a [])` over the catalogue, in float64."""
        if self.action_projection is None:
            weight, bias = self.head[-1].weight, self.head[-1].bias
        else:
            weight, bias = self.action_projection(self.action_features), self.action_bias
        return weight.double().sum(dim=0), bias.double().sum()

    def q_at(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """`Q(s_b, action_b)` `[B]`, without the other actions' values."""
        embedding, bias = self.action_embedding(action)
        return (self.state_embedding(state) * embedding).sum(dim=1) + bias


@torch.no_grad()
def sparse_policy_values(q_net: QNetwork, state: torch.Tensor, dist: SparseActionDist) -> np.ndarray:
    """`[B]` float64 `E_{a ~ pi(. | s_b)}[Q(s_b, a)]` for a sparse `dist` of `B` rows (module docstring), exact."""
    total_embedding, total_bias = q_net.action_embedding_total()
    items = torch.as_tensor(dist.items)
    size = max(1, CHUNK_ELEMENTS // max(1, dist.n_listed))
    listed, total = [], []
    for start in range(0, state.shape[0], size):
        hidden = q_net.state_embedding(state[start : start + size])  # [c, W]
        embedding, bias = q_net.action_embedding(items[start : start + size])  # [c, T, W], [c, T]
        listed.append(torch.einsum("cw,ctw->ct", hidden, embedding) + bias)
        total.append(hidden.double() @ total_embedding + total_bias)
    return dist.expectation(torch.cat(listed).double().numpy(), torch.cat(total).numpy())


class FittedQEvaluation:
    """Fitted Q evaluation (Le, Voloshin & Yue 2019, "Batch Policy Learning under Constraints"; Ernst et al. 2005).

    Iterates `Q_{k+1} = argmin_Q sum_(s, a, r, s') (Q(s, a) - y)^2` with the frozen target

        y = r + gamma * (1 - terminal') * sum_a' pi_e(a' | s') Q_k(s', a')

    and estimates `V = (1 / n) * sum_i sum_a pi_e(a | s^i_0) Q_K(s^i_0, a)`. The network sees state features
    `[n, H, D]` (plus the horizon fraction still to go when `time_feature`); pass `encoder` (any
    `torch.nn.Module` mapping `[B, D] -> [B, F]`, with `encoder_out_features=F`) to put a sequence encoder in
    front.

    Args:
        config: Hyperparameters.
        encoder: Optional module applied to the state features before the MLP head; trained with it.
        encoder_out_features: Width F of the encoder's output (required with `encoder`).
        action_features: Optional action features `[N, F]` for a factorised output layer (see `QNetwork`).
    """

    estimator_name = "FQE"

    def __init__(
        self,
        config: FQEConfig | None = None,
        *,
        encoder: nn.Module | None = None,
        encoder_out_features: int | None = None,
        action_features: np.ndarray | None = None,
    ):
        if config is not None and not isinstance(config, FQEConfig):
            raise ArgumentError(f"config: expected an FQEConfig, got {type(config).__name__}")
        self.config = config or FQEConfig()
        if encoder is not None and not isinstance(encoder, nn.Module):
            raise ArgumentError(f"encoder: expected a torch.nn.Module, got {type(encoder).__name__}")
        if encoder is not None and encoder_out_features is None:
            raise ArgumentError("encoder_out_features is required with encoder")
        if encoder_out_features is not None:
            check_integer("encoder_out_features", encoder_out_features, low=1)
        self.encoder = encoder
        self.encoder_out_features = encoder_out_features
        self.action_features = None
        if action_features is not None:
            features = numeric_array("action_features", action_features)
            if features.ndim != 2 or not self.config.hidden_sizes:
                raise ArgumentError(
                    "action_features must be [n_actions, F] and needs at least one hidden layer, "
                    f"got shape {features.shape}"
                )
            if not np.isfinite(features).all():
                i, j = first_index(~np.isfinite(features))
                raise FeedbackError(f"action_features[{i}, {j}] is not finite (row {i}, 0-based)")
            self.action_features = features
        self.q_network: QNetwork | None = None
        self.loss_history: list[float] = []

    def _inputs(self, state: np.ndarray, steps: int) -> np.ndarray:
        """State features `[n, H, D']`, with the time-to-go column appended when configured."""
        if not self.config.time_feature:
            return state
        to_go = (steps - np.arange(steps, dtype=np.float64)) / steps  # [H]
        return np.concatenate([state, np.broadcast_to(to_go[None, :, None], (*state.shape[:2], 1))], axis=2)

    def fit(
        self,
        *,
        state: Any,
        action: Any,
        reward: Any,
        pscore: Any,
        action_dist: Any,
        mask: Any = None,
    ) -> FittedQEvaluation:
        """Fit Q^{pi_e} on logged episodes.

        Args:
            state: State features `[n, H, D]`.
            action: Logged actions `[n, H]`.
            reward: Rewards `[n, H]`.
            pscore: Behaviour probabilities `[n, H]` (validated only; FQE does not reweight).
            action_dist: Evaluation policy's probabilities `[n, H, N]`, or a `SparseActionDist` with one row
                per step (episode-major, `n * H` rows).
            mask: True on the steps each episode has `[n, H]`.
        """
        with torch_threads(self.config.n_threads):
            return self._fit(
                state=state, action=action, reward=reward, pscore=pscore, action_dist=action_dist, mask=mask
            )

    def _fit(
        self, *, state: Any, action: Any, reward: Any, pscore: Any, action_dist: Any, mask: Any
    ) -> FittedQEvaluation:
        cfg = self.config
        data = validate_episode_inputs(
            reward=reward,
            pscore=pscore,
            mask=mask,
            action=action,
            action_dist=action_dist,
            horizon=cfg.horizon,
        )
        n, steps = data.reward.shape
        state = numeric_array("state", state, where=episode_where)
        if state.ndim != 3 or state.shape[0] != n or state.shape[1] < steps:
            raise FeedbackError(f"state must have shape [n={n}, H, D], got {state.shape} (shape mismatch)")
        bad = data.mask[..., None] & ~np.isfinite(state[:, :steps])
        if bad.any():
            i, t, d = first_index(bad)
            raise FeedbackError(
                f"state[{i}, {t}, {d}] = {state[i, t, d]} is not finite on a logged step (episode {i}, step {t}; "
                "0-based)"
            )
        inputs = self._inputs(np.where(data.mask[..., None], state[:, :steps], 0.0), steps)
        act = np.where(data.mask, np.asarray(action, dtype=np.float64)[:, :steps], 0).astype(np.int64)
        sparse = isinstance(action_dist, SparseActionDist)
        if sparse:
            # Rows `i * steps + t`; a row after an episode's end is unused (its targets are masked below).
            dist = sparse_episode_steps(action_dist, n, np.shape(action)[1], steps)
            n_actions = dist.n_actions
        else:
            # Validated above; after an episode's end the policy's row is unused (zeroed).
            dist = np.where(data.mask[..., None], np.asarray(action_dist, dtype=np.float64)[:, :steps], 0.0)
            n_actions = dist.shape[2]

        # Transitions (s_t, a_t, r_t, s_{t+1}); the step after the last logged one is terminal.
        rows, cols = np.nonzero(data.mask)
        has_next = np.zeros_like(data.mask)
        has_next[:, :-1] = data.mask[:, 1:]
        next_alive = has_next[rows, cols]
        next_cols = np.minimum(cols + 1, steps - 1)

        def to_t(array: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype)

        s = to_t(inputs[rows, cols])
        a = to_t(act[rows, cols], torch.int64)
        r = to_t(data.reward[rows, cols])
        s_next = to_t(inputs[rows, next_cols])
        if sparse:
            dist_next = dist.take(rows * steps + next_cols)
            alive_next = torch.as_tensor(next_alive, dtype=torch.float64)  # 0 at terminal: no bootstrap
        else:
            pi_next = to_t(dist[rows, next_cols] * next_alive[:, None])  # zero rows at terminal: no bootstrap

        generator = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)  # initialisation of the Q-network and encoder
        in_features = self.encoder_out_features if self.encoder is not None else inputs.shape[2]
        action_features = None
        if self.action_features is not None:
            if self.action_features.shape[0] != n_actions:
                raise FeedbackError(
                    f"action_features has {self.action_features.shape[0]} rows but action_dist has "
                    f"{n_actions} actions (shape mismatch)"
                )
            action_features = torch.as_tensor(self.action_features, dtype=torch.float32)
        q_net = QNetwork(
            in_features, n_actions, cfg.hidden_sizes, copy.deepcopy(self.encoder), action_features
        )
        optimizer = torch.optim.Adam(q_net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        n_transitions = s.shape[0]
        # The same rule for a dense and a sparse policy, so both fit with the same arithmetic at a given N.
        score_all = min(cfg.batch_size, n_transitions) * n_actions <= FULL_OUTPUT_MAX_ELEMENTS
        self.loss_history = []
        for _ in tqdm(range(cfg.n_iterations), desc="FQE", disable=not cfg.progress):
            # ---- targets from the frozen previous iterate ----
            with torch.no_grad():
                if sparse:
                    v_next = torch.as_tensor(sparse_policy_values(q_net, s_next, dist_next)) * alive_next
                    target = r + cfg.gamma * v_next.float()
                else:
                    q_next = torch.cat([q_net(chunk) for chunk in torch.split(s_next, 65536)])
                    target = r + cfg.gamma * (pi_next * q_next).sum(dim=1)
            # ---- regress Q(s, a) toward the targets ----
            for _ in range(cfg.n_steps_per_iteration):
                idx = torch.randint(
                    0, n_transitions, (min(cfg.batch_size, n_transitions),), generator=generator
                )
                if score_all:
                    predicted = q_net(s[idx]).gather(1, a[idx, None])[:, 0]
                else:
                    predicted = q_net.q_at(s[idx], a[idx])
                loss = nn.functional.mse_loss(predicted, target[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            self.loss_history.append(loss.item())
        self.q_network = q_net.eval()
        if sparse:
            first = torch.as_tensor(inputs[:, 0], dtype=torch.float32)
            self._initial_values = sparse_policy_values(q_net, first, dist.take(np.arange(n) * steps))
        else:
            self._initial_values = self._policy_values(inputs[:, 0], dist[:, 0])
        if not np.isfinite(self._initial_values).all():
            self.q_network = None
            raise ArgumentError(
                f"learning_rate: FQE diverged (non-finite Q-values after {cfg.n_iterations} iterations at "
                f"learning_rate {cfg.learning_rate:g}); lower it, or rescale the rewards"
            )
        self._n_steps = steps
        self._n_actions = n_actions
        self._state_dim = state.shape[2]
        return self

    def _policy_values(self, inputs: np.ndarray, dist: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            q = self.q_network(torch.as_tensor(inputs, dtype=torch.float32)).double().numpy()
        return (q * dist).sum(axis=1)

    def predict_q(self, state: Any) -> np.ndarray:
        """`Q(s_t, a)` for every step and action `[n, H, N]` (the steps seen in `fit`'s horizon).

        Usable as `state_action_value_prediction` for `SequentialDoublyRobust`.
        """
        inputs = self._checked_inputs(state, "predict_q")
        flat = torch.as_tensor(inputs.reshape(-1, inputs.shape[2]), dtype=torch.float32)
        with torch.no_grad():
            q = torch.cat([self.q_network(chunk) for chunk in torch.split(flat, 65536)]).double().numpy()
        return q.reshape(*inputs.shape[:2], -1)

    def predict_values(self, state: Any, *, action: Any, action_dist: Any) -> tuple[np.ndarray, np.ndarray]:
        """`(Q(s_t, a_t), E_{a ~ pi_e}[Q(s_t, a)])`, each `[n, H]` (the steps seen in `fit`'s horizon).

        Usable as `logged_action_value_prediction` and `state_value_prediction` of `SequentialDoublyRobust`.
        With a sparse `action_dist` (one row per step of `action`'s `[n, H']`, episode-major) the expectation
        is the exact sparse one of the module docstring and no `[n, H, N]` array is built.

        Args:
            state: State features `[n, H', D]`, `H' >= H`.
            action: Actions `[n, H']` in `[0, N)` (any valid action on steps after an episode's end).
            action_dist: `[n, H', N]`, or a `SparseActionDist` of `n * H'` rows.
        """
        inputs = self._checked_inputs(state, "predict_values")
        n, steps = inputs.shape[:2]
        act = numeric_array("action", action, integer=True, where=episode_where)
        if act.shape != (n, np.shape(state)[1]):
            raise FeedbackError(f"action must have shape {(n, np.shape(state)[1])}, got {act.shape}")
        n_actions = self._n_actions
        if not ((act >= 0) & (act < n_actions)).all():
            i, t = first_index(~((act >= 0) & (act < n_actions)))
            raise FeedbackError(
                f"action[{i}, {t}] = {act[i, t]} is outside the catalogue [0, {n_actions}) (episode {i}, step {t}; "
                "0-based)"
            )
        flat = torch.as_tensor(inputs.reshape(n * steps, -1), dtype=torch.float32)
        flat_action = torch.as_tensor(act[:, :steps].reshape(-1), dtype=torch.int64)
        with torch.no_grad():
            logged = torch.cat(
                [
                    self.q_network.q_at(chunk, chunk_action)
                    for chunk, chunk_action in zip(
                        torch.split(flat, 65536), torch.split(flat_action, 65536), strict=True
                    )
                ]
            )
        logged = logged.double().numpy().reshape(n, steps)
        if isinstance(action_dist, SparseActionDist):
            if action_dist.n_actions != n_actions:
                raise FeedbackError(
                    f"action_dist has {action_dist.n_actions} actions but FQE was fitted on {n_actions}"
                )
            dist = sparse_episode_steps(action_dist, n, act.shape[1], steps)
            value = sparse_policy_values(self.q_network, flat, dist).reshape(n, steps)
        else:
            dist = numeric_array("action_dist", action_dist)
            if dist.shape != (n, act.shape[1], n_actions):
                raise FeedbackError(
                    f"action_dist must have shape {(n, act.shape[1], n_actions)}, got {dist.shape} (shape mismatch)"
                )
            value = (self.predict_q(state) * dist[:, :steps]).sum(axis=2)
        return logged, value

    def _checked_inputs(self, state: Any, method: str) -> np.ndarray:
        """The network's inputs `[n, H, D']` for `state` `[n, H' >= H, D]`, checked."""
        if self.q_network is None:
            raise RuntimeError(f"call fit() before {method}()")
        state = numeric_array("state", state, where=episode_where)
        width = (
            self.q_network.head[0].in_features if self.encoder is None and len(self.q_network.head) else None
        )
        expected = None if width is None else width - int(self.config.time_feature)
        if (
            state.ndim != 3
            or state.shape[1] < self._n_steps
            or (expected is not None and state.shape[2] != expected)
        ):
            raise FeedbackError(
                f"state must have shape [n, H >= {self._n_steps}, D{'' if expected is None else f'={expected}'}], "
                f"got {state.shape} (shape mismatch)"
            )
        state = state[:, : self._n_steps]
        if not np.isfinite(state).all():
            i, t, d = first_index(~np.isfinite(state))
            raise FeedbackError(
                f"state[{i}, {t}, {d}] = {state[i, t, d]} is not finite (episode {i}, step {t}; 0-based)"
            )
        return self._inputs(state, self._n_steps)

    def estimate_policy_value(self, **kwargs: Any) -> float:
        """Fit (when episode data are given) and return `mean_i sum_a pi_e(a | s^i_0) Q(s^i_0, a)`."""
        refuse_unknown(kwargs, FIT_ARGUMENTS, type(self).__name__)
        if kwargs:
            self.fit(**kwargs)
        if self.q_network is None:
            raise RuntimeError("call fit() or pass episode data")
        return float(self._initial_values.mean())

    def estimate_interval(
        self, *, alpha: float = 0.05, n_bootstrap_samples: int = 1000, random_state: int = 0, **kwargs: Any
    ) -> dict[str, float]:
        """Bootstrap interval over initial states with the fitted Q held fixed.

        This reflects the spread of start states only, not the Q-network's fitting error (refitting per
        replicate would multiply the cost by `n_bootstrap_samples`), so it is narrower than a full bootstrap.
        """
        check_bootstrap_arguments(alpha, n_bootstrap_samples, random_state)  # before an expensive fit
        refuse_unknown(kwargs, FIT_ARGUMENTS, type(self).__name__)
        if kwargs:
            self.fit(**kwargs)
        if self.q_network is None:
            raise RuntimeError("call fit() or pass episode data")
        return bootstrap_interval(
            {"initial_value": self._initial_values},
            lambda t: t["initial_value"].mean(axis=-1),
            alpha=alpha,
            n_bootstrap_samples=n_bootstrap_samples,
            random_state=random_state,
        )

    def estimate(
        self, *, alpha: float = 0.05, n_bootstrap_samples: int = 1000, random_state: int = 0, **kwargs: Any
    ) -> Estimate:
        """Fit (when data are given), then the point estimate and interval as an `Estimate`."""
        ci = self.estimate_interval(
            alpha=alpha, n_bootstrap_samples=n_bootstrap_samples, random_state=random_state, **kwargs
        )
        value = float(self._initial_values.mean())
        return Estimate(
            name=self.estimator_name, value=value, lower=ci["lower"], upper=ci["upper"], alpha=alpha
        )
