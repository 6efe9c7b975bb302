"""`train`: one `TrainConfig`, dispatched to its backend (imported only when used)."""

from __future__ import annotations

import os
from pathlib import Path

from agents.training.config import TrainConfig, TrainResult, check_env_config


def train(
    config: TrainConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    trust_checkpoint: bool = False,
) -> TrainResult:
    """Train with `config.backend` into `out` (a run directory; with `resume`, continue the run there).

    `trust_checkpoint` (RLlib resume only) restores RLlib's own pickled checkpoint; see docs/security.md.
    """
    check_env_config(config.env_id, config.env_config)
    if config.backend == "sb3":
        if trust_checkpoint:
            raise ValueError("trust_checkpoint applies to the rllib backend only (sb3 runs hold no pickles)")
        from agents.training.sb3 import train_sb3

        return train_sb3(config, Path(out), resume=resume, progress=progress)
    from agents.rllib.train import train_rllib

    return train_rllib(config, Path(out), resume=resume, progress=progress, trust_checkpoint=trust_checkpoint)
