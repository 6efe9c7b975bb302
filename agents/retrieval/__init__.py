"""Retrieve-then-rank: an RL agent for catalogues of 10^5 items and more.

Production recommenders act in two stages: a candidate generator retrieves a few hundred items by
maximum inner product between a user query and item embeddings, and a ranker orders those. This
agent does the same, and learns only what it can observe:

1. Item embeddings from a logged warm-up (`embeddings`): the warm-start histories of `warmup_users`
   episode starts (the items users consumed before), factorised by a truncated SVD of the normalised
   history-item matrix (a spectral embedding of co-consumption). No world state is read; items the
   warm-up never saw are left out of the index.
2. Clusters (spherical k-means) and an exact MIPS index over them (`index`: batched matmul + top-k
   in torch, or faiss flat indices when installed and asked for).
3. Retrieval per step (`candidates`): the query is the recency-weighted mean embedding of the
   clicked items in the observed window (`query="heuristic"`), or a learned proto-action near it
   (`query="learned"`, Wolpertinger-style); the candidates are its m best items in each of the M
   clusters (k = M m), with features (score, warm-up count, recent consumption of the cluster, ...).
4. The ranker (`ranker`, `dqn`): one shared scorer per candidate, a softmax over the k (an SB3
   actor-critic, `algorithm="ppo"`) or one Q-value per candidate (SB3 DQN with double-DQN targets and
   n-step returns, `algorithm="dqn"`), trained in `RetrievalVecEnv` (`vec_env`: one batched retrieval
   per step for all users); `RetrievalEnv` (`env`) is the single-user gymnasium version and the RLlib
   env creator. Slates of K > 1: the chosen candidate first, then the ranker's next best.

Modules: `config` (`RetrievalConfig`), `embeddings`, `index`, `candidates`, `env`, `ranker`, `dqn`,
`policy` (`RetrievalPolicy`), `train` (`train`). See docs/retrieval_agent.md.

    policy, info = train(RetrievalConfig(env_config={"world_config": {"n_items": 100_000}}, time_budget_s=600))
    train(RetrievalConfig(algorithm="dqn", query="learned", env_config={..., "slate_size": 5}))
    policy.act(obs); policy.save("runs/retrieval"); agents.load_policy("runs/retrieval")
"""

from agents.retrieval.candidates import CandidateGenerator
from agents.retrieval.config import KIND, RetrievalConfig
from agents.retrieval.env import RetrievalEnv, make_retrieval_env, rllib_env_creator
from agents.retrieval.index import ClusteredIndex, spherical_kmeans
from agents.retrieval.policy import RetrievalPolicy
from agents.retrieval.train import build_generator, train

__all__ = [
    "KIND",
    "CandidateGenerator",
    "ClusteredIndex",
    "RetrievalConfig",
    "RetrievalEnv",
    "RetrievalPolicy",
    "build_generator",
    "make_retrieval_env",
    "rllib_env_creator",
    "spherical_kmeans",
    "train",
]
