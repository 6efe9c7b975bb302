"""d3rlpy on recsim-env data: Minari world datasets as `MDPDataset`s, trained algorithms as `Policy`s.

    seqrec world log --policy epsilon-greedy --steps 100000 --out logs.parquet --minari-id seqrec/world-egreedy-v0
    seqrec train --agent d3rlpy --algo-config '{"dataset": "seqrec/world-egreedy-v0", "algo": "discrete_cql"}' --out RUN
    seqrec evaluate RUN --env-config '{"sessions_per_episode": 3}'

Needs the `d3rlpy` and `minari` extras. See docs/offline_datasets.md.
"""

from agents.d3rlpy.config import ALGORITHMS, D3rlpyConfig
from agents.d3rlpy.data import encode_observations, to_mdp_dataset
from agents.d3rlpy.policy import D3rlpyPolicy
from agents.d3rlpy.train import train

__all__ = ["ALGORITHMS", "D3rlpyConfig", "D3rlpyPolicy", "encode_observations", "to_mdp_dataset", "train"]
