"""Environments from logs: what `SeqRecEnv(dataset=..., simulator=...)` calls to get its user model.

`simulator` may be a learned simulator (`LearnedSimulator`, `EnsembleSimulator` or
`simulators.simulator_set.SimulatorSet`), the directory of a saved one, or `"learned"` (train one on
`dataset` with `simulator_config`, or reuse the one trained earlier with the same data and config
from the cache: `$SEQREC_SIMULATOR_CACHE`, else `<user cache dir of recsim-env>/simulators`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import platformdirs

from recsim_env.checkpoint import FORMAT_VERSION as ARTIFACT_FORMAT_VERSION
from recsim_env.data import LoggedInteractions
from simulators.config import SimulatorConfig
from simulators.ensemble import EnsembleSimulator
from simulators.simulator import DISAGREEMENT, LearnedSimulator


def cache_dir() -> Path:
    """Where simulators trained by `SeqRecEnv(simulator="learned")` are kept."""
    env = os.environ.get("SEQREC_SIMULATOR_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("recsim-env")) / "simulators"


def load_dataset(dataset: str | os.PathLike | LoggedInteractions) -> LoggedInteractions:
    """A `LoggedInteractions` from an object, a registered name or a path (see `recsim_env.data.load`)."""
    if isinstance(dataset, LoggedInteractions):
        return dataset
    from recsim_env.data import load

    return load(dataset)


def fingerprint(data: LoggedInteractions, config: SimulatorConfig) -> str:
    """A short hash of the data's rows, catalogue, users and items tables (when the simulator reads them)
    and the training config (the cache key)."""
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(data.frame, index=False).to_numpy().tobytes())
    items_read = config.item_features or config.item_text is not None
    for table, read in ((data.users, config.user_features), (data.items, items_read)):
        if read and table is not None:
            # As text: cells may be lists (token sequences), which pandas cannot hash.
            digest.update(pd.util.hash_pandas_object(table.astype(str), index=True).to_numpy().tobytes())
            digest.update(json.dumps([str(c) for c in table.columns]).encode())
    digest.update(json.dumps([str(t) for t in data.item_ids.tokens.tolist()]).encode())
    digest.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    from simulators.checkpoint import FORMAT

    digest.update(f"artifact format {ARTIFACT_FORMAT_VERSION}".encode())  # a new format retrains
    digest.update(f"simulator format {FORMAT}".encode())
    return digest.hexdigest()[:16]


def trained_simulator(
    data: LoggedInteractions, config: SimulatorConfig, *, progress: bool = True
) -> LearnedSimulator | EnsembleSimulator:
    """The simulator trained on `data` with `config`, from the cache or trained (and cached) now."""
    from simulators.checkpoint import load, save
    from simulators.report import write_report
    from simulators.train import fit

    directory = cache_dir() / f"{data.name}-{fingerprint(data, config)}"
    if (directory / "manifest.json").is_file():
        return load(directory, data=data)
    result = fit(data, config, progress=progress)
    save(result.simulator, directory)
    write_report(result, directory, world=None, plots=False)
    return result.simulator


def learned_user_model(
    *,
    dataset: Any,
    simulator: Any,
    simulator_config: SimulatorConfig | Mapping[str, Any] | None,
    uncertainty_penalty: float,
    reward: str | Mapping[str, float],
) -> tuple[Any, str | Mapping[str, float]]:
    """The user model and the reward for an environment on logs (arguments as in `SeqRecEnv`): a learned
    simulator, with the disagreement signal where `uncertainty_penalty` > 0."""
    from simulators.checkpoint import load
    from simulators.simulator_set import SimulatorSet

    if not (uncertainty_penalty >= 0.0):
        raise ValueError(f"argument 'uncertainty_penalty' must be >= 0, got {uncertainty_penalty!r}")
    if isinstance(simulator_config, Mapping):
        try:
            simulator_config = SimulatorConfig.from_dict(dict(simulator_config))
        except TypeError as error:
            raise ValueError(f"argument 'simulator_config': {error}") from None
    data = load_dataset(dataset) if dataset is not None else None
    if isinstance(simulator, LearnedSimulator | EnsembleSimulator | SimulatorSet):
        model = simulator
    elif simulator is None or simulator == "learned":
        if data is None:
            raise ValueError(
                "argument 'simulator': 'learned' needs 'dataset' (a name, a path or LoggedInteractions)"
            )
        model = trained_simulator(data, simulator_config or SimulatorConfig())
    elif isinstance(simulator, (str, os.PathLike)):
        if simulator_config is not None:
            raise ValueError("argument 'simulator_config' only applies to simulator='learned'")
        model = load(simulator, data=data)
    else:
        raise ValueError(
            "argument 'simulator' must be 'learned', a saved simulator's directory or a learned simulator "
            f"(LearnedSimulator, EnsembleSimulator, SimulatorSet), "
            f"got {simulator!r}"
        )
    if uncertainty_penalty > 0:
        model = model.with_disagreement()
        weights = {reward: 1.0} if isinstance(reward, str) else dict(reward)
        weights[DISAGREEMENT] = weights.get(DISAGREEMENT, 0.0) - float(uncertainty_penalty)
        reward = weights
    return model, reward
