"""Saved simulators: an artifact (`recsim_env.checkpoint`) of kind "simulator".

Files of `DIR`, each listed with its size and SHA-256 in `manifest.json`:

* `config.json`: the `SimulatorConfig` fields (reloaded with `SimulatorConfig(**d)`; unknown key = error).
* `schema.json`: the `DataSchema` (signals, scales, catalogue size, session handling).
* `item_ids.json`: raw item token of each item index.
* `weights.safetensors`: member k's `state_dict` under `member_k.<name>` (calibration included).
* `start_pool.safetensors`: the labelled exposure sequences whose prefixes start episodes.

The manifest's metadata holds `simulator_format` (`FORMAT`), the version of these files, bumped whenever
what `save` writes or what `load` requires changes; `load` reads `LOADABLE_FORMATS` (the current one and
format 2, whose start pool marked unknown return gaps with NaN) and refuses another with a
`CheckpointError` that says how to convert it (`seqrec convert DIR`, through `upgrade`).

The fidelity report (`fidelity.json`, `fidelity.md`, `*.png`) sits beside them, unlisted: it may be
rewritten by `seqrec simulator-report` without touching the simulator, and `load` never reads it.
`load` refuses a directory whose files do not match the manifest (truncated, edited, missing) or whose
catalogue differs from the data it is meant for, with a `CheckpointError` naming the file.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from recsim_env.checkpoint import Artifact, open_artifact, save_artifact, write_json, write_tensors
from recsim_env.data import LoggedInteractions
from recsim_env.errors import CheckpointError
from simulators.config import SimulatorConfig
from simulators.data import DataSchema, ExposureLog
from simulators.ensemble import EnsembleSimulator, simulator_of
from simulators.response_model import ResponseModel
from simulators.simulator import LearnedSimulator

KIND = "simulator"
CONFIG = "config.json"
SCHEMA = "schema.json"
ITEMS = "item_ids.json"
WEIGHTS = "weights.safetensors"
START_POOL = "start_pool.safetensors"
REQUIRED = (CONFIG, SCHEMA, ITEMS, WEIGHTS, START_POOL)
FORMAT = 3
LOADABLE_FORMATS = (2, 3)
"""Formats `load` reads as they are: format 2 differs only in marking unknown return gaps of the start
pool with NaN (read into the mask, losslessly); format 1 is converted by `seqrec convert DIR`."""
"""Version of a saved simulator's files (`simulator_format` in the manifest's metadata).

1: no `simulator_format`; `schema.json` could lack `user_features` / `item_features` (read as none).
2: the manifest records the version and every `schema.json` field is required.
3: the start pool marks a known return gap with `return_gap_known` (the gap is 0 where unknown); formats 1
   and 2 have no such array and hold NaN there (`start_pool_of` reads them)."""


def save(simulator: LearnedSimulator | EnsembleSimulator, directory: str | os.PathLike) -> Path:
    """Write `simulator` to `directory` (replaced whole if it exists); returns the directory. A
    `simulators.simulator_set.SimulatorSet` is saved as its members (its parameter ranges are not saved)."""

    # One member of an ensemble saves as a simulator of its own.
    config = dataclasses.replace(simulator.config, ensemble_size=len(simulator.members))

    def write(tmp: Path) -> None:
        write_json(tmp / CONFIG, config.to_dict())
        write_json(tmp / SCHEMA, simulator.schema.to_dict())
        write_json(tmp / ITEMS, list(simulator.item_tokens))
        write_tensors(
            tmp / WEIGHTS,
            {
                f"member_{k}.{name}": value
                for k, m in enumerate(simulator.members)
                for name, value in m.state_dict().items()
            },
        )
        write_tensors(tmp / START_POOL, simulator.start_pool._asdict())

    metadata = {"simulator_format": FORMAT, "ensemble_size": len(simulator.members)}
    return save_artifact(directory, KIND, write, metadata=metadata)


def verify(directory: str | os.PathLike) -> Artifact:
    """Check every file of `directory` against its manifest; returns the artifact or raises `CheckpointError`."""
    return open_artifact(directory, KIND, required=REQUIRED)


def check_start_pool(pool: ExposureLog, n_items: int, n_features: int, where: Path) -> None:
    """Refuse a start pool whose arrays do not describe valid sequences (CSR layout, item range, shapes)."""
    offsets, items = pool.offsets, pool.items
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        raise CheckpointError(f"{where}: 'offsets' must start at 0 and never decrease")
    rows = int(offsets[-1])
    for name in ("items", "gap_before", "leave", "leave_known", "return_gap", "return_gap_known"):
        if getattr(pool, name).shape != (rows,):
            raise CheckpointError(
                f"{where}: {name!r} has shape {getattr(pool, name).shape}, expected ({rows},)"
            )
    if pool.return_gap_known.dtype != np.bool_:
        raise CheckpointError(f"{where}: 'return_gap_known' must be bool, not {pool.return_gap_known.dtype}")
    if not np.isfinite(pool.return_gap).all():
        raise CheckpointError(f"{where}: 'return_gap' must be finite (0 where 'return_gap_known' is false)")
    if pool.feedback.ndim != 2 or len(pool.feedback) != rows:
        raise CheckpointError(f"{where}: 'feedback' has shape {pool.feedback.shape}, expected ({rows}, F)")
    if items.dtype.kind not in "iu" or (items.size and (items.min() < 0 or items.max() >= n_items)):
        raise CheckpointError(f"{where}: item index outside the catalogue of {n_items}")
    if pool.user_features.shape != (pool.n_users, n_features):
        raise CheckpointError(
            f"{where}: user features of shape {pool.user_features.shape}, but {SCHEMA} "
            f"describes {n_features} features for {pool.n_users} users"
        )


def start_pool_of(found: dict[str, np.ndarray], where: Path, *, legacy: bool) -> ExposureLog:
    """The start pool held by a saved simulator's arrays `found` (read from `where`).

    `legacy`: the arrays are of simulator format 1 or 2, which have no `return_gap_known` and hold NaN
    where the return gap is unknown; the mask is read from the NaNs, which become 0.

    Raises:
        CheckpointError: an array of the start pool is missing.
    """
    if legacy and "return_gap" in found and "return_gap_known" not in found:
        gap = np.asarray(found["return_gap"])
        known = np.isfinite(gap)
        found = {**found, "return_gap": np.where(known, gap, 0).astype(gap.dtype), "return_gap_known": known}
    missing = [name for name in ExposureLog._fields if name not in found]
    if missing:
        raise CheckpointError(f"{where}: missing array(s) {missing}")
    return ExposureLog(**{name: found[name] for name in ExposureLog._fields})


def load(
    directory: str | os.PathLike, *, data: LoggedInteractions | None = None
) -> LearnedSimulator | EnsembleSimulator:
    """Load a simulator saved by `save`, after checking its manifest: a `LearnedSimulator` for one
    member, an `EnsembleSimulator` for more.

    Args:
        directory: the saved simulator.
        data: if given, the data the simulator is meant for: its item catalogue must be the
            simulator's (same tokens in the same order).

    Raises:
        CheckpointError: naming the file that is missing, truncated, corrupt or mismatched, or saved in
            another simulator format (`LOADABLE_FORMATS`; an older one is converted by `seqrec convert DIR`).
    """
    artifact = verify(directory)
    version = format_of(artifact)
    if version not in LOADABLE_FORMATS:
        where = artifact.root / "manifest.json"
        if isinstance(version, int) and version < FORMAT:
            raise CheckpointError(
                f"{where}: simulator format {version}, saved by an older version; this version reads "
                f"format {FORMAT}: convert it with `seqrec convert {artifact.root}`"
            )
        raise CheckpointError(
            f"{where}: simulator format {version!r}; this version of recsim-env reads format {FORMAT}"
        )
    return _read(artifact, data=data, version=version)


def format_of(artifact: Artifact) -> object:
    """The simulator format of a checked artifact (1 where its manifest records none)."""
    return artifact.metadata.get("simulator_format", 1)


def upgrade(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write the simulator saved in `src` in an older simulator format to `dst` in the current one (what
    `seqrec convert` runs); returns `dst`.

    Raises:
        CheckpointError: if `src` is not a saved simulator of an older format (or is damaged).
    """
    artifact = verify(src)
    version = format_of(artifact)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version < FORMAT:
        raise CheckpointError(
            f"{artifact.root}: simulator format {version!r}; `upgrade` converts formats 1 to {FORMAT - 1}"
        )
    return save(_read(artifact, data=None, version=version), dst)


def _read(
    artifact: Artifact, *, data: LoggedInteractions | None, version: int
) -> LearnedSimulator | EnsembleSimulator:
    """The simulator of a checked artifact in simulator format `version` (1 to `FORMAT`)."""
    directory = artifact.root
    try:
        config = SimulatorConfig.from_dict(artifact.read_json_object(CONFIG))
    except CheckpointError:
        raise
    except (ValueError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{directory / CONFIG}: {error}") from None
    try:
        fields = artifact.read_json_object(SCHEMA)
        if version == 1:  # format 1 read a missing feature spec as none
            fields = {"user_features": {}, "item_features": {}, **fields}
        schema = DataSchema.from_dict(fields)
    except CheckpointError:
        raise
    except KeyError as error:
        raise CheckpointError(f"{directory / SCHEMA}: missing field {error}") from None
    except (ValueError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{directory / SCHEMA}: {error}") from None
    item_tokens = artifact.read_json(ITEMS)
    if not isinstance(item_tokens, list) or len(item_tokens) != schema.n_items:
        raise CheckpointError(
            f"{directory / ITEMS}: must list the {schema.n_items} items {SCHEMA} says the catalogue has"
        )
    if data is not None:
        tokens = np.asarray(data.item_ids.tokens).tolist()
        if tokens != item_tokens:
            raise CheckpointError(
                f"{directory / ITEMS}: catalogue mismatch: the simulator has {len(item_tokens)} items, "
                f"the data {data.name!r} has {len(tokens)}"
                + ("" if len(tokens) != len(item_tokens) else " with different ids or order")
            )
    tensors = artifact.read_tensors(WEIGHTS, framework="pt")
    members = []
    for k in range(config.ensemble_size):
        prefix = f"member_{k}."
        state = {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
        if not state:
            raise CheckpointError(
                f"{directory / WEIGHTS}: no weights for member_{k} (config.ensemble_size = {config.ensemble_size})"
            )
        model = ResponseModel(config, schema)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise CheckpointError(
                f"{directory / WEIGHTS}: weights do not fit {CONFIG} / {SCHEMA}: {error}"
            ) from None
        model.eval()
        members.append(model)
    where = directory / START_POOL
    pool = start_pool_of(artifact.read_tensors(START_POOL), where, legacy=version < 3)
    check_start_pool(pool, schema.n_items, schema.user_features.width, where)
    return simulator_of(config, schema, members, pool, item_tokens)
