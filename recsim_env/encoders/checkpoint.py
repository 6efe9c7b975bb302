"""Encoder checkpoints: an artifact (`recsim_env.checkpoint`) of kind "encoder".

Files of `DIR` (each listed with its SHA-256 in `manifest.json`, whose metadata holds the encoder's
registry name, its catalogue size and free-form metadata such as metrics):

* `config.json`: the encoder config's fields (reloaded with `Config(**d)`; an unknown key is an error).
* `item_ids.json`: the raw item tokens in index order (index i <-> `tokens[i]`); `user_ids.json` likewise.
* `weights.safetensors`: the `state_dict` as safetensors (no pickle).

The directory is written whole and swapped in (`save_artifact`), so a reader never sees a mix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsim_env.checkpoint import Artifact, open_artifact, save_artifact, write_json, write_tensors
from recsim_env.encoders.base import SequenceEncoder
from recsim_env.errors import CheckpointError, DataError

KIND = "encoder"
CONFIG_FILE = "config.json"
ITEMS_FILE = "item_ids.json"
USERS_FILE = "user_ids.json"
WEIGHTS_FILE = "weights.safetensors"
ENCODER_FILES = (CONFIG_FILE, ITEMS_FILE, WEIGHTS_FILE)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the encoder (in eval mode) and its id maps."""

    encoder: SequenceEncoder
    item_tokens: list
    """Raw item token of each item index."""
    user_tokens: list | None = None
    """Raw user tokens of the training data, when saved."""
    metadata: dict[str, Any] = field(default_factory=dict)


def _tokens(ids) -> list:
    """Plain Python list of tokens from an `IdMap`, an array or a sequence."""
    tokens = ids.tokens if hasattr(ids, "tokens") else ids
    return np.asarray(tokens).tolist() if isinstance(tokens, np.ndarray) else list(tokens)


def encoder_metadata(encoder: SequenceEncoder, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest metadata of an encoder checkpoint."""
    return {"encoder": encoder.name, "n_items": encoder.n_items, "metadata": metadata or {}}


def write_encoder_files(
    directory: Path, encoder: SequenceEncoder, *, item_ids: Any, user_ids: Any | None = None
) -> None:
    """Write the encoder's files into `directory` (a new artifact directory being filled)."""
    item_tokens = _tokens(item_ids)
    if len(item_tokens) != encoder.n_items:
        raise ValueError(
            f"item_ids has {len(item_tokens)} tokens but the encoder has n_items={encoder.n_items}"
        )
    write_tensors(directory / WEIGHTS_FILE, encoder.state_dict())
    write_json(directory / ITEMS_FILE, item_tokens)
    if user_ids is not None:
        write_json(directory / USERS_FILE, _tokens(user_ids))
    write_json(directory / CONFIG_FILE, encoder.config.to_dict())


def save(
    directory: str | os.PathLike,
    encoder: SequenceEncoder,
    *,
    item_ids: Any,
    user_ids: Any | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write `encoder` with its id maps to `directory` (replaced whole if it exists).

    Args:
        directory: checkpoint directory.
        encoder: the encoder to save.
        item_ids: the item `IdMap` (or its tokens) the encoder was trained on; one token per item index.
        user_ids: optional user `IdMap` (or tokens).
        metadata: JSON-serialisable extras (metrics, trainer config).
    """
    return save_artifact(
        directory,
        KIND,
        lambda tmp: write_encoder_files(tmp, encoder, item_ids=item_ids, user_ids=user_ids),
        metadata=encoder_metadata(encoder, metadata),
    )


def checkpoint_from_artifact(
    artifact: Artifact,
    encoder_info: dict[str, Any],
    *,
    item_ids: Any | None = None,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Rebuild the encoder from a checked artifact's files; `encoder_info` is its `encoder_metadata`."""
    from recsim_env.encoders.registry import build

    root = artifact.root
    for key in ("encoder", "n_items"):
        if key not in encoder_info:
            raise CheckpointError(f"{root / 'manifest.json'}: metadata has no {key!r} entry")
    try:
        encoder = build(encoder_info["encoder"], artifact.read_json_object(CONFIG_FILE))
    except CheckpointError:
        raise
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{root / CONFIG_FILE}: {error}") from None
    state = artifact.read_tensors(WEIGHTS_FILE, framework="pt")
    try:
        encoder.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{root / WEIGHTS_FILE}: weights do not fit {CONFIG_FILE}: {error}") from None
    encoder.to(map_location).eval()
    item_tokens = artifact.read_json(ITEMS_FILE)
    if not isinstance(item_tokens, list) or len(item_tokens) != encoder.n_items:
        raise CheckpointError(
            f"{root / ITEMS_FILE}: must list one token per item, the encoder has n_items={encoder.n_items}"
        )
    if item_ids is not None:
        check_catalogue(item_tokens, _tokens(item_ids), where=str(root))
    user_tokens = artifact.read_json(USERS_FILE) if artifact.has(USERS_FILE) else None
    metadata = encoder_info.get("metadata", {})
    return Checkpoint(encoder, item_tokens, user_tokens, metadata if isinstance(metadata, dict) else {})


def load_checkpoint(
    directory: str | os.PathLike, *, item_ids: Any | None = None, map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Load a checkpoint written by `save`, after checking its manifest.

    Args:
        directory: checkpoint directory.
        item_ids: when given (an `IdMap` or tokens), the catalogue the caller will use; it must equal the
            checkpoint's item tokens, index for index, else a `DataError` says where they differ.
        map_location: device for the weights.

    Raises:
        CheckpointError: naming the file that is missing, truncated, altered or of another kind.
    """
    artifact = open_artifact(directory, KIND, required=ENCODER_FILES)
    return checkpoint_from_artifact(artifact, artifact.metadata, item_ids=item_ids, map_location=map_location)


def load(
    directory: str | os.PathLike, *, item_ids: Any | None = None, map_location: str | torch.device = "cpu"
):
    """The encoder of the checkpoint in `directory` (eval mode); see `load_checkpoint`."""
    return load_checkpoint(directory, item_ids=item_ids, map_location=map_location).encoder


def check_catalogue(expected: Sequence, actual: Sequence, *, where: str) -> None:
    """Raise a `DataError` unless the two token lists are identical, naming the first difference."""
    if list(expected) == list(actual):
        return
    if len(expected) != len(actual):
        raise DataError(
            f"{where}: catalogue mismatch: the checkpoint was trained on {len(expected)} items, "
            f"the data has {len(actual)}"
        )
    first = next(i for i, (a, b) in enumerate(zip(expected, actual, strict=True)) if a != b)
    raise DataError(
        f"{where}: catalogue mismatch at item index {first}: checkpoint token {expected[first]!r}, "
        f"data token {actual[first]!r}"
    )
