"""The `SequenceEncoder` contract shared by every sequential encoder, and the config fields they all have.

Conventions (every encoder follows them, the trainer and the agents rely on them):

* Item indices are `0..N-1`; the padding id is `N` (`config.pad_id`); BERT4Rec's mask token is `N + 1`.
* Sequences are LEFT-padded and chronological, so the most recent item is always the last column and the
  user state is the hidden state at the last position.
* Learned positions count back from the most recent item (position 0 = last column). For a full window
  this is exactly the absolute position table of the reference code; it also makes extra left padding
  leave every real position unchanged, which the padding-invariance test checks.
* A padding mask is `[B, L]` bool, True at real items.
* With `item_text_dim > 0` the item representation is `seen_i * E[i] + W t_i + b` (an ID embedding plus a
  learned projection of a frozen text embedding `t_i`, `recsim_env.encoders.item_text`), for the inputs
  and the tied output scores alike; `seen_i` is 0 for items with no training event, whose ID row never
  learned anything, so they are ranked by their text alone (docs/item_text.md). With
  `cold_item_map = "ridge"` an unseen item's missing ID row is replaced by `M [t_i; 1]`, a ridge regression
  from the text to the seen items' ID rows fitted after training (`fit_cold_item_map`); seen items' vectors
  are unchanged by it.
"""

from __future__ import annotations

import abc
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from recsim_env.checks import check_choice, check_config_fields, check_integer, check_real
from recsim_env.encoders import losses
from recsim_env.errors import ArgumentError

CONTENT_HINT = (
    "`seqrec train --item-content catalogue`, `seqrec train-simulator --item-content catalogue` or "
    "`--item-text COLUMNS`, `seqrec train-encoder --item-text COLUMNS` (docs/item_text.md)"
)
"""Where to get item content, for the errors of an encoder that has none."""

LOSSES = ("ce", "bce", "sampled_softmax")
COLD_ITEM_MAPS = ("none", "ridge")
"""What stands in for the ID row of an item with no training event: nothing, or the ridge text->ID map."""
IGNORE_TARGET = -100
"""Target value of a position that contributes no loss (`torch.nn.functional.cross_entropy`'s default)."""


@dataclass(frozen=True, kw_only=True)
class EncoderConfig:
    """Fields every encoder has; each model's config subclasses this and adds its own."""

    n_items: int
    """Catalogue size N; item indices are 0..N-1, N is padding."""
    max_len: int = 50
    """Longest history the encoder reads (L); longer histories keep their most recent L items."""
    d_model: int = 64
    """Width D of item embeddings and hidden states (tied input/output embeddings)."""
    dropout: float = 0.2
    """Dropout rate on embeddings and inside the blocks."""
    feedback_dim: int = 0
    """F: width of the per-event feedback vector added (through a linear map) to the input; 0 ignores feedback."""
    loss: str = "ce"
    """Training loss: "ce" (full softmax over all N items), "bce" (one sampled negative per target, the
    SASRec paper's loss) or "sampled_softmax" (softmax over the target and `n_negatives` shared uniform negatives)."""
    n_negatives: int = 128
    """Uniform negatives per batch for "sampled_softmax" (ignored by the other losses)."""
    item_text_dim: int = 0
    """T: width of the frozen per-item text embeddings (`item_text` buffer, `[N, T]`) projected into the
    item representation; 0: ID embeddings only."""
    item_id_dropout: float = 0.0
    """With item text: probability that a seen item's ID embedding is dropped (the item represented by its
    text alone) in a training forward pass, drawn per item and pass, so the text projection learns to rank
    items without their ID row (DropoutNet's idea); 0: only unseen items lose their ID row."""
    cold_item_map: str = "none"
    """With item text: the ID-space part of an item with no training event: "none" (none; its text projection
    alone) or "ridge" (`M [t_i; 1]`, a ridge regression from text to the seen items' ID rows, fitted after
    training by `fit_cold_item_map`; Meta-Embedding / LinMap's idea)."""
    cold_item_map_ridge: float = 1.0
    """Ridge strength lambda of the "ridge" map (> 0; the intercept is not penalised)."""

    def __post_init__(self) -> None:
        check_config_fields(self, ("n_items", "max_len", "d_model", "n_negatives"), check_integer, low=1)
        check_config_fields(
            self, ("dropout", "item_id_dropout"), check_real, low=0.0, high=1.0, high_open=True
        )
        check_config_fields(self, ("feedback_dim", "item_text_dim"), check_integer, low=0)
        check_config_fields(self, ("loss",), check_choice, choices=LOSSES)
        check_config_fields(self, ("cold_item_map",), check_choice, choices=COLD_ITEM_MAPS)
        check_config_fields(self, ("cold_item_map_ridge",), check_real, low=0.0, low_open=True)
        if self.cold_item_map != "none" and self.item_text_dim == 0:
            raise ArgumentError(
                f"cold_item_map={self.cold_item_map!r} maps item text to ID rows: it needs item_text_dim > 0"
            )

    @property
    def pad_id(self) -> int:
        """Padding id: N."""
        return self.n_items

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (what `config.json` holds)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        """Inverse of `to_dict`; an unknown key is an error naming the key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown config key(s) {unknown}")
        return cls(**d)


class TrainingBatch(NamedTuple):
    """One model-ready training batch: inputs and per-position targets (`IGNORE_TARGET` = no loss)."""

    item_ids: torch.Tensor  # [B, L] int64, left-padded
    timestamps: torch.Tensor | None  # [B, L] float64 seconds
    feedback: torch.Tensor | None  # [B, L, F] float32
    targets: torch.Tensor  # [B, L] int64


class SequenceEncoder(nn.Module, abc.ABC):
    """Item ids (+ optional timestamps and feedback) -> hidden states, user states and item scores.

    Subclasses implement `encode`; the shared parts (embedding, scoring with tied item embeddings, the
    next-item training targets and the losses) live here. Scores are `h_u . e_i (+ b_i)` over the item
    embedding table `E` (`[N, D]`), the same table that embeds the inputs.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[EncoderConfig]]
    n_special_tokens: ClassVar[int] = 1
    """Rows after the N items in the embedding table: padding (and BERT4Rec's mask)."""
    learning_rate: ClassVar[float] = 2e-3
    """Adam learning rate that `seqrec train-encoder` and the ML-100k benchmark train this encoder with by default."""
    uses_timestamps: ClassVar[bool] = False
    """Whether `forward` reads timestamps (the trainer only ships them to encoders that do)."""
    needs_item_content: ClassVar[bool] = False
    """Whether the encoder cannot represent items without a content matrix (`item_text`, `[N, T]`); its
    builders then attach one by default (`recsim_env.encoders.item_text.build_encoder`)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        d = config.d_model
        self.item_embedding = nn.Embedding(
            config.n_items + self.n_special_tokens, d, padding_idx=config.pad_id
        )
        self.feedback_projection = nn.Linear(config.feedback_dim, d) if config.feedback_dim > 0 else None
        self.output_bias: nn.Parameter | None = None
        self.text_projection = nn.Linear(config.item_text_dim, d) if config.item_text_dim > 0 else None
        if self.text_projection is not None:
            # Buffers, not parameters: the frozen text matrix and the seen mask travel in the state_dict
            # (so in the checkpoint's tensors) but are never trained.
            self.register_buffer("item_text", torch.zeros(config.n_items, config.item_text_dim))
            self.register_buffer("item_seen", torch.ones(config.n_items, dtype=torch.bool))
        if self.text_projection is not None and config.cold_item_map == "ridge":
            # `[T + 1, D]`: the map's weights, then its intercept; zeros (no ID part) until fitted.
            self.register_buffer("item_text_map", torch.zeros(config.item_text_dim + 1, config.d_model))
        else:
            self.item_text_map: torch.Tensor | None = None

    # -- the contract ------------------------------------------------------------------------------

    @property
    def pad_id(self) -> int:
        return self.config.pad_id

    @property
    def n_items(self) -> int:
        return self.config.n_items

    def padding_mask(self, item_ids: torch.Tensor) -> torch.Tensor:
        """`[B, L]` bool, True at real (non-padding) positions."""
        return item_ids != self.pad_id

    def forward(
        self,
        item_ids: torch.Tensor,
        *,
        timestamps: torch.Tensor | None = None,
        feedback: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states `[B, L, D]` of left-padded `item_ids` `[B, L]` (L <= max_len).

        Args:
            item_ids: `[B, L]` int64 item indices, padding id N on the left, most recent item last.
            timestamps: `[B, L]` event times in seconds (used by HSTU's time buckets; others ignore it).
            feedback: `[B, L, F]` per-event feedback (used when `config.feedback_dim > 0`).
            padding_mask: `[B, L]` bool, True at real items; derived from `item_ids` when omitted.
        """
        if item_ids.dim() != 2:
            raise ValueError(f"item_ids must be [B, L], got shape {tuple(item_ids.shape)}")
        if item_ids.shape[1] > self.config.max_len:
            raise ValueError(
                f"item_ids has length {item_ids.shape[1]} > max_len {self.config.max_len}; keep the last max_len items"
            )
        if padding_mask is None:
            padding_mask = self.padding_mask(item_ids)
        if self.config.feedback_dim > 0 and feedback is None:
            raise ValueError(
                f"this encoder was built with feedback_dim={self.config.feedback_dim}: pass feedback"
            )
        return self.encode(item_ids, timestamps=timestamps, feedback=feedback, padding_mask=padding_mask)

    @abc.abstractmethod
    def encode(
        self,
        item_ids: torch.Tensor,
        *,
        timestamps: torch.Tensor | None,
        feedback: torch.Tensor | None,
        padding_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Model-specific body of `forward` (inputs already validated)."""

    def user_state(
        self,
        item_ids: torch.Tensor,
        *,
        timestamps: torch.Tensor | None = None,
        feedback: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`[B, D]` state from which the next item is scored: the hidden state at the last position.

        Histories longer than `max_len` keep their most recent `max_len` items.
        """
        item_ids, timestamps, feedback, padding_mask = _keep_last(
            self.config.max_len, item_ids, timestamps, feedback, padding_mask
        )
        hidden = self(item_ids, timestamps=timestamps, feedback=feedback, padding_mask=padding_mask)
        return hidden[:, -1]

    def item_table(self) -> torch.Tensor:
        """`[N, D]` output item embeddings (tied with the input table, special tokens left out)."""
        if self.text_projection is None:
            return self.item_embedding.weight[: self.n_items]
        return self.id_rows() + self.text_projection(self.item_text)

    def id_rows(self) -> torch.Tensor:
        """`[N, D]` ID part of the item vectors (with item text): `E[i]` for the items whose ID row is kept
        (`id_kept`), `M [t_i; 1]` for unseen items under the cold-item map, else zeros."""
        ids = self.item_embedding.weight[: self.n_items] * self.id_kept().unsqueeze(-1)
        if self.item_text_map is None:
            return ids
        unseen = (~self.item_seen).nonzero().squeeze(-1)  # [U]: the map costs U rows, not N
        return ids.index_put((unseen,), self.mapped_id_rows(unseen))

    def id_vectors(self, item_ids: torch.Tensor) -> torch.Tensor:
        """`[..., D]` ID part of the input vectors of `item_ids` `[...]` (special tokens included): the rows of
        `id_rows()` for items, the ID embedding for padding and mask tokens."""
        x = self.item_embedding(item_ids)
        if self.text_projection is None:
            return x
        real = item_ids < self.n_items
        items = item_ids.clamp(max=self.n_items - 1)
        x = x * torch.where(real, self.id_kept()[items], True).unsqueeze(-1)
        if self.item_text_map is None:
            return x
        unseen = real & ~self.item_seen[items]
        if not bool(unseen.any()):  # training inputs hold seen items only
            return x
        return x.index_put((unseen,), self.mapped_id_rows(items[unseen]))

    def mapped_id_rows(self, items: torch.Tensor) -> torch.Tensor:
        """`[..., D]` the cold-item map's stand-in `M [t_i; 1]` for the ID rows of `items` `[...]` (< N)."""
        return self.item_text[items] @ self.item_text_map[:-1] + self.item_text_map[-1]

    @torch.no_grad()
    def fit_cold_item_map(self, ridge: float | None = None) -> None:
        """Fit the cold-item map to the seen items (closed form, float64; no randomness).

        Ridge regression with an unpenalised intercept from the text embedding to the ID row (Meta-Embedding,
        Pan et al. SIGIR 2019, and LinMap fit such a content -> ID-embedding generator):

            (M, c) = argmin_{M, c} sum_{i seen} ||M^T t_i + c - E[i]||^2 + lambda ||M||_F^2,
            M = (T_c^T T_c + lambda I)^{-1} T_c^T E_c,   c = mean(E) - M^T mean(t),

        with `T_c`, `E_c` the seen items' text rows and ID rows less their means. Only unseen items read the
        map (`id_rows`), so seen items' vectors and scores are unchanged.

        Args:
            ridge: lambda; None: `config.cold_item_map_ridge`.

        Raises:
            ArgumentError: the encoder has no cold-item map (`cold_item_map="none"` or no item text), `ridge`
                is not a finite number > 0, fewer than 2 items are seen, or the ID rows are not finite.
        """
        if self.item_text_map is None:
            raise ArgumentError(
                f"{type(self).__name__} has no cold-item map: build it with item text and cold_item_map='ridge'"
            )
        ridge = check_real(
            "ridge", self.config.cold_item_map_ridge if ridge is None else ridge, 0.0, low_open=True
        )
        seen = self.item_seen
        if int(seen.sum()) < 2:
            raise ArgumentError(f"cold-item map: needs at least 2 seen items, got {int(seen.sum())}")
        text = self.item_text[seen].double()  # [S, T]
        ids = self.item_embedding.weight[: self.n_items][seen].double()  # [S, D]
        if not torch.isfinite(ids).all():
            raise ArgumentError("cold-item map: the seen items' ID embeddings are not all finite")
        text_mean, ids_mean = text.mean(0), ids.mean(0)
        centred = text - text_mean
        gram = centred.T @ centred + ridge * torch.eye(text.shape[1], dtype=torch.float64, device=text.device)
        weights = torch.linalg.solve(gram, centred.T @ (ids - ids_mean))  # [T, D]
        intercept = ids_mean - text_mean @ weights
        self.item_text_map.copy_(torch.cat([weights, intercept[None]]).to(self.item_text_map))

    def id_kept(self) -> torch.Tensor:
        """`[N]` bool: the items whose ID embedding is part of their representation in this pass (seen
        items, less those `config.item_id_dropout` drops in training mode)."""
        if not self.training or self.config.item_id_dropout == 0.0:
            return self.item_seen
        draws = torch.rand(self.n_items, device=self.item_seen.device)
        return self.item_seen & (draws >= self.config.item_id_dropout)

    def item_vectors(self, item_ids: torch.Tensor) -> torch.Tensor:
        """`[..., D]` input representation of `item_ids` `[...]` (special tokens included): the rows of
        `item_table()` for items, the ID embedding for padding and mask tokens."""
        x = self.id_vectors(item_ids)
        if self.text_projection is None:
            return x
        real = item_ids < self.n_items
        items = item_ids.clamp(max=self.n_items - 1)
        return x + self.text_projection(self.item_text[items]) * real.unsqueeze(-1)

    @property
    def has_item_text(self) -> bool:
        """Whether items are represented with their text embeddings (`config.item_text_dim > 0`)."""
        return self.text_projection is not None

    def set_item_text(self, embeddings: torch.Tensor) -> None:
        """Copy the frozen `[N, item_text_dim]` text embeddings into the `item_text` buffer."""
        if self.text_projection is None:
            raise ValueError(f"{type(self).__name__} was built with item_text_dim=0: it has no item text")
        expected = (self.n_items, self.config.item_text_dim)
        if tuple(embeddings.shape) != expected:
            raise ValueError(
                f"item text embeddings: expected shape {expected}, got {tuple(embeddings.shape)}"
            )
        if not torch.isfinite(embeddings).all():
            raise ValueError("item text embeddings: every value must be finite")
        with torch.no_grad():
            self.item_text.copy_(embeddings.to(self.item_text))

    def set_seen_items(self, seen: torch.Tensor) -> None:
        """Set the `[N]` bool mask of items that have a training event (the others are ranked by text alone
        and left out of the training softmax); no-op for an encoder without item text."""
        if self.text_projection is None:
            return
        if tuple(seen.shape) != (self.n_items,) or seen.dtype != torch.bool:
            raise ValueError(
                f"seen items: expected a [{self.n_items}] bool tensor, got {seen.dtype} {tuple(seen.shape)}"
            )
        self.item_seen.copy_(seen.to(self.item_seen.device))

    def score(self, state: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of items given states.

        Args:
            state: `[..., D]` user or hidden states.
            items: None for all N items, `[C]` candidates shared by every row, or `[..., C]` candidate
                indices per row (same leading shape as `state`).

        Returns:
            `[..., N]` or `[..., C]` logits.
        """
        table = self.item_table()
        if items is None or items.dim() == 1:  # all items, or one candidate list shared by every row
            logits = state @ (table if items is None else table[items]).T
            bias = self.output_bias if items is None or self.output_bias is None else self.output_bias[items]
            return logits + bias if bias is not None else logits
        logits = (state.unsqueeze(-2) * table[items]).sum(-1)
        return logits + self.output_bias[items] if self.output_bias is not None else logits

    # -- shared pieces for subclasses --------------------------------------------------------------

    def embed_inputs(
        self, item_ids: torch.Tensor, feedback: torch.Tensor | None, padding_mask: torch.Tensor
    ) -> torch.Tensor:
        """`[B, L, D]` item embeddings plus the projected feedback at real positions."""
        x = self.item_vectors(item_ids)
        if self.feedback_projection is not None and feedback is not None:
            x = x + self.feedback_projection(feedback.to(x.dtype)) * padding_mask.unsqueeze(-1)
        return x

    @staticmethod
    def positions_from_end(length: int, device: torch.device) -> torch.Tensor:
        """`[L]` position index of each column counted back from the last (most recent) one."""
        return torch.arange(length - 1, -1, -1, device=device)

    # -- training ----------------------------------------------------------------------------------

    def fit_statistics(self, item_ids: torch.Tensor, own_targets: torch.Tensor) -> None:
        """Called once by the trainer, before the first epoch, with every training window: a model that needs
        a statistic of the training data (MQSA-TED's transition graph) computes it here and keeps it in a
        buffer, so that checkpoints carry it. The default needs none.

        Args:
            item_ids: `[W, L + 1]` int64 left-padded training windows (no validation or test event).
            own_targets: `[W, L]` bool, True where the window trains on target `item_ids[:, t + 1]` (each
                training event is such a target in exactly one window).
        """
        del item_ids, own_targets

    def training_batch(
        self,
        item_ids: torch.Tensor,
        timestamps: torch.Tensor | None,
        feedback: torch.Tensor | None,
        *,
        generator: torch.Generator | None = None,
    ) -> TrainingBatch:
        """Inputs and targets from left-padded windows of `max_len + 1` events (`[B, L + 1]`).

        Default (autoregressive models): input = events 0..L-1, target at each position = the next event,
        so every position of every window is a training example. Positions whose input is padding
        predict nothing.
        """
        del generator
        inputs, targets = item_ids[:, :-1], item_ids[:, 1:].clone()
        targets[inputs == self.pad_id] = IGNORE_TARGET
        ts = timestamps[:, :-1] if timestamps is not None else None
        fb = feedback[:, :-1] if feedback is not None else None
        return TrainingBatch(inputs, ts, fb, targets)

    def loss(self, batch: TrainingBatch, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean loss (`config.loss`) over the positions of `batch` that have a target."""
        hidden = self(batch.item_ids, timestamps=batch.timestamps, feedback=batch.feedback)
        selected = batch.targets != IGNORE_TARGET  # [B, L]
        states, targets = hidden[selected], batch.targets[selected]  # [M, D], [M]
        if targets.numel() == 0:
            return hidden.sum() * 0.0
        return self.next_item_loss(states, targets, generator=generator)

    def next_item_loss(
        self, states: torch.Tensor, targets: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """`config.loss` of `[M, D]` states against their `[M]` target items."""
        if self.config.loss == "ce":
            logits = self.score(states)
            # Items with no training event are not in the training catalogue: not even negatives.
            if self.text_projection is not None:
                logits = logits.masked_fill(~self.item_seen, torch.finfo(logits.dtype).min)
            return losses.full_softmax_cross_entropy(logits, targets)
        if self.config.loss == "bce":
            return losses.sampled_bce(self.score, states, targets, n_items=self.n_items, generator=generator)
        return losses.sampled_softmax(
            self.score,
            states,
            targets,
            n_items=self.n_items,
            n_negatives=self.config.n_negatives,
            generator=generator,
        )


class PositionalEncoder(SequenceEncoder):
    """A `SequenceEncoder` whose blocks read `h^0_t = Dropout(E[s_t] sqrt(D) + P[t])`, zero at padding
    (SASRec's input, also HSTU's): learned absolute positions `P` counted back from the most recent item."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        self.position_embedding = nn.Embedding(config.max_len, config.d_model)
        self.input_dropout = nn.Dropout(config.dropout)
        self.embedding_scale = math.sqrt(config.d_model)

    def block_input(
        self, item_ids: torch.Tensor, feedback: torch.Tensor | None, padding_mask: torch.Tensor
    ) -> torch.Tensor:
        """`[B, L, D]` `h^0` of left-padded `item_ids` `[B, L]`."""
        return self.positioned(self.embed_inputs(item_ids, feedback, padding_mask), padding_mask)

    def positioned(self, embedded: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """`[B, L, D]` `h^0` from the embedded inputs `embed_inputs(...)` `[B, L, D]` (what a caller that
        keeps them from step to step passes instead of the item ids)."""
        x = embedded * self.embedding_scale
        x = x + self.position_embedding(self.positions_from_end(embedded.shape[1], embedded.device))
        return self.input_dropout(x) * padding_mask.unsqueeze(-1)


def _keep_last(
    max_len: int,
    item_ids: torch.Tensor,
    timestamps: torch.Tensor | None,
    feedback: torch.Tensor | None,
    padding_mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    if item_ids.shape[1] <= max_len:
        return item_ids, timestamps, feedback, padding_mask
    cut = slice(item_ids.shape[1] - max_len, None)
    return (
        item_ids[:, cut],
        timestamps[:, cut] if timestamps is not None else None,
        feedback[:, cut] if feedback is not None else None,
        padding_mask[:, cut] if padding_mask is not None else None,
    )


def attention_mask(padding_mask: torch.Tensor, *, causal: bool) -> torch.Tensor:
    """`[B, 1, L, L]` bool mask (True = may attend) for `scaled_dot_product_attention`.

    Queries never see padding keys; every query may see itself so that padding rows (whose outputs are
    ignored) do not produce NaN from an all-masked softmax.
    """
    length = padding_mask.shape[1]
    eye = torch.eye(length, dtype=torch.bool, device=padding_mask.device)
    allowed = padding_mask[:, None, :] | eye  # [B, L, L]
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=padding_mask.device).tril()
    return allowed.unsqueeze(1)


def last_query_mask(padding_mask: torch.Tensor) -> torch.Tensor:
    """`[B, 1, 1, L]` the last query's row of `attention_mask(padding_mask, causal=True)`: causality hides
    nothing from the last position, so it sees the real keys and itself."""
    allowed = padding_mask.clone()
    allowed[:, -1] = True
    return allowed[:, None, None, :]
