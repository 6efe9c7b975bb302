"""Saved simulators: a directory with a manifest that `load` checks before it trusts anything.

Layout of `DIR`:

* `config.json`: the `SimulatorConfig` fields (reloaded with `SimulatorConfig(**d)`; unknown key = error).
* `schema.json`: the `DataSchema` (signals, scales, catalogue size, session handling).
* `item_ids.json`: raw item token of each item index.
* `weights.pt`: `{"member_k": state_dict}` for the K members (calibration temperatures and biases included),
  loaded with `weights_only=True`.
* `start_pool.npz`: the labelled exposure sequences whose prefixes start episodes.
* `manifest.json`: format version and, for every file above, its size in bytes and SHA-256.
* `fidelity.json`, `fidelity.md`, `*.png`: the fidelity report (not in the manifest: it may be
  rewritten by `seqrec simulator-report` without touching the simulator).

Every file is written to a temporary file in `DIR` and renamed. `load` refuses a directory whose
files do not match the manifest (truncated, edited, missing) or whose catalogue differs from the data
it is meant for, with a `DataError` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch

from recsim_env.data import LoggedInteractions
from recsim_env.errors import DataError
from recsim_env.io import atomic_write
from simulators.config import SimulatorConfig
from simulators.data import DataSchema, ExposureLog
from simulators.response_model import ResponseModel
from simulators.simulator import LearnedSimulator

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"
SCHEMA = "schema.json"
ITEMS = "item_ids.json"
WEIGHTS = "weights.pt"
START_POOL = "start_pool.npz"
REQUIRED = (CONFIG, SCHEMA, ITEMS, WEIGHTS, START_POOL)


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(simulator: LearnedSimulator, directory: str | os.PathLike) -> Path:
    """Write `simulator` to `directory` (created if needed); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_bytes(directory / CONFIG, _json_bytes(simulator.config.to_dict()))
    _write_bytes(directory / SCHEMA, _json_bytes(simulator.schema.to_dict()))
    _write_bytes(directory / ITEMS, _json_bytes(list(simulator.item_tokens)))
    buffer = io.BytesIO()
    torch.save({f"member_{k}": m.state_dict() for k, m in enumerate(simulator.members)}, buffer)
    _write_bytes(directory / WEIGHTS, buffer.getvalue())
    buffer = io.BytesIO()
    np.savez(buffer, **simulator.start_pool._asdict())
    _write_bytes(directory / START_POOL, buffer.getvalue())
    write_manifest(directory)
    return directory


def write_manifest(directory: Path) -> None:
    """(Re)write `manifest.json` over the simulator's files."""
    files = {}
    for name in REQUIRED:
        path = directory / name
        if path.is_file():
            files[name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    _write_bytes(directory / MANIFEST, _json_bytes({"format_version": FORMAT_VERSION, "files": files}))


def verify(directory: str | os.PathLike) -> dict:
    """Check every file of `directory` against its manifest; returns the manifest or raises `DataError`."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not directory.is_dir():
        raise DataError(f"{directory}: not a saved simulator (no such directory)")
    if not manifest_path.is_file():
        raise DataError(f"{manifest_path}: missing; {directory} is not a saved simulator")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DataError(f"{manifest_path}: corrupt manifest ({error})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{manifest_path}: unsupported format version {manifest.get('format_version')!r}")
    for name in REQUIRED:
        if name not in files:
            raise DataError(f"{manifest_path}: does not list required file {name!r}")
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            raise DataError(f"{path}: missing (listed in {MANIFEST})")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise DataError(
                f"{path}: truncated or altered: {size} bytes, the manifest says {expected['bytes']}"
            )
        if _sha256(path) != expected["sha256"]:
            raise DataError(f"{path}: corrupt: its SHA-256 differs from the manifest's")
    return manifest


def load(directory: str | os.PathLike, *, data: LoggedInteractions | None = None) -> LearnedSimulator:
    """Load a simulator saved by `save`, after checking its manifest.

    Args:
        directory: the saved simulator.
        data: if given, the data the simulator is meant for: its item catalogue must be the
            simulator's (same tokens in the same order).

    Raises:
        DataError: naming the file that is missing, truncated, corrupt or mismatched.
    """
    directory = Path(directory)
    verify(directory)
    try:
        saved_config = json.loads((directory / CONFIG).read_text())
        # Saved before simulators read feature tables, pooled clicks or had an interest filter: they did
        # none of these; before `window_stride`, windows overlapped by one exposure (None).
        for name in ("user_features", "item_features", "click_pooling", "interest_filter"):
            saved_config.setdefault(name, False)
        saved_config.setdefault("window_stride", None)
        config = SimulatorConfig.from_dict(saved_config)
    except (ValueError, TypeError, AttributeError) as error:
        raise DataError(f"{directory / CONFIG}: {error}") from None
    try:
        schema = DataSchema.from_dict(json.loads((directory / SCHEMA).read_text()))
    except (ValueError, TypeError) as error:
        raise DataError(f"{directory / SCHEMA}: {error}") from None
    item_tokens = json.loads((directory / ITEMS).read_text())
    if len(item_tokens) != schema.n_items:
        raise DataError(
            f"{directory / ITEMS}: {len(item_tokens)} items, but {SCHEMA} says the catalogue has {schema.n_items}"
        )
    if data is not None:
        tokens = np.asarray(data.item_ids.tokens).tolist()
        if tokens != item_tokens:
            raise DataError(
                f"{directory / ITEMS}: catalogue mismatch: the simulator has {len(item_tokens)} items, "
                f"the data {data.name!r} has {len(tokens)}"
                + ("" if len(tokens) != len(item_tokens) else " with different ids or order")
            )
    try:
        states = torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged archive
        raise DataError(f"{directory / WEIGHTS}: cannot read weights ({error})") from None
    members = []
    for k in range(config.ensemble_size):
        model = ResponseModel(config, schema)
        key = f"member_{k}"
        if key not in states:
            raise DataError(
                f"{directory / WEIGHTS}: no weights for {key} (config.ensemble_size = {config.ensemble_size})"
            )
        state = dict(states[key])
        # Saved before calibration had a bias (temperature alone): its bias is 0.
        if "temperature" in state and "calibration_bias" not in state:
            state["calibration_bias"] = torch.zeros_like(state["temperature"])
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise DataError(
                f"{directory / WEIGHTS}: weights do not fit {CONFIG} / {SCHEMA}: {error}"
            ) from None
        model.eval()
        members.append(model)
    with np.load(directory / START_POOL) as arrays:
        found = dict(arrays)
    if "user_features" not in found and "offsets" in found:  # saved before simulators read user features
        found["user_features"] = np.zeros((len(found["offsets"]) - 1, 0), dtype=np.float32)
    try:
        pool = ExposureLog(**{name: found[name] for name in ExposureLog._fields})
    except KeyError as error:
        raise DataError(f"{directory / START_POOL}: missing array {error}") from None
    if pool.items.size and pool.items.max() >= schema.n_items:
        raise DataError(f"{directory / START_POOL}: item index outside the catalogue of {schema.n_items}")
    if pool.user_features.shape != (pool.n_users, schema.user_features.width):
        raise DataError(
            f"{directory / START_POOL}: user features of shape {pool.user_features.shape}, but {SCHEMA} "
            f"describes {schema.user_features.width} features for {pool.n_users} users"
        )
    return LearnedSimulator(config, schema, members, pool, item_tokens)
