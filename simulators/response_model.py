"""The user response model: a sequential encoder with one head per feedback signal, leaving and returning.

Given the history `x_1..x_t` (items, normalised feedback, log1p of the days since the last session),
the user's features `f` and the items' features `g_i` (each empty when the data has none) and a
candidate item `c`, with item vectors `e_i = E_i + W_g g_i`, `h_t = Encoder(x_1..x_t) + W_u f`
(SASRec by default, Kang & McAuley 2018; each history position reads its item's features `g` next to
its feedback) and `z = MLP([h_t, e_c, h_t * e_c])`:

    P(click | h_t, c)          = sigmoid(z_click + b_c)                       (b_c: item click bias)
    P(s = 1 | click = k)       = sigmoid(z_{s,k})      for each other binary signal s, k in {0, 1}
    s | click = 1              ~ Normal(mu_s, sigma_s)  for each continuous signal (normalised units;
                                                          0 when nothing is consumed)
    P(leave | click = k)       = sigmoid(z_{leave,k})
    log(return gap days)       ~ Normal(mu_gap, sigma_gap)  at a session end

With `interest_filter`, a learned Bayesian filter of the user's interest and satiation
(`simulators.interest_filter`) reads the history too: `h_t` gains `W_f m_t`, the state (`ModelState`)
carries the filter's belief `(m, P, S)`, and the click logit becomes
`(z_click + b_c - S . V e_c + a_c . m) / sqrt(1 + pi a_c'P a_c / 8)`.

Trained with the negative log-likelihood of all heads (the click term times `click_loss_weight`) on the
target positions of left-padded windows
(teacher forcing: position t predicts the response to exposure t + 1). Binary heads are calibrated
afterwards on validation users, by default with Platt scaling, a temperature and a bias each
(Platt 1999; the temperature alone is Guo et al., "On Calibration of Modern Neural Networks", ICML
2017): `p = sigmoid(logit / T + b)`.
"""

from __future__ import annotations

from dataclasses import fields
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsim_env.encoders import config_class
from recsim_env.encoders.item_text import TEXT_DIM, build_encoder
from recsim_env.errors import ArgumentError
from simulators.config import SimulatorConfig
from simulators.data import DataSchema, ExposureLog, ExposureWindows, model_inputs
from simulators.interest_filter import InterestFilter

LOG_SIGMA_MIN, LOG_SIGMA_MAX = -4.0, 3.0


class HeadOutputs(NamedTuple):
    """Raw head outputs for candidates `[..., C]` (logits before calibration)."""

    click: torch.Tensor  # [..., C]
    binary: torch.Tensor  # [..., C, B, 2] other binary signals, given click = 0 / 1
    mean: torch.Tensor  # [..., C, R] continuous signals given click (normalised units)
    log_sigma: torch.Tensor  # [..., C, R]
    leave: torch.Tensor  # [..., C, 2] given click = 0 / 1
    gap_mean: torch.Tensor  # [..., C] log days
    gap_log_sigma: torch.Tensor  # [..., C]


class ModelState(NamedTuple):
    """What the heads read after a history: the encoder's state and the interest filter's belief."""

    hidden: torch.Tensor  # [..., D] h_t (user features, click pooling and W_f m_t added)
    belief: torch.Tensor | None  # [..., W] the filter's packed (m, vec P, S); None without a filter

    def last(self) -> ModelState:
        """The state at the last position of `[B, L, ...]` states."""
        return ModelState(self.hidden[:, -1], None if self.belief is None else self.belief[:, -1])


class FilterStart(NamedTuple):
    """Where the interest filter of each of B windows starts reading (`window_filter_starts`)."""

    state: torch.Tensor  # [B, W] the packed state the user's exposures before the window leave
    from_prior: torch.Tensor  # [B] bool: the window begins the user's sequence; its filter starts from the
    # prior, computed in the graph so that it is learned (`state` is zero there)

    def take(self, rows: np.ndarray | slice) -> FilterStart:
        """The starts of windows `rows`."""
        rows = torch.as_tensor(rows) if isinstance(rows, np.ndarray) else rows
        return FilterStart(self.state[rows], self.from_prior[rows])


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`[..., D]` rows `index` [...] of `table` [V, D]: `table[index]` through `index_select`, which copies
    rows several times faster than advanced indexing (the same values). For tables that need no gradient:
    lookups that training differentiates keep `table[index]`."""
    return table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[1])


def content_dim(config: SimulatorConfig, schema: DataSchema) -> int:
    """T: the width of the item content the encoder reads (`SimulatorConfig.content_source`), 0 for none."""
    source = config.content_source
    if source == "text":
        return TEXT_DIM
    if source == "catalogue":
        if not schema.item_features.width:
            raise ArgumentError(
                f"SimulatorConfig.item_content: encoder {config.encoder!r} reads the catalogue's item features "
                "and the data's item table has none (or item_features is off): give item text columns "
                "(--item-text COLUMNS)"
            )
        return schema.item_features.width
    return 0


class ResponseModel(nn.Module):
    """Encoder backbone plus per-signal heads (equations in the module docstring).

    Args:
        config: the simulator config (backbone, width, dropout, item content source).
        schema: the data's signals (which heads exist).
        item_content: `[N, T]` item content the encoder reads (`simulators.train.item_content`); None when
            the encoder reads none, or when a checkpoint's weights will fill it.
    """

    def __init__(
        self, config: SimulatorConfig, schema: DataSchema, item_content: np.ndarray | None = None
    ) -> None:
        super().__init__()
        self.n_binary = len(schema.other_binary)
        self.n_continuous = len(schema.continuous)
        self.click_loss_weight = config.click_loss_weight
        known = {f.name for f in fields(config_class(config.encoder))}
        options = {
            "n_items": schema.n_items,
            "max_len": config.history_len,
            "d_model": config.d_model,
            "dropout": config.dropout,
            # Per history position: the feedback, the gap before it and the item's features.
            "feedback_dim": len(schema.signals) + 1 + schema.item_features.width,
        }
        for name in ("n_layers", "n_heads"):
            if name in known:
                options[name] = getattr(config, name)
        content_width = content_dim(config, schema)
        if content_width:
            options["item_text_dim"] = content_width
        self.encoder = build_encoder(config.encoder, options, item_content)
        d = config.d_model
        n_out = 1 + 2 * self.n_binary + 2 * self.n_continuous + 2 + 2
        self.head = nn.Sequential(
            nn.Linear(3 * d, d), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(d, n_out)
        )
        n_features = schema.user_features.width
        self.user_projection = nn.Linear(n_features, d) if n_features else None
        n_item_features = schema.item_features.width
        self.item_projection = nn.Linear(n_item_features, d) if n_item_features else None
        if n_item_features:
            # Filled by `set_item_features` (training) or from the saved weights (loading); the padding
            # row stays zero.
            self.register_buffer("item_feature_table", torch.zeros(schema.n_items + 1, n_item_features))
        self.click_pooling = config.click_pooling
        if self.click_pooling:
            # Learned log-weight of a history exposure by its distance back from the scoring position.
            self.pool_distance = nn.Parameter(torch.zeros(config.history_len))
            self.pool_projection = nn.Linear(2 * d, d)
        self.interest_filter = None
        if config.interest_filter:
            self.interest_filter = InterestFilter(
                d,
                schema.n_items,
                n_features,
                tuple(schema.signals.index(s) for s in schema.continuous),
                config.filter_dim,
            )
            # The belief's mean also reaches the other heads (leaving, watch time) through the state.
            self.filter_projection = nn.Linear(config.filter_dim, d)
        self.d_model = d
        self.click_bias = nn.Embedding(schema.n_items + 1, 1)
        nn.init.zeros_(self.click_bias.weight)
        # Calibration of each binary head (click, leave, other binary signals): p = sigmoid(logit / T + b);
        # T = 1 and b = 0 until `calibrate` sets them.
        self.register_buffer("temperature", torch.ones(2 + self.n_binary))
        self.register_buffer("calibration_bias", torch.zeros(2 + self.n_binary))

    def set_item_features(self, features: np.ndarray) -> None:
        """Store the catalogue's encoded item features `[n_items, Q]` (`DataSchema.item_features`)."""
        if self.item_projection is None:
            raise ValueError("this response model reads no item features")
        expected = (self.item_feature_table.shape[0] - 1, self.item_feature_table.shape[1])
        if features.shape != expected:
            raise ValueError(
                f"set_item_features: argument 'features' has shape {features.shape}, expected {expected}"
            )
        with torch.no_grad():
            self.item_feature_table[:-1] = torch.as_tensor(features, dtype=self.item_feature_table.dtype)

    def encoder_inputs(self, items: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """The per-position encoder input: the feedback inputs `[..., L, F + 1]`, then the item's features."""
        if self.item_projection is None:
            return inputs
        return torch.cat([inputs, gather_rows(self.item_feature_table, items)], dim=-1)

    def states(
        self,
        items: torch.Tensor,
        inputs: torch.Tensor,
        user_features: torch.Tensor | None = None,
        filter_start: FilterStart | None = None,
    ) -> ModelState:
        """States after each position of left-padded histories `items` [B, L] with inputs [B, L, F + 1] and
        the users' features [B, P]: `hidden` [B, L, D] and the interest filter's `belief` [B, L, W], read over
        the window from `filter_start` when given, else from the prior."""
        hidden = self.encoder(items, feedback=self.encoder_inputs(items, inputs))
        if self.click_pooling:
            hidden = hidden + self.pooled(items, inputs)
        hidden = self.with_user(hidden, user_features)
        if self.interest_filter is None:
            return ModelState(hidden, None)
        real = (items != self.encoder.pad_id).to(inputs.dtype)
        belief = self.interest_filter(
            items, self.item_vectors(items), inputs, real, user_features, filter_start
        )
        return self.with_belief(hidden, belief)

    def with_belief(self, hidden: torch.Tensor, belief: torch.Tensor) -> ModelState:
        """The state `hidden + W_f m` with the filter's `belief` (its mean `m` first)."""
        return ModelState(hidden + self.filter_projection(belief[..., : self.interest_filter.dim]), belief)

    def embed_history(self, items: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The encoder's per-event cache (`cache_events`, `[B, T, ...]` tensors) of exposures `items` [B, T]
        with inputs [B, T, F + 1] (zero feedback term at padding): what `last_state(events=...)` reads,
        so that a running simulator embeds each exposure once (`(embedded inputs,)` for an encoder without
        a cache)."""
        padding_mask = items != self.encoder.pad_id
        embedded = self.encoder.embed_inputs(items, self.encoder_inputs(items, inputs), padding_mask)
        cache_events = getattr(self.encoder, "cache_events", None)
        return (embedded,) if cache_events is None else cache_events(embedded, padding_mask)

    def pooled(
        self,
        items: torch.Tensor,
        inputs: torch.Tensor,
        last_only: bool = False,
        item_table: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`[B, L, D]` (`[B, D]` with `last_only`): `W_p [mean of clicked e_s, mean of unclicked e_s]` over
        each position's history s <= t, weighted by learned `exp(a_(t - s))` (`item_table` as in
        `item_vectors`)."""
        length = items.shape[1]
        real = (items != self.encoder.pad_id).to(inputs.dtype)
        click = (inputs[..., 0] > 0).to(inputs.dtype) * real  # clicked or not (a count click counts once)
        vectors = self.item_vectors(items, item_table)  # [B, L, D]
        distance = torch.arange(length, device=items.device)
        lag = distance[:, None] - distance[None, :]  # [t, s]
        rows = slice(length - 1, length) if last_only else slice(None)
        lag = lag[rows]
        weight = torch.where(
            lag >= 0, self.pool_distance[lag.clamp(0, self.pool_distance.shape[0] - 1)].exp(), 0.0
        )  # [T, L]
        parts = []
        for mask in (click, real - click):
            w = weight[None] * mask[:, None, :]  # [B, T, L]
            parts.append(w @ vectors / w.sum(-1, keepdim=True).clamp_min(1e-6))
        out = self.pool_projection(torch.cat(parts, dim=-1))
        return out[:, -1] if last_only else out

    def last_state(
        self,
        items: torch.Tensor,
        inputs: torch.Tensor,
        user_features: torch.Tensor | None = None,
        belief: torch.Tensor | None = None,
        *,
        events: tuple[torch.Tensor, ...] | None = None,
        events_start: int = 0,
        item_table: torch.Tensor | None = None,
    ) -> ModelState:
        """`states(...).last()`, computed for the last position only (what a simulator step needs).

        `belief` [B, W]: the interest filter's state carried by a running simulator (`filter_state`,
        `advance_filter`); without it the filter reads the window `items` from the prior. `events`:
        `embed_history(items, inputs)`, kept by a running simulator (an encoder with `encode_last`,
        SASRec, then reads them instead of embedding the whole window again), in ring order from slot
        `events_start` (`simulators.state.MemberState`).
        `item_table`: `item_vectors` of every item id, computed once by a simulator whose weights are fixed.
        """
        encode_last = getattr(self.encoder, "encode_last", None)
        if encode_last is not None:
            if events is None:
                events, events_start = self.embed_history(items, inputs), 0
            hidden = encode_last(events, items != self.encoder.pad_id, start=events_start)
        else:
            hidden = self.encoder(items, feedback=self.encoder_inputs(items, inputs))[:, -1]
        if self.click_pooling:
            hidden = hidden + self.pooled(items, inputs, last_only=True, item_table=item_table)
        hidden = self.with_user(hidden, user_features)
        if self.interest_filter is None:
            return ModelState(hidden, None)
        if belief is None:
            belief = self.filter_state(items, inputs, user_features)
        return self.with_belief(hidden, belief)

    def filter_state(
        self, items: torch.Tensor, inputs: torch.Tensor, user_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`[B, W]` the interest filter's state after the histories `items` [B, L] read from the prior
        (`[B, 0]` without a filter): where a simulator starts the state it carries."""
        if self.interest_filter is None:
            return torch.zeros(items.shape[0], 0)
        prior = self.interest_filter.initial(items.shape[0], user_features)
        return self.advance_filter(prior, items, inputs)

    @torch.inference_mode()
    def filter_state_before_rows(
        self, log: ExposureLog, rows: np.ndarray, scales: np.ndarray, batch_size: int = 64, chunk: int = 64
    ) -> np.ndarray:
        """`[len(rows), 2K + K*K]` the interest filter's state before each of the log's rows `rows`, having
        read the user's whole sequence up to it from the prior (what a running simulator carries), not only a
        window. Users are read in batches of `batch_size`, `chunk` exposures at a time, so memory stays
        bounded however long the sequences are."""
        model_filter = self.interest_filter
        out = np.zeros((len(rows), model_filter.state_width), dtype=np.float32)
        rows = np.asarray(rows, dtype=np.int64)
        owner = np.searchsorted(log.offsets, rows, side="right") - 1
        position = rows - log.offsets[owner]
        lengths = log.lengths()
        wanted_users = np.unique(owner)
        # Users of similar lengths share a batch (they pad little); requested rows sorted by their user's
        # place in that order, so each batch's rows are one slice.
        by_length = wanted_users[np.argsort(lengths[wanted_users], kind="stable")]
        rank = np.empty(log.n_users, dtype=np.int64)
        rank[by_length] = np.arange(len(by_length))
        place = rank[owner]  # each requested row's user's place in that order
        order = np.argsort(place, kind="stable")
        bounds = np.searchsorted(place[order], np.arange(0, len(by_length) + batch_size, batch_size))
        for batch, first in enumerate(range(0, len(by_length), batch_size)):
            users = by_length[first : first + batch_size]
            asked = order[bounds[batch] : bounds[batch + 1]]  # the requested rows of this batch's users
            features = torch.from_numpy(log.user_features[users]) if log.user_features.shape[1] else None
            state = model_filter.initial(len(users), features)
            at_start = asked[position[asked] == 0]
            out[at_start] = state[place[at_start] - first].numpy()
            width = int(position[asked].max())  # read up to the last requested row, not past it
            for lo in range(0, width, chunk):
                hi = min(lo + chunk, width)
                index = log.offsets[users][:, None] + np.arange(lo, hi)[None, :]
                real = np.arange(lo, hi)[None, :] < lengths[users][:, None]
                safe = np.where(real, index, 0)
                items = torch.from_numpy(np.where(real, log.items[safe], self.encoder.pad_id))
                inputs = model_inputs(log.feedback[safe], log.gap_before[safe], scales) * real[..., None]
                after = model_filter.advance(  # [B, hi - lo, W]: the state after each of these rows
                    state,
                    items,
                    self.item_vectors(items),
                    torch.from_numpy(inputs),
                    torch.from_numpy(real.astype(np.float32)),
                    every_position=True,
                )
                # The state before row p is the state after row p - 1.
                here = asked[(position[asked] > lo) & (position[asked] <= hi)]
                out[here] = after[place[here] - first, position[here] - 1 - lo].numpy()
                state = after[:, -1]
        return out

    def window_filter_starts(
        self, log: ExposureLog, w: ExposureWindows, scales: np.ndarray
    ) -> FilterStart | None:
        """The filter's start before each window `w` of `log` begins (its first real row), from the user's
        whole sequence before it; None without a filter. A window that begins at the user's first exposure
        starts from the prior (`FilterStart.from_prior`), which the model computes itself (so that the prior
        is trained)."""
        if self.interest_filter is None:
            return None
        first = np.where(w.rows >= 0, w.rows, np.iinfo(np.int64).max).min(axis=1)
        at_start = np.isin(first, log.offsets[:-1])
        starts = np.zeros((len(first), self.interest_filter.state_width), dtype=np.float32)
        later = np.flatnonzero(~at_start)
        starts[later] = self.filter_state_before_rows(log, first[later], scales)
        return FilterStart(torch.from_numpy(starts), torch.from_numpy(at_start))

    def advance_filter(
        self,
        belief: torch.Tensor,
        items: torch.Tensor,
        inputs: torch.Tensor,
        item_table: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The filter state `belief` [B, W] after reading the new exposures `items` [B, T] with
        inputs [B, T, F + 1] (unchanged without a filter; `item_table` as in `item_vectors`)."""
        if self.interest_filter is None:
            return belief
        real = (items != self.encoder.pad_id).to(inputs.dtype)
        return self.interest_filter.advance(belief, items, self.item_vectors(items, item_table), inputs, real)

    def item_vectors(self, items: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """`[..., D]` vectors `e_i = E_i + W_g g_i` of item ids `items` [...]; looked up in `table`
        (`item_vectors(torch.arange(n_items + 1))`, computed once while the weights stay fixed) when given."""
        if table is not None:
            return gather_rows(table, items)
        vectors = self.encoder.item_embedding.weight[items]
        if self.item_projection is None:
            return vectors
        return vectors + self.item_projection(self.item_feature_table[items])

    def with_user(self, hidden: torch.Tensor, user_features: torch.Tensor | None) -> torch.Tensor:
        """`hidden` [B, ..., D] plus `W_u f` of the users' features `f` [B, P] (unchanged without features)."""
        if self.user_projection is None:
            return hidden
        if user_features is None:
            raise ValueError("this response model reads user features: pass `user_features`")
        shift = self.user_projection(user_features)
        return hidden + shift.reshape(shift.shape[:1] + (1,) * (hidden.dim() - 2) + shift.shape[1:])

    def heads(
        self, state: ModelState, candidates: torch.Tensor, item_table: torch.Tensor | None = None
    ) -> HeadOutputs:
        """Head outputs for `state` (from `states` or `last_state`, leading shape [...]) and `candidates`
        [..., C] item ids (`item_table` as in `item_vectors`)."""
        e = self.item_vectors(candidates, item_table)  # [..., C, D]
        h = state.hidden.unsqueeze(-2).expand_as(e)
        z = self.head(torch.cat([h, e, h * e], dim=-1))  # [..., C, n_out]
        b, r = self.n_binary, self.n_continuous
        click = z[..., 0] + self.click_bias(candidates).squeeze(-1)
        if self.interest_filter is not None:
            click = self.interest_filter.click_logit(click, state.belief, e)
        at = 1
        binary = z[..., at : at + 2 * b].unflatten(-1, (b, 2))
        at += 2 * b
        mean = z[..., at : at + r]
        log_sigma = z[..., at + r : at + 2 * r].clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)
        at += 2 * r
        leave = z[..., at : at + 2]
        gap_mean = z[..., at + 2]
        gap_log_sigma = z[..., at + 3].clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)
        return HeadOutputs(click, binary, mean, log_sigma, leave, gap_mean, gap_log_sigma)

    def calibrated(self, out: HeadOutputs) -> HeadOutputs:
        """The same outputs with every binary logit divided by its temperature, plus its bias."""
        t, b = self.temperature, self.calibration_bias
        return out._replace(
            click=out.click / t[0] + b[0],
            binary=out.binary / t[2:, None] + b[2:, None],
            leave=out.leave / t[1] + b[1],
        )

    def loss(
        self,
        items: torch.Tensor,
        inputs: torch.Tensor,
        batch: dict[str, torch.Tensor],
        user_features: torch.Tensor | None = None,
        filter_start: FilterStart | None = None,
    ) -> torch.Tensor:
        """Mean negative log-likelihood over the window positions that have a history and a target."""
        out = self.head_outputs(items, inputs, user_features, filter_start)
        return self.objective(nll_terms(out, batch, self.n_binary))

    def objective(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training objective from `nll_terms`: their sum, the click term times `click_loss_weight`."""
        return sum(self.click_loss_weight * v if name == "click" else v for name, v in terms.items())

    def head_outputs(
        self,
        items: torch.Tensor,
        inputs: torch.Tensor,
        user_features: torch.Tensor | None = None,
        filter_start: FilterStart | None = None,
    ) -> HeadOutputs:
        """Teacher-forced outputs: position t of `items[:, :-1]` scores exposure t + 1. `[B, L]` each.
        `filter_start`: the interest filter's state before the window (`window_filter_starts`)."""
        state = self.states(items[:, :-1], inputs[:, :-1], user_features, filter_start)  # [B, L, ...]
        out = self.heads(state, items[:, 1:, None])  # one candidate per position: C = 1
        return HeadOutputs(*(x.squeeze(2) for x in out))


def nll_terms(out: HeadOutputs, batch: dict[str, torch.Tensor], n_binary: int) -> dict[str, torch.Tensor]:
    """Per-head mean negative log-likelihoods (`batch` holds targets `[B, L]` aligned with `out`).

    `batch`: `mask` (history and target real), `click`, `binary` [B, L, n_binary], `continuous` [B, L, R]
    (normalised), `leave`, `leave_known`, `log_gap` and `log_gap_known` (0 / 1: the gap is known).
    """
    mask = batch["mask"]
    n = mask.sum().clamp_min(1)
    click = batch["click"]
    terms = {
        "click": (F.binary_cross_entropy_with_logits(out.click, click, reduction="none") * mask).sum() / n
    }
    branch = click.long()[..., None]  # which branch of the conditional heads was realised
    if n_binary:
        logits = out.binary.gather(-1, branch[..., None].expand(*branch.shape[:-1], n_binary, 1)).squeeze(-1)
        bce = F.binary_cross_entropy_with_logits(logits, batch["binary"], reduction="none")
        terms["binary"] = (bce.sum(-1) * mask).sum() / n
    if out.mean.shape[-1]:
        consumed = mask * click
        z = (batch["continuous"] - out.mean) / out.log_sigma.exp()
        nll = 0.5 * z**2 + out.log_sigma
        terms["continuous"] = (nll.sum(-1) * consumed).sum() / consumed.sum().clamp_min(1)
    leave_mask = mask * batch["leave_known"]
    leave_logit = out.leave.gather(-1, branch).squeeze(-1)
    terms["leave"] = (
        F.binary_cross_entropy_with_logits(leave_logit, batch["leave"], reduction="none") * leave_mask
    ).sum() / n
    gap_mask = mask * batch["log_gap_known"]
    if gap_mask.sum() > 0:
        z = (batch["log_gap"] - out.gap_mean) / out.gap_log_sigma.exp()
        terms["gap"] = ((0.5 * z**2 + out.gap_log_sigma) * gap_mask).sum() / gap_mask.sum()
    return terms
