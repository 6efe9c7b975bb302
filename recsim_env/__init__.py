"""recsim-env: Gymnasium environments, user simulators, agents and off-policy evaluation for recommendation.

`import recsim_env` registers the environments and stays light: it imports neither torch, nor ray,
nor Stable-Baselines3 (the encoders and learned simulators import torch when they are used).
"""

from gymnasium.envs.registration import register

from recsim_env.errors import DataError

__version__ = "0.1.0"

# A flat list of registrations with string entry points, so heavy imports happen at `make` time.
register(
    id="SeqRec-v0",
    entry_point="recsim_env.envs.seqrec:SeqRecEnv",
    vector_entry_point="recsim_env.envs.seqrec:SeqRecVectorEnv",
)
register(id="SeqRecLTS-v0", entry_point="recsim_env.envs.lts:SeqRecLTSEnv")
register(id="SeqRecSimSet-v0", entry_point="simulators.simset:SeqRecSimSetEnv")

ENV_IDS = ("SeqRec-v0", "SeqRecLTS-v0", "SeqRecSimSet-v0")
"""The environments this package registers: the only ids a saved run or config may name (an id of the
form `module:Env` would make gymnasium import `module`)."""

__all__ = ["ENV_IDS", "DataError", "__version__"]
