"""The retrieve-then-rank agent's configuration: `RetrievalConfig` (the dataclass and its validation)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recsim_env.checks import check_choice, check_config_fields, check_integer, check_real
from recsim_env.errors import ArgumentError

KIND = "retrieval"
INDEX_BACKENDS = ("auto", "torch", "faiss")
DEVICES = ("auto", "cpu", "cuda")
MAX_CANDIDATES = 4096
"""Largest candidate set (`n_clusters * per_cluster`) the ranker scores per step."""
PPO_DEFAULTS: dict[str, Any] = {
    "n_steps": 256,
    "batch_size": 256,
    "n_epochs": 4,
    "learning_rate": 3e-4,
    "ent_coef": 0.01,
    "gamma": 0.99,
    "gae_lambda": 0.95,
}
"""SB3 PPO keywords of the ranker (8 envs x 256 steps = 2048 steps per update); `ppo_config` overrides."""
PPO_EXTRA_KEYS = ("clip_range", "vf_coef", "max_grad_norm")
"""Further SB3 PPO keywords `ppo_config` may set (SB3's own defaults otherwise)."""
DQN_DEFAULTS: dict[str, Any] = {
    "buffer_size": 50_000,
    "learning_starts": 2_000,
    "batch_size": 128,
    "learning_rate": 1e-4,
    "gamma": 0.99,
    "train_freq": 1,
    "gradient_steps": 1,
    "target_update_interval": 2_000,
    "exploration_fraction": 0.1,
    "exploration_initial_eps": 0.3,
    "exploration_final_eps": 0.02,
    "n_steps": 3,
    "double_q": True,
}
"""SB3 DQN keywords of the ranker; `dqn_config` overrides. `train_freq` 1 is one gradient step per vector
step (8 transitions); `exploration_initial_eps` is low because the Q-network starts at the retrieval order;
`n_steps`: n-step returns (SB3's n-step buffer); `double_q`: the target network evaluates the online
network's argmax (van Hasselt et al. 2016). 50,000 transitions of 64 candidates hold about 1 GiB."""
DQN_EXTRA_KEYS = ("tau", "max_grad_norm")
"""Further SB3 DQN keywords `dqn_config` may set (SB3's own defaults otherwise)."""
ALGORITHMS = ("ppo", "dqn")
QUERIES = ("heuristic", "learned")


@dataclass(frozen=True, kw_only=True)
class RetrievalConfig:
    """Everything that defines a retrieve-then-rank training run (`agents.retrieval.train`)."""

    env_config: Mapping[str, Any] = field(default_factory=dict)
    """`SeqRec-v0` keyword arguments (e.g. `{"world_config": {"n_items": 100000}}`); a `slate_size` K > 1
    fills the slate with the ranker's K best candidates (the RL action is the first position)."""
    warmup_users: int = 200_000
    """Episode starts observed before training: their warm-start histories (items the users consumed)
    are the logs the item embeddings and the item counts are learned from."""
    embedding_dim: int = 32
    """D: width of the learned item embeddings (the retrieval space)."""
    power_iterations: int = 4
    """Power iterations of the randomised SVD that factorises the warm-up's co-consumption."""
    min_count: int = 1
    """Items consumed fewer times in the warm-up are left out of the index (never retrieved)."""
    n_clusters: int = 16
    """M: clusters of the item embeddings (spherical k-means); candidates come from each."""
    per_cluster: int = 4
    """Candidates retrieved per cluster (by inner product with the user's query); k = M x per_cluster."""
    consumption_decay: float = 0.85
    """Per-step decay of the consumption memory behind the query and the per-cluster recency features."""
    score_prior: float = 5.0
    """Initial weight of the retrieval score in the ranker's logits (learned; 0: the first policy is
    uniform over the candidates)."""
    hidden: int = 64
    """Width of the ranker's per-candidate scorer and of its value network."""
    algorithm: str = "ppo"
    """The ranker's RL algorithm: `ppo` (SB3 PPO, a softmax over the candidates) or `dqn` (SB3 DQN, one
    Q-value per candidate from the same per-candidate scorer)."""
    query: str = "heuristic"
    """The retrieval query: `heuristic` (the recency-weighted mean of clicked items' embeddings) or
    `learned` (an actor's proto-action within `query_radius` of the heuristic one, Wolpertinger-style)."""
    query_radius: float = 0.5
    """Largest Euclidean distance of the learned query from the heuristic query before normalisation
    (the actor's trust region around the query it starts from)."""
    total_steps: int = 200_000
    """Environment steps of RL on the ranker (fewer if `time_budget_s` runs out first)."""
    time_budget_s: float | None = None
    """Stop training this many seconds after it started, the warm-up and the factorisation included
    (RL stops at the first step past it; None: train `total_steps`)."""
    num_envs: int = 8
    """Users stepped together during training (SB3 sub-environments)."""
    ppo_config: Mapping[str, Any] = field(default_factory=dict)
    """SB3 PPO keyword arguments over `PPO_DEFAULTS` (n_steps, batch_size, learning_rate, ent_coef, ...)."""
    dqn_config: Mapping[str, Any] = field(default_factory=dict)
    """SB3 DQN keyword arguments over `DQN_DEFAULTS` (buffer_size, n_steps, double_q, ...)."""
    index_backend: str = "auto"
    """Exact maximum-inner-product search: `torch` (batched matmul + top-k), `faiss` (flat inner-product
    indices, needs faiss) or `auto` (`torch`; faiss only where it is installed and asked for)."""
    seed: int = 0
    """Seed of the warm-up users, the embeddings, the clusters, the ranker and its environments."""
    device: str = "cpu"
    """Torch device of the ranker (`auto`: CUDA when present); the warm-up, the factorisation and the
    per-step retrieval run on the CPU, beside the environment."""

    def __post_init__(self) -> None:
        if not isinstance(self.env_config, Mapping):
            raise ArgumentError(f"RetrievalConfig.env_config must be a JSON object, got {self.env_config!r}")
        check_integer("RetrievalConfig.env_config.slate_size", self.env_config.get("slate_size", 1), low=1)
        for name, given, known in (
            ("ppo_config", self.ppo_config, set(PPO_DEFAULTS) | set(PPO_EXTRA_KEYS)),
            ("dqn_config", self.dqn_config, set(DQN_DEFAULTS) | set(DQN_EXTRA_KEYS)),
        ):
            if not isinstance(given, Mapping):
                raise ArgumentError(f"RetrievalConfig.{name} must be a JSON object, got {given!r}")
            unknown = sorted(set(given) - known)
            if unknown:
                raise ArgumentError(
                    f"RetrievalConfig.{name}: unknown key(s) {unknown}; known: {sorted(known)}"
                )
        dqn = self.dqn_kwargs
        for key in ("buffer_size", "batch_size", "train_freq", "target_update_interval", "n_steps"):
            check_integer(f"RetrievalConfig.dqn_config.{key}", dqn[key], low=1)
        check_integer("RetrievalConfig.dqn_config.learning_starts", dqn["learning_starts"], low=0)
        if not isinstance(dqn["double_q"], bool):
            raise ArgumentError(
                f"RetrievalConfig.dqn_config.double_q must be true or false, got {dqn['double_q']!r}"
            )
        check_config_fields(self, ("algorithm",), check_choice, choices=ALGORITHMS)
        check_config_fields(self, ("query",), check_choice, choices=QUERIES)
        check_config_fields(self, ("query_radius",), check_real, low=0.0, low_open=True, store=True)
        positive = (
            "warmup_users", "embedding_dim", "power_iterations", "min_count", "n_clusters", "per_cluster",
            "hidden", "total_steps", "num_envs",
        )  # fmt: skip
        check_config_fields(self, positive, check_integer, low=1, store=True)
        check_config_fields(self, ("seed",), check_integer, low=0, store=True)
        check_config_fields(self, ("score_prior",), check_real, store=True)
        check_config_fields(
            self, ("consumption_decay",), check_real, low=0.0, high=1.0, high_open=True, store=True
        )
        check_config_fields(
            self, ("time_budget_s",), check_real, low=0.0, low_open=True, optional=True, store=True
        )
        check_config_fields(self, ("index_backend",), check_choice, choices=INDEX_BACKENDS)
        check_config_fields(self, ("device",), check_choice, choices=DEVICES)
        if self.n_candidates > MAX_CANDIDATES:
            raise ArgumentError(
                f"RetrievalConfig.n_clusters, per_cluster: {self.n_candidates} candidates, over {MAX_CANDIDATES}"
            )
        if self.slate_size > self.n_candidates:
            raise ArgumentError(
                f"RetrievalConfig.env_config.slate_size: {self.slate_size} items from {self.n_candidates} "
                "candidates (n_clusters x per_cluster)"
            )

    @property
    def n_candidates(self) -> int:
        """k: candidates the ranker chooses among at each step."""
        return self.n_clusters * self.per_cluster

    @property
    def slate_size(self) -> int:
        """K: items recommended per step (the env's `slate_size`)."""
        return int(self.env_config.get("slate_size", 1))

    @property
    def ppo_kwargs(self) -> dict[str, Any]:
        """The SB3 PPO keyword arguments: `PPO_DEFAULTS` updated with `ppo_config`."""
        return {**PPO_DEFAULTS, **self.ppo_config}

    @property
    def dqn_kwargs(self) -> dict[str, Any]:
        """The SB3 DQN keyword arguments (and `double_q`): `DQN_DEFAULTS` updated with `dqn_config`."""
        return {**DQN_DEFAULTS, **self.dqn_config}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (what `config.json` holds)."""
        return {
            f.name: dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v
            for f in dataclasses.fields(self)
        }
