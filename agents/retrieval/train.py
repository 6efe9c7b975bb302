"""Training the retrieve-then-rank agent, top to bottom: warm-up logs, item embeddings, clusters,
then PPO or DQN on the ranker (and a learned query) in `RetrievalVecEnv`. `train(config, data,
progress)` is the agent registry's `fit` (`seqrec train --agent retrieval --algo-config '{...}'`)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from agents.retrieval.candidates import CandidateGenerator
from agents.retrieval.config import RetrievalConfig
from agents.retrieval.embeddings import cooccurrence_svd, item_counts, warmup_histories
from agents.retrieval.index import faiss_available, spherical_kmeans
from agents.retrieval.policy import RetrievalPolicy, ranker_kwargs
from agents.retrieval.ranker import CandidateRankerPolicy, LiveScorer
from agents.retrieval.vec_env import RetrievalVecEnv
from recsim_env.encoders.trainer import resolve_device
from recsim_env.errors import ArgumentError


def index_backend(config: RetrievalConfig) -> str:
    """The `ClusteredIndex` backend: `faiss` only when asked for (and installed), else `torch`."""
    if config.index_backend == "faiss" and not faiss_available():
        raise ArgumentError("RetrievalConfig.index_backend: 'faiss' is not installed")
    return "faiss" if config.index_backend == "faiss" else "torch"


def build_generator(
    config: RetrievalConfig, *, progress: bool = False
) -> tuple[CandidateGenerator, dict[str, Any]]:
    """Stage one from the warm-up: co-consumption embeddings, spherical k-means clusters, the index."""
    start = time.perf_counter()
    logs = warmup_histories(config.env_config, config.warmup_users, seed=config.seed, progress=progress)
    warmup_s = time.perf_counter() - start
    embeddings, summary = cooccurrence_svd(
        logs, dim=config.embedding_dim, seed=config.seed, power_iterations=config.power_iterations
    )
    counts = item_counts(logs)
    indexed = np.flatnonzero(counts >= config.min_count)
    if len(indexed) < config.n_clusters:
        raise ArgumentError(
            f"RetrievalConfig.n_clusters: {config.n_clusters} clusters but the warm-up consumed {len(indexed)} items"
        )
    clusters = np.full(logs.n_items, -1, np.int64)
    clusters[indexed] = spherical_kmeans(embeddings[indexed], config.n_clusters, seed=config.seed)
    embeddings[counts < config.min_count] = 0.0
    generator = CandidateGenerator(
        embeddings,
        counts,
        clusters,
        n_clusters=config.n_clusters,
        per_cluster=config.per_cluster,
        decay=config.consumption_decay,
        click_index=_click_index(config),
        backend=index_backend(config),
        slate_size=config.slate_size,
    )
    if config.slate_size > generator.distinct_candidates:
        raise ArgumentError(
            f"RetrievalConfig.env_config.slate_size: {config.slate_size} items from "
            f"{generator.distinct_candidates} distinct candidates (clusters smaller than per_cluster)"
        )
    return generator, {
        **summary,
        "warmup_s": warmup_s,
        "embedding_s": time.perf_counter() - start - warmup_s,
        "indexed_items": int(len(indexed)),
    }


def _click_index(config: RetrievalConfig) -> int:
    from recsim_env.envs import SeqRecEnv

    env = SeqRecEnv(**dict(config.env_config))
    signals = list(env.signals)
    env.close()
    if "click" not in signals:
        raise ArgumentError(f"RetrievalConfig.env_config: the users give no 'click' signal ({signals})")
    return signals.index("click")


def train(
    config: RetrievalConfig, data=None, progress: bool = True
) -> tuple[RetrievalPolicy, dict[str, Any]]:
    """Warm-up, embeddings, then PPO or DQN on the ranker until `total_steps` or `time_budget_s`.

    Bit-for-bit reproducible on the CPU for a seed without a time budget (a budget stops at a
    wall-clock-dependent step). `data` must be None: the agent learns from the environment.
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    if data is not None:
        raise ArgumentError("the retrieval agent trains in the environment; --data does not apply")
    torch.manual_seed(config.seed)
    started = time.perf_counter()

    # ---- stage one: item embeddings and the index, from the warm-up logs ----
    generator, info = build_generator(config, progress=progress)

    # ---- stage two: RL on the ranker over the k retrieved candidates ----
    from recsim_env.envs import SeqRecEnv

    users = make_vec_env(
        lambda: SeqRecEnv(**dict(config.env_config)), n_envs=config.num_envs, seed=config.seed
    )
    dqn = config.algorithm == "dqn"
    env = RetrievalVecEnv(users, generator, flat=dqn)
    common = {
        "policy_kwargs": ranker_kwargs(generator, config),
        "seed": config.seed,
        "device": resolve_device(config.device),
        "verbose": 0,
    }
    if dqn:
        from agents.retrieval.dqn import CandidateDQN, CandidateDQNPolicy

        model = CandidateDQN(CandidateDQNPolicy, env, **common, **config.dqn_kwargs)
    else:
        model = PPO(CandidateRankerPolicy, env, **common, **config.ppo_kwargs)
    # The env retrieves with the ranker's current query and fills slates by its current scores.
    env.scorer = LiveScorer(model.policy.scorer_module)

    class TimeBudget(BaseCallback):
        def _on_step(self) -> bool:
            return config.time_budget_s is None or time.perf_counter() - started < config.time_budget_s

    rl_started = time.perf_counter()
    model.learn(total_timesteps=config.total_steps, callback=TimeBudget(), progress_bar=progress)
    rl_s = time.perf_counter() - rl_started
    env.close()
    policy = RetrievalPolicy(generator, model.policy, config, seed=config.seed)
    return policy, {
        **info,
        "algorithm": config.algorithm,
        "query": config.query,
        "rl_steps": int(model.num_timesteps),
        "rl_s": rl_s,
        "rl_steps_per_s": model.num_timesteps / max(rl_s, 1e-9),
        "n_candidates": generator.n_candidates,
        "train_s": time.perf_counter() - started,
    }
