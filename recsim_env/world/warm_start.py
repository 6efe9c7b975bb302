"""Sampling the warm-start history: `P(i | u) ∝ exp(w_aff <u, e_i> + w_cb b_i)` over the catalogue.

Two samplers draw from this distribution (docs/world.md, "Start of an episode"; docs/catalogue.md):

- `"table"` (`table_history`): the inverse CDF over the whole catalogue, one `[N, n_items]` table per
  reset. Its cost grows with the catalogue; its draws are the ones every recorded figure of the
  default world came from.
- `"rejection"` (`ShellProposal`): exact rejection sampling whose cost does not depend on the
  catalogue size. Built once with the world: each category's anchor `a_c` (the normalised mean of
  its embeddings); its items sorted by their angle to `a_c` and cut into equal-size shells; each
  shell cut by `w_cb b_i` into equal-size groups. For a user at angle `phi` from `a_c`, every item
  of a shell whose angles to `a_c` lie in `[lo, hi]` has `<u, e_i> <= cos(max(0, phi - hi, lo - phi))`
  (and `>= cos(min(pi, phi + hi))`, the bound used when `w_aff < 0`). With `B_s(u)` that bound
  times `w_aff` and `T_g` the largest `w_cb b_i` of group g, the proposal

      q(i | u) ∝ exp(T_g + B_s(u))   for every item i of group g in shell s

  dominates `P(i | u)`. A proposal draws a group by its mass `|g| exp(T_g + B_s(u))` (G values per
  user) and an item uniformly within it, and is accepted with probability
  `exp(w_aff <u, e_i> + w_cb b_i - T_g - B_s(u)) <= 1`: accepted draws follow `P(i | u)` exactly,
  and a proposal reads one item's row, whatever the catalogue size. Each user's proposals consume
  a fixed pool of uniforms (two per proposal); a user whose pool runs out before the history is
  full draws the remaining items by the exact inverse CDF over the catalogue from one reserved
  uniform each (the number of proposals is independent of the accepted items, so the mixture is
  still exact), and the world stays a deterministic function of its uniforms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

SAMPLERS = ("auto", "table", "rejection")
"""Values of `WorldConfig.warm_start_sampler`."""
TABLE_SAMPLER_MAX_ITEMS = 500
"""Largest catalogue for which `"auto"` uses the `"table"` sampler (the default world's size, whose
recorded draws it keeps); above it, `"rejection"`, which is faster from there on."""
PROPOSALS_PER_ITEM = 24
"""Proposals in each user's pool per history item, for the `"rejection"` sampler (see
docs/catalogue.md for the acceptance rates of the default constants)."""
MAX_GROUPS = 320
"""Most proposal groups of the `"rejection"` sampler: per category, `MAX_GROUPS // n_categories`
cells (at least 1), as up to `UTILITY_BINS` utility bands of each angular shell."""
UTILITY_BINS = 4
"""Utility bands per angular shell."""
MAX_START_UNIFORMS = 10_000
"""Most uniforms the `"rejection"` sampler asks per user (the environments' cap on `n_start_uniforms`)."""
PROPOSAL_BATCH = 16
"""Proposals whose catalogue rows the `"rejection"` sampler reads together (a cache-miss-bound step at
large catalogues; it changes no draw)."""
_BOUND_MARGIN = 1e-9
"""Added to each category's bound so that rounding cannot push an acceptance probability over 1."""


def resolve_sampler(sampler: str, n_items: int) -> str:
    """`"table"` or `"rejection"`: what `sampler` (one of `SAMPLERS`) means for a catalogue of `n_items`."""
    if sampler == "auto":
        return "table" if n_items <= TABLE_SAMPLER_MAX_ITEMS else "rejection"
    return sampler


def pool_size(history_len: int) -> int:
    """Proposals in each user's pool for a warm-start history of `history_len` items."""
    return max(0, min(PROPOSALS_PER_ITEM * history_len, (MAX_START_UNIFORMS - history_len) // 2))


def table_history(
    interest: np.ndarray,
    uniforms: np.ndarray,
    weight: float,
    item_embeddings: np.ndarray,
    item_utility: np.ndarray,
) -> np.ndarray:
    """[N, H] warm-start items by the inverse CDF over the whole catalogue (one uniform per item).

    `interest` [N, D], `uniforms` [N, H]; `weight` is `affinity_weight`, `item_utility` [n_items]
    the per-item part of the click utility.
    """
    n_users, n_items = len(interest), len(item_embeddings)
    utility = weight * (interest @ item_embeddings.T) + item_utility  # [N, n_items]
    cdf = np.cumsum(np.exp(utility - utility.max(axis=1, keepdims=True)), axis=1)
    cdf /= cdf[:, -1:]
    offsets = np.arange(n_users)[:, None]
    flat = np.searchsorted((cdf + offsets).ravel(), (uniforms + offsets).ravel(), side="right")
    return np.minimum(flat.reshape(n_users, -1) - offsets * n_items, n_items - 1)


def _runs(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a sorted key: the first index of each run of equal values, and each entry's run number."""
    change = np.concatenate([[False], key[1:] != key[:-1]])
    return np.flatnonzero(np.concatenate([[True], change[1:]])), np.cumsum(change)


@dataclass(frozen=True)
class ShellProposal:
    """The `"rejection"` sampler's tables, built once per world (sizes `n_items`, shells and groups).

    A shell is one angular band of one category: the category's items sorted by their angle to
    the category's anchor, cut into runs of equal size, so each shell's angles lie in a narrow
    `[shell_low, shell_high]` and its affinity bound is tight. A group is one band of a shell's
    items sorted by `item_utility`, proposed uniformly: within a group every item has the proposal
    weight `exp(group_top + bound)`, and a proposal costs one look-up, not a search.
    """

    order: np.ndarray
    """[n_items] int64 item ids by group (by category, shell, then utility)."""
    items: np.ndarray
    """[n_items, D + 1 + E] each item's embedding, `item_utility` and the E `item_payload` columns, in
    `order` (one row per proposal: what a history needs of an item is read with it)."""
    starts: np.ndarray
    """[G + 1] int64: group g's items are `order[starts[g]:starts[g + 1]]`."""
    group_shell: np.ndarray
    """[G] int64 shell of each group."""
    group_top: np.ndarray
    """[G] largest `item_utility` in each group."""
    group_weight: np.ndarray
    """[G] group size times `exp(group_top - max(group_top))`: the proposal mass before the bound."""
    shell_category: np.ndarray
    """[S] int64 category of each shell."""
    shell_low: np.ndarray
    """[S] smallest angle (radians) between a shell's items and their category's anchor."""
    shell_high: np.ndarray
    """[S] largest such angle."""
    anchors: np.ndarray
    """[C, D] unit vectors: the normalised mean embedding of each category."""

    @classmethod
    def build(
        cls,
        item_embeddings: np.ndarray,
        item_category: np.ndarray,
        item_utility: np.ndarray,
        n_categories: int,
        item_payload: np.ndarray | None = None,
    ) -> ShellProposal:
        """The tables for a catalogue in which every category has at least one item (vectorised).

        `item_payload` [n_items, E]: per-item values that `history` copies out for the drawn items
        (e.g. quality and duration), so that nothing reads the catalogue a second time.
        """
        n_items = len(item_category)
        cells = max(1, MAX_GROUPS // n_categories)
        bins = min(UTILITY_BINS, cells)
        shells = max(1, cells // bins)
        counts = np.bincount(item_category, minlength=n_categories)
        category_starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        anchors = np.stack(
            [
                np.bincount(item_category, weights=column, minlength=n_categories)
                for column in item_embeddings.T
            ],
            axis=1,
        )
        anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
        angle = np.arccos(np.clip(np.einsum("nd,nd->n", item_embeddings, anchors[item_category]), -1.0, 1.0))
        # Shells: equal-size runs of each category's items by angle to the anchor (angle < 4, so one
        # float key sorts by category, then angle).
        order = np.argsort(item_category * 4.0 + angle)
        category = item_category[order]
        shell_key = (
            category * shells + (np.arange(n_items) - category_starts[category]) * shells // counts[category]
        )
        # Groups: equal-size runs of each shell's items by utility (scaled into [0, 1) under the key).
        utility = item_utility[order]
        span = utility.max() - utility.min()
        scaled = (utility - utility.min()) / (2.0 * span) if span > 0 else np.zeros(n_items)
        by_utility = np.argsort(shell_key + scaled)
        order, shell_key = order[by_utility], shell_key[by_utility]
        shell_first, shell = _runs(shell_key)
        shell_size = np.diff(np.concatenate([shell_first, [n_items]]))
        group_key = shell * bins + (np.arange(n_items) - shell_first[shell]) * bins // shell_size[shell]
        group_first, _ = _runs(group_key)
        utility = item_utility[order]
        sorted_angle = angle[order]
        group_top = np.maximum.reduceat(utility, group_first)
        starts = np.concatenate([group_first, [n_items]]).astype(np.int64)
        return cls(
            order=order.astype(np.int64),
            items=np.ascontiguousarray(
                np.column_stack(
                    [item_embeddings[order], utility]
                    + ([] if item_payload is None else [np.asarray(item_payload, dtype=np.float64)[order]])
                )
            ),
            starts=starts,
            group_shell=shell[group_first].astype(np.int64),
            group_top=group_top,
            group_weight=np.diff(starts) * np.exp(group_top - group_top.max()),
            shell_category=item_category[order][shell_first].astype(np.int64),
            shell_low=np.minimum.reduceat(sorted_angle, shell_first),
            shell_high=np.maximum.reduceat(sorted_angle, shell_first),
            anchors=anchors,
        )

    @property
    def n_groups(self) -> int:
        return len(self.group_top)

    @property
    def n_payload(self) -> int:
        return self.items.shape[1] - len(self.anchors[0]) - 1

    def prepare(
        self,
        interest: np.ndarray,
        uniforms: np.ndarray,
        history_len: int,
        weight: float,
        *,
        copy_rows: bool = False,
    ) -> PreparedDraw:
        """A draw of warm-start items [N, H] for users `interest` [N, D], its arrays allocated: `run()`
        draws it, in one compiled call that releases the GIL. `uniforms` [N, H + 2 P]: H reserved for the
        fallback (the full inverse CDF), then P proposals. With `copy_rows`, the draw also holds the drawn
        items' embeddings and payload columns, copied from the rows the sampler read."""
        n_users, dim = len(interest), len(self.anchors[0])
        shape = (n_users, history_len) if copy_rows else (0, 0)
        return PreparedDraw(
            (
                np.ascontiguousarray(interest, dtype=np.float64),
                np.ascontiguousarray(uniforms[:, history_len:]),
                np.ascontiguousarray(uniforms[:, :history_len]),
                float(weight),
                self.anchors,
                self.shell_category,
                self.shell_low,
                self.shell_high,
                self.group_shell,
                self.group_top,
                self.group_weight,
                self.starts,
                self.order,
                self.items,
                np.empty((n_users, history_len), dtype=np.int64),
                copy_rows,
                np.empty(shape + (dim,)),
                np.empty((self.n_payload,) + shape),
            )
        )


class PreparedDraw:
    """A `ShellProposal.prepare` draw with its arrays ready: `run()` draws it."""

    def __init__(self, arguments: tuple) -> None:
        self.arguments = arguments

    def run(self) -> WarmStartDraw:
        proposals, accepted, fallbacks = _rejection_kernel(*self.arguments)
        history, copy_rows, embeddings, payload = self.arguments[-4:]
        return WarmStartDraw(
            items=history,
            proposals=int(proposals),
            accepted=int(accepted),
            fallbacks=int(fallbacks),
            embeddings=embeddings if copy_rows else None,
            payload=payload if copy_rows else None,
        )


@dataclass(frozen=True)
class WarmStartDraw:
    """What a `ShellProposal.prepare(...).run()` drew: the items and the sampler's counts."""

    items: np.ndarray
    """[N, H] int64 item ids."""
    proposals: int
    """Proposals made."""
    accepted: int
    """Proposals accepted."""
    fallbacks: int
    """Users whose pool ran out and who drew the rest by the full inverse CDF."""
    embeddings: np.ndarray | None = None
    """[N, H, D] the items' embeddings (with `copy_rows`; equal to `item_embeddings[items]`)."""
    payload: np.ndarray | None = None
    """[E, N, H] the items' payload columns (with `copy_rows`; column e equals `item_payload[items, e]`)."""


@numba.njit(cache=True, inline="always")
def _first_above(cumulative, v):
    """The first index whose value exceeds `v` in the non-decreasing `cumulative`, capped at the last
    (`min(np.searchsorted(cumulative, v, side="right"), len - 1)`), by a binary search whose steps
    are conditional moves rather than branches (a proposal's group is unpredictable)."""
    low, size = 0, len(cumulative)
    while size > 1:
        half = size // 2
        low = low + half if cumulative[low + half - 1] <= v else low
        size -= half
    return low


@numba.njit(cache=True, inline="always")
def _copy_row(items, j, dim, embeddings, payload, n, h):
    """Row j of `items` into user n's history slot h: the embedding, then the payload columns."""
    for d in range(dim):
        embeddings[n, h, d] = items[j, d]
    for e in range(len(payload)):
        payload[e, n, h] = items[j, dim + 1 + e]


@numba.njit(cache=True, nogil=True)
def _rejection_kernel(
    interest,  # [N, D]
    pool,  # [N, 2 P] uniforms: (group and item, acceptance) per proposal
    reserve,  # [N, H] uniforms for the exact fallback
    weight,  # affinity_weight
    anchors,  # [C, D]
    shell_category,  # [S]
    shell_low,  # [S]
    shell_high,  # [S]
    group_shell,  # [G]
    group_top,  # [G]
    group_weight,  # [G]
    starts,  # [G + 1]
    order,  # [n_items]
    items,  # [n_items, D + 1] embedding and utility, in `order`
    history,  # [N, H] int64 out
    copy_rows,  # bool: also copy each drawn item's row out
    embeddings,  # [N, H, D] out (with copy_rows)
    payload,  # [E, N, H] out (with copy_rows)
):
    n_users, history_len = history.shape
    n_categories, dim = anchors.shape
    n_shells, n_groups = len(shell_low), len(group_top)
    n_proposals = pool.shape[1] // 2
    n_items = len(order)
    margin = _BOUND_MARGIN * (1.0 + abs(weight))
    angle = np.empty(n_categories)
    bound = np.empty(n_shells)
    factor = np.empty(n_shells)
    cumulative = np.empty(n_groups)
    rows = np.empty(PROPOSAL_BATCH, dtype=np.int64)
    groups = np.empty(PROPOSAL_BATCH, dtype=np.int64)
    dots = np.empty(PROPOSAL_BATCH)
    proposals = 0
    accepted = 0
    fallbacks = 0
    for n in range(n_users):
        # The proposal: each shell's bound on weight * affinity, then the CDF over groups.
        for c in range(n_categories):
            dot = 0.0
            for d in range(dim):
                dot += interest[n, d] * anchors[c, d]
            angle[c] = math.acos(min(1.0, max(-1.0, dot)))
        top = -np.inf
        for s in range(n_shells):
            phi = angle[shell_category[s]]
            if weight >= 0.0:
                closest = max(0.0, phi - shell_high[s], shell_low[s] - phi)
                bound[s] = weight * math.cos(closest) + margin
            else:
                bound[s] = weight * math.cos(min(math.pi, phi + shell_high[s])) + margin
            top = max(top, bound[s])
        for s in range(n_shells):
            factor[s] = math.exp(bound[s] - top)
        total = 0.0
        for g in range(n_groups):
            total += group_weight[g] * factor[group_shell[g]]
            cumulative[g] = total
        # Proposals: a group by its mass, an item uniformly within it; accept with p / q. They go in
        # batches: first every proposal's row, then the rows' dot products, so that the rows' memory
        # reads overlap instead of each waiting behind a group search; then the acceptance tests in
        # order. Rows read past the proposal that fills the history are never used, so the draws and
        # the proposal count are those of one proposal at a time.
        filled = 0
        proposal = 0
        while filled < history_len and proposal < n_proposals:
            batch = min(PROPOSAL_BATCH, n_proposals - proposal)
            for b in range(batch):
                v = pool[n, 2 * (proposal + b)] * total
                g = _first_above(cumulative, v)
                low = cumulative[g - 1] if g > 0 else 0.0
                width = cumulative[g] - low
                residual = (v - low) / width if width > 0.0 else 0.0  # uniform in [0, 1) given g
                size = starts[g + 1] - starts[g]
                rows[b] = starts[g] + min(int(residual * size), size - 1)
                groups[b] = g
            for b in range(batch):
                j = rows[b]
                dot = 0.0
                for d in range(dim):
                    dot += interest[n, d] * items[j, d]
                dots[b] = dot
            for b in range(batch):
                accept = pool[n, 2 * proposal + 1]
                proposal += 1
                g = groups[b]
                j = rows[b]
                if accept < math.exp(weight * dots[b] - bound[group_shell[g]] + items[j, dim] - group_top[g]):
                    history[n, filled] = order[j]
                    if copy_rows:
                        _copy_row(items, j, dim, embeddings, payload, n, filled)
                    filled += 1
                    if filled == history_len:
                        break
        proposals += proposal
        accepted += filled
        if filled < history_len:  # the pool ran out: the exact inverse CDF over the catalogue
            fallbacks += 1
            logits = np.empty(n_items)
            top = -np.inf
            for j in range(n_items):
                dot = 0.0
                for d in range(dim):
                    dot += interest[n, d] * items[j, d]
                logits[j] = weight * dot + items[j, dim]
                top = max(top, logits[j])
            total = 0.0
            for j in range(n_items):
                total += math.exp(logits[j] - top)
                logits[j] = total
            for h in range(filled, history_len):
                j = min(np.searchsorted(logits, reserve[n, h] * total, side="right"), n_items - 1)
                history[n, h] = order[j]
                if copy_rows:
                    _copy_row(items, j, dim, embeddings, payload, n, h)
    return proposals, accepted, fallbacks
