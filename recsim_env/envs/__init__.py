"""Gymnasium environments for sequential recommendation."""

from recsim_env.envs.core import EpisodeBatch, SeqRecConfig
from recsim_env.envs.seqrec import SeqRecEnv, SeqRecVectorEnv

__all__ = ["EpisodeBatch", "SeqRecConfig", "SeqRecEnv", "SeqRecVectorEnv"]
