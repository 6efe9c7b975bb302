"""Encoder checkpoints: a directory with the config, the weights and the id maps.

Layout of `DIR`:

* `config.json`: the encoder config's fields (reloaded with `Config(**d)`; an unknown key is an error).
* `checkpoint.json`: encoder name, format version, catalogue size and free-form metadata (metrics, trainer).
* `item_ids.json`: the raw item tokens in index order (index i <-> `tokens[i]`); `user_ids.json` likewise.
* `weights.pt`: the `state_dict` (tensors only; loaded with `weights_only=True`).

Every file is written to a temporary file in `DIR` and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsim_env.encoders.base import SequenceEncoder
from recsim_env.errors import DataError
from recsim_env.io import write_atomic

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
META_FILE = "checkpoint.json"
ITEMS_FILE = "item_ids.json"
USERS_FILE = "user_ids.json"
WEIGHTS_FILE = "weights.pt"


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


def _write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=2).encode())


def save(
    directory: str | os.PathLike,
    encoder: SequenceEncoder,
    *,
    item_ids: Any,
    user_ids: Any | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write `encoder` with its id maps to `directory` (created if needed).

    Args:
        directory: checkpoint directory.
        encoder: the encoder to save.
        item_ids: the item `IdMap` (or its tokens) the encoder was trained on; one token per item index.
        user_ids: optional user `IdMap` (or tokens).
        metadata: JSON-serialisable extras (metrics, trainer config).
    """
    item_tokens = _tokens(item_ids)
    if len(item_tokens) != encoder.n_items:
        raise ValueError(
            f"item_ids has {len(item_tokens)} tokens but the encoder has n_items={encoder.n_items}"
        )
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in encoder.state_dict().items()}, buffer)
    write_atomic(out / WEIGHTS_FILE, buffer.getvalue())
    _write_json(out / ITEMS_FILE, item_tokens)
    if user_ids is not None:
        _write_json(out / USERS_FILE, _tokens(user_ids))
    _write_json(out / CONFIG_FILE, encoder.config.to_dict())
    meta = {
        "encoder": encoder.name,
        "format_version": FORMAT_VERSION,
        "n_items": encoder.n_items,
        "metadata": metadata or {},
    }
    _write_json(out / META_FILE, meta)  # written last: its presence marks a complete checkpoint
    return out


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (is {path.parent} an encoder checkpoint directory?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err


def load_checkpoint(
    directory: str | os.PathLike, *, item_ids: Any | None = None, map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Load a checkpoint written by `save`.

    Args:
        directory: checkpoint directory.
        item_ids: when given (an `IdMap` or tokens), the catalogue the caller will use; it must equal the
            checkpoint's item tokens, index for index, else a `DataError` says where they differ.
        map_location: device for the weights.
    """
    from recsim_env.encoders.registry import build

    root = Path(directory)
    meta = _read_json(root / META_FILE)
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{root / META_FILE}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    encoder = build(meta["encoder"], _read_json(root / CONFIG_FILE))
    state = torch.load(root / WEIGHTS_FILE, map_location=map_location, weights_only=True)
    encoder.load_state_dict(state)
    encoder.eval()
    item_tokens = _read_json(root / ITEMS_FILE)
    if len(item_tokens) != encoder.n_items:
        raise DataError(
            f"{root / ITEMS_FILE}: {len(item_tokens)} tokens but the encoder has n_items={encoder.n_items}"
        )
    if item_ids is not None:
        check_catalogue(item_tokens, _tokens(item_ids), where=str(root))
    users_path = root / USERS_FILE
    user_tokens = _read_json(users_path) if users_path.is_file() else None
    return Checkpoint(encoder, item_tokens, user_tokens, meta.get("metadata", {}))


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
