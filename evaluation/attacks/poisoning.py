"""Data poisoning of logged interactions: fake user accounts injected to promote target items.

Threat model (docs/attacks.md): the attacker registers fake accounts, a `fraction` of the real user
count, and gives each a sequence of interactions; it knows the public catalogue and item popularity,
not the model. Five attack families:

- "random" (Lam & Riedl, WWW 2004): filler items drawn uniformly from the catalogue, the targets at
  random places.
- "popular" (bandwagon; Burke et al., 2005): filler items drawn in proportion to their popularity, so
  the fake users look like mainstream users, the targets at random places.
- "sequential" (target promotion with sequential patterns, in the spirit of the sequence attacks that
  LoRec, Zhang et al. SIGIR 2024, defends against, and of Huang et al., NDSS 2021, who place the target
  among items that co-occur with it): filler is a contiguous stretch of a real user's sequence, and
  each target event comes right after an *anchor*, one of the items real users consume most, so a
  next-item model learns "after an anchor comes the target"; anchors are what most real histories
  contain, which spreads the target to many of them.
- "insertion" (segment clone, in the spirit of the fake-sequence poisoning of sequential recommenders,
  e.g. Yue et al., "Black-box attacks on sequential recommenders via data-free model extraction",
  RecSys 2021, without their surrogate model): each fake user is a real user's whole sequence, kept intact, with a target event
  inserted after every k-th event and as the last event, k chosen so targets are `target_share` of the
  fake user's events. The contexts before each target are real users' contexts, those the model sees
  for real users at test time, so "after a history like this comes the target" transfers to them.
- "splice" (tail splice): each fake user is a chain of short stretches, each the *final* events of a
  different real user (one who never consumed a target), each stretch followed by a target event. A
  next-item model's state for a real user at test time is dominated by the user's latest items, so a
  target placed after the latest items of many different real users follows what real histories end
  with, and the attack covers many more real contexts per fake event than "insertion", whose contexts
  all come from one template user.

Every fake user is built on a real *template* user whose rows are cloned: timestamps, sessions, slate
positions, propensities and feedback, so the result is a well-formed `LoggedInteractions` for any log,
world logs included; only the items change. A target event gets the feedback of a real event a user
*liked* (drawn at random from the rows whose first feedback column is at or above its 90th percentile:
a 5-star rating in MovieLens, a click in a world log), as an attacker rating its target highly would;
filler events keep the template's own feedback. Session and slate ids are renumbered past the real
ones so no fake session or slate merges with a real one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsim_env.checks import check_choice, check_config_fields, check_integer, check_real, describe
from recsim_env.data import DataError, IdMap, LoggedInteractions
from recsim_env.errors import ArgumentError

ATTACK_KINDS = ("random", "popular", "sequential", "insertion", "splice")
LIKED_QUANTILE = 0.9
"""A target event's feedback is drawn from the rows whose first feedback column is at or above this
quantile of that column (the events real users liked)."""


@dataclass(frozen=True, kw_only=True)
class PoisonConfig:
    """What the attacker injects: how many fake users, which attack, which targets."""

    kind: str = "sequential"
    """Attack family: "random", "popular" (bandwagon), "sequential" (targets after popular anchors) or
    "insertion" (real users' sequences with targets inserted; the module docstring)."""
    fraction: float = 0.01
    """Fake users as a fraction of the real users, in (0, 1); at least one fake user is injected."""
    targets: tuple = ()
    """Target item tokens (raw ids as in the data file); each must be in the catalogue."""
    seed: int = 0
    """Seed of every random choice (templates, fillers, positions)."""
    target_share: float = 0.1
    """Fraction of each fake user's events that are target events (at least one). "sequential" puts them in
    alternate slots, each after an anchor, so 0.5 or more leaves no filler: anchors and targets only.
    "insertion" inserts a target after every k-th slot of the template, k = max(1, round((1 - s) / s)),
    and one at the end, keeping every template event; "splice" puts a target after every k filler slots."""
    max_events: int | None = None
    """Most events per fake user, targets included (None: the template user's length, plus the inserted
    targets for "insertion"); "splice" clones templates at least this long where there are enough."""
    anchor_pool: int = 50
    """"sequential": anchors are drawn, in proportion to popularity, from this many most-consumed items."""
    tail_skip: int = 2
    """"splice": a stretch ends this many events before its donor's last one (2: a leave-one-out split's
    validation and test events, which come after the training logs the attacker reads and poisons)."""

    def __post_init__(self) -> None:
        check_config_fields(self, ("kind",), check_choice, choices=ATTACK_KINDS)
        check_config_fields(self, ("fraction",), check_real, low=0.0, high=1.0, low_open=True, high_open=True)
        check_config_fields(self, ("target_share",), check_real, low=0.0, high=1.0, low_open=True)
        check_config_fields(self, ("seed",), check_integer, low=0)
        check_config_fields(self, ("anchor_pool",), check_integer, low=1)
        check_config_fields(self, ("tail_skip",), check_integer, low=0)
        check_config_fields(self, ("max_events",), check_integer, low=2, optional=True)
        if isinstance(self.targets, str | bytes) or not isinstance(self.targets, tuple | list):
            raise ArgumentError(
                f"PoisonConfig.targets must be a tuple of item tokens, got {describe(self.targets)}"
            )
        object.__setattr__(self, "targets", tuple(self.targets))


@dataclass(frozen=True)
class PoisonedLogs:
    """The poisoned logs and which of their users are fake (what the attacker knows, not the defender)."""

    data: LoggedInteractions
    """Real users keep their indices 0..n_real-1; fake users are appended after them."""
    fake_users: np.ndarray
    """`[n_users of data]` bool, True for the injected users."""
    target_items: np.ndarray
    """int64 item indices of the targets."""

    @property
    def n_fake(self) -> int:
        return int(self.fake_users.sum())

    @property
    def real_users(self) -> np.ndarray:
        """int64 indices of the real users."""
        return np.flatnonzero(~self.fake_users)


def target_indices(data: LoggedInteractions, tokens) -> np.ndarray:
    """int64 item indices of the raw item `tokens` of `data` (numeric strings match integer ids).

    Raises:
        ArgumentError: naming the unknown token(s), or when no token is given.
    """
    tokens = list(tokens)
    if not tokens:
        raise ArgumentError("targets: give at least one target item (a raw item id of the data)")
    if data.item_ids.tokens.dtype == np.int64:
        converted = []
        for token in tokens:
            if isinstance(token, str) and token.strip().lstrip("-").isdigit():
                token = int(token.strip())
            converted.append(token)
        tokens = converted
    indices = []
    for token in tokens:
        try:
            indices.append(int(data.item_ids.to_index(np.asarray([token], dtype=object))[0]))
        except DataError:
            raise ArgumentError(
                f"targets: item {describe(token)} is not in the item catalogue of {data.name!r}"
            ) from None
    indices = np.asarray(indices, dtype=np.int64)
    if len(set(indices.tolist())) != len(indices):
        raise ArgumentError(f"targets: the same item is given twice ({tokens})")
    return indices.astype(np.int64)


def fake_user_tokens(user_ids: IdMap, n_fake: int) -> np.ndarray:
    """`n_fake` user tokens that collide with none of `user_ids`: integers past the largest integer id, or
    "fake-<i>" strings (with a suffix if a real user already has that name)."""
    tokens = user_ids.tokens
    if tokens.dtype == np.int64:
        start = int(tokens.max()) + 1 if len(tokens) else 0
        return np.arange(start, start + n_fake, dtype=np.int64)
    taken = set(tokens.tolist())
    suffix = ""
    while any(f"fake{suffix}-{i}" in taken for i in range(n_fake)):
        suffix += "x"
    return np.array([f"fake{suffix}-{i}" for i in range(n_fake)], dtype=object)


def liked_rows(data: LoggedInteractions) -> np.ndarray:
    """Row indices of the events real users liked (see `LIKED_QUANTILE`); every row when there is no
    feedback column."""
    if not data.feedback_columns:
        return np.arange(data.n_interactions)
    first = data.frame[data.feedback_columns[0]].to_numpy(dtype=np.float64)
    return np.flatnonzero(first >= np.quantile(first, LIKED_QUANTILE))


@dataclass(frozen=True)
class _ItemPools:
    """The item sets a fake user's items are drawn from, computed once per `poison` call."""

    targets: np.ndarray
    """int64 item indices of the targets."""
    non_targets: np.ndarray
    """Every other item index, ascending."""
    consumed: np.ndarray
    """The non-targets some real user consumed (all non-targets when none was)."""
    anchors: np.ndarray
    """"sequential": the `anchor_pool` most consumed of `consumed`."""
    counts: np.ndarray
    """`[N]` float64 consumption count of each item in the real logs."""


def _slots(template: pd.DataFrame) -> np.ndarray:
    """`[n]` slot number of each of a template's `n` rows: rows of one slate share a slot (two target events
    never share a slate), else every row is its own slot."""
    if "slate_id" not in template.columns:
        return np.arange(len(template))
    slate = template["slate_id"].to_numpy()
    return np.r_[0, np.cumsum(slate[1:] != slate[:-1])]


def _target_positions(
    slots: np.ndarray, n_targets: int, rng: np.random.Generator, *, skip_first: bool
) -> np.ndarray:
    """Sorted row positions of the target events: one row in each of `n_targets` distinct random slots
    (not the first slot when `skip_first`, which leaves room for an anchor before each target)."""
    n_slots = int(slots[-1]) + 1
    if skip_first:
        # Odd slots only, so no target's anchor (the row before it) is another target.
        candidates = np.arange(1, n_slots, 2)
    else:
        candidates = np.arange(n_slots)
    chosen = np.sort(rng.choice(candidates, size=min(n_targets, len(candidates)), replace=False))
    return np.searchsorted(slots, chosen, side="left").astype(np.int64)  # the first row of each slot


def _draw_distinct(
    pool: np.ndarray, k: int, rng: np.random.Generator, p: np.ndarray | None = None
) -> np.ndarray:
    """`k` distinct items of `pool` (weights `p`), or all of `pool` when it is smaller."""
    k = min(k, len(pool))
    return rng.choice(pool, size=k, replace=False, p=p)


def _real_filler(
    sequences, donors: np.ndarray, k: int, banned: set[int], rng: np.random.Generator
) -> np.ndarray:
    """`k` distinct items read in order from contiguous stretches of real users' sequences (random donors,
    random starting points), skipping `banned` items and repeats."""
    picked: list[int] = []
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    seen = set(banned)
    for _ in range(64):
        donor = int(rng.choice(donors))
        items = sequences.item_ids[sequences.offsets[donor] : sequences.offsets[donor + 1]]
        start = int(rng.integers(len(items)))
        for item in np.r_[items[start:], items[:start]].tolist():
            if item not in seen:
                seen.add(item)
                picked.append(item)
                if len(picked) == k:
                    return np.asarray(picked, dtype=np.int64)
    return np.asarray(picked, dtype=np.int64)  # a tiny catalogue: fewer distinct items than asked


def insertion_points(slots: np.ndarray, target_share: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted row positions after which "insertion" puts a target: the last row of every k-th slot (from
    a random phase in [0, k)) and the last row, k = max(1, round((1 - share) / share)), so targets are
    about `target_share` of the events once inserted. A slate is never split (targets follow whole slots)."""
    n_slots = int(slots[-1]) + 1
    slot_ends = np.r_[np.flatnonzero(slots[1:] != slots[:-1]), len(slots) - 1]  # last row of each slot
    k = max(1, int(round((1.0 - target_share) / target_share)))
    chosen = np.arange(int(rng.integers(k)), n_slots, k)
    return np.union1d(slot_ends[chosen[chosen < n_slots - 1]], [len(slots) - 1]).astype(np.int64)


def _insertion_block(
    template: pd.DataFrame, slots: np.ndarray, targets: np.ndarray, share: float, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The `template` rows (slot numbers `slots`) with a target row inserted after each of
    `insertion_points(slots, share, rng)`; a target row copies the row it follows (timestamp, session,
    slate fields), then gets its item.

    Returns:
        The block, its target row positions, and its `[len(block)]` slot numbers (each target row a slot
        of its own).
    """
    after = insertion_points(slots, share, rng)
    # A copy of row i right after row i.
    order = np.sort(np.r_[np.arange(len(template)), after], kind="stable")
    block = template.iloc[order].copy()
    is_target = np.r_[False, order[1:] == order[:-1]]
    positions = np.flatnonzero(is_target)
    items = template["item_id"].to_numpy()[order].astype(np.int64)
    items[positions] = rng.choice(targets, size=len(positions), replace=True)
    block["item_id"] = items
    new_slots = np.r_[0, np.cumsum((slots[order][1:] != slots[order][:-1]) | is_target[1:] | is_target[:-1])]
    return block, positions, new_slots


class _DonorQueue:
    """Real users whose final events "splice" copies, handed out in a fixed random order (cycling)."""

    def __init__(self, users: np.ndarray) -> None:
        self.users = np.asarray(users, dtype=np.int64)
        self.next = 0

    def pop(self) -> int:
        user = int(self.users[self.next % len(self.users)])
        self.next += 1
        return user


def _splice_block(
    template: pd.DataFrame,
    slots: np.ndarray,
    targets: np.ndarray,
    share: float,
    rng: np.random.Generator,
    sequences,
    donors: _DonorQueue,
    tail_skip: int,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The `template` rows (slot numbers `slots`) with every item replaced: a target in slot k, 2k + 1,
    3k + 2, ... (k = max(1, round((1 - share) / share)); the last slot when there are at most k slots),
    and before each target the latest distinct events of the next donor user that precede its last
    `tail_skip` events, in order (the fake user never repeats an item).

    Returns:
        The block, its target row positions, and its `[n]` slot numbers.
    """
    n = len(template)
    k = max(1, int(round((1.0 - share) / share)))
    n_slots = int(slots[-1]) + 1
    target_slots = np.arange(k, n_slots, k + 1)
    if target_slots.size == 0:  # shorter than one stretch: the last slot is the one target
        target_slots = np.array([n_slots - 1])
    positions = np.searchsorted(slots, target_slots, side="left").astype(np.int64)
    items = np.full(n, -1, dtype=np.int64)
    items[positions] = rng.choice(targets, size=len(positions), replace=True)
    used = set(targets.tolist())
    bounds = np.r_[0, positions + 1]
    ends = np.r_[positions, n]
    for lo, hi in zip(bounds.tolist(), ends.tolist(), strict=True):
        need = hi - lo
        stretch: list[int] = []
        for _ in range(64):  # donors whose final items are all taken are skipped
            if len(stretch) == need:
                break
            donor = donors.pop()
            history = sequences.item_ids[sequences.offsets[donor] : sequences.offsets[donor + 1] - tail_skip]
            fresh = [item for item in history[::-1].tolist() if item not in used][: need - len(stretch)]
            used.update(fresh)
            stretch = fresh[::-1] + stretch
        if len(stretch) < need:  # a tiny catalogue: repeat what there is
            spare = stretch or [int(np.setdiff1d(np.arange(int(targets.max()) + 2), targets)[0])]
            stretch = np.resize(np.asarray(spare, dtype=np.int64), need).tolist()
        items[lo:hi] = stretch
    block = template.copy()
    block["item_id"] = items
    return block, positions, slots


def _replacement_block(
    template: pd.DataFrame,
    slots: np.ndarray,
    pools: _ItemPools,
    config: PoisonConfig,
    rng: np.random.Generator,
    sequences,
    donors: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The `template` rows (slot numbers `slots`) with every item replaced: targets in random slots (after
    anchors for "sequential") and filler of `config.kind` elsewhere ("sequential" reads it from the users
    `donors`).

    Returns:
        The block, its target row positions, and its `[n]` slot numbers.
    """
    n = len(template)
    block = template.copy()
    n_targets = max(1, int(round(config.target_share * n)))
    sequential = config.kind == "sequential"
    positions = _target_positions(slots, n_targets, rng, skip_first=sequential)
    items = np.full(n, -1, dtype=np.int64)
    items[positions] = rng.choice(pools.targets, size=len(positions), replace=True)
    if sequential:
        # The anchor is the row just before each target (the previous slot's last row).
        anchor_rows = positions - 1
        weights = pools.counts[pools.anchors] + 1.0
        weights /= weights.sum()
        replace = len(pools.anchors) < len(anchor_rows)  # more targets than anchors: anchors repeat
        items[anchor_rows] = rng.choice(pools.anchors, size=len(anchor_rows), replace=replace, p=weights)
    free = np.flatnonzero(items < 0)
    banned = set(pools.targets.tolist()) | set(items[items >= 0].tolist())
    if config.kind == "random":
        pool = np.setdiff1d(pools.non_targets, np.fromiter(banned, dtype=np.int64))
        filler = _draw_distinct(pool, len(free), rng)
    elif config.kind == "popular":
        pool = np.setdiff1d(pools.consumed, np.fromiter(banned, dtype=np.int64))
        filler = _draw_distinct(pool, len(free), rng, pools.counts[pool] / pools.counts[pool].sum())
    else:
        filler = _real_filler(sequences, donors, len(free), banned, rng)
    if len(filler) < len(free):  # a catalogue smaller than the sequence: repeat filler items
        filler = np.resize(filler if len(filler) else pools.non_targets[:1], len(free))
    items[free] = filler
    block["item_id"] = items
    return block, positions, slots


def poison(data: LoggedInteractions, config: PoisonConfig) -> PoisonedLogs:
    """Inject `config.fraction` fake users built by `config.kind` into `data` (see the module docstring).

    `data` is not modified; the result has every real user at the same index with the same rows, the
    same catalogue and item table, and the fake users appended after the real ones.

    Raises:
        ArgumentError: a bad config, or a target that is not in the catalogue.
        DataError: a log with no user of at least two events (nothing to clone).
    """
    if not isinstance(data, LoggedInteractions):
        raise ArgumentError(f"data: expected LoggedInteractions, got {type(data).__name__}")
    if not isinstance(config, PoisonConfig):
        raise ArgumentError(f"config: expected PoisonConfig, got {type(config).__name__}")
    targets = target_indices(data, config.targets)
    rng = np.random.default_rng(config.seed)
    frame = data.frame
    sequences = data.sequences()
    lengths = sequences.lengths()
    templates_pool = np.flatnonzero(lengths >= 3)
    if templates_pool.size == 0:
        templates_pool = np.flatnonzero(lengths >= 2)
    if templates_pool.size == 0:
        raise DataError(f"{data.name}: no user has the two events a fake user is cloned from")
    n_real = data.n_users
    n_fake = max(1, int(round(config.fraction * n_real)))

    counts = np.bincount(sequences.item_ids, minlength=data.n_items).astype(np.float64)
    non_targets = np.setdiff1d(np.arange(data.n_items), targets)
    consumed = non_targets[counts[non_targets] > 0]
    if consumed.size == 0:
        consumed = non_targets
    anchors = consumed[np.argsort(-counts[consumed], kind="stable")[: config.anchor_pool]]
    pools = _ItemPools(
        targets=targets, non_targets=non_targets, consumed=consumed, anchors=anchors, counts=counts
    )
    liked = liked_rows(data)
    feedback_cols = list(data.feedback_columns)

    blocks: list[pd.DataFrame] = []
    pool = templates_pool
    if config.kind in ("insertion", "splice"):
        # Real users who never consumed a target: each fake user brings contexts of its own, those of
        # the users the attack is after.
        holds = np.bincount(
            np.repeat(np.arange(n_real), lengths),
            weights=np.isin(sequences.item_ids, targets),
            minlength=n_real,
        )
        untouched = templates_pool[holds[templates_pool] == 0]
    if config.kind == "insertion":
        pool = untouched if len(untouched) >= n_fake else templates_pool
    if config.kind == "splice":
        # Stretches come from users who never consumed a target, each user used once where possible.
        tail_donors = _DonorQueue(rng.permutation(untouched if len(untouched) else templates_pool))
        if config.max_events is not None:
            long_enough = templates_pool[lengths[templates_pool] >= config.max_events]
            pool = long_enough if len(long_enough) >= n_fake else templates_pool
    distinct = config.kind in ("insertion", "splice") and len(pool) >= n_fake
    templates = rng.choice(pool, size=n_fake, replace=not distinct)
    next_session = int(frame["session_id"].max()) + 1 if "session_id" in frame.columns else 0
    next_slate = int(frame["slate_id"].max()) + 1 if "slate_id" in frame.columns else 0
    for fake, template in enumerate(templates):
        lo = int(sequences.offsets[template])
        n = (
            int(lengths[template])
            if config.max_events is None
            else min(int(lengths[template]), config.max_events)
        )
        rows = frame.iloc[lo : lo + n]
        if config.kind == "insertion":
            block, positions, slots = _insertion_block(rows, _slots(rows), targets, config.target_share, rng)
            if config.max_events is not None and len(block) > config.max_events:
                # Whole slots only, so the cap never splits a slate.
                keep = int(np.searchsorted(slots, slots[config.max_events], side="left"))
                block, positions, slots = block.iloc[:keep], positions[positions < keep], slots[:keep]
        elif config.kind == "splice":
            block, positions, slots = _splice_block(
                rows,
                _slots(rows),
                targets,
                config.target_share,
                rng,
                sequences,
                tail_donors,
                config.tail_skip,
            )
        else:
            block, positions, slots = _replacement_block(
                rows, _slots(rows), pools, config, rng, sequences, templates_pool
            )
        block["user_id"] = n_real + fake
        if feedback_cols:
            donors = rng.choice(liked, size=len(positions), replace=True)
            block.iloc[positions, [block.columns.get_loc(c) for c in feedback_cols]] = frame[
                feedback_cols
            ].to_numpy()[donors]
        if "session_id" in block.columns:
            _, session_rank = np.unique(block["session_id"].to_numpy(), return_inverse=True)
            block["session_id"] = next_session + session_rank
            next_session += int(session_rank.max()) + 1
        if "slate_id" in block.columns:
            block["slate_id"] = next_slate + slots
            next_slate += int(slots[-1]) + 1
        blocks.append(block)

    poisoned_frame = pd.concat([frame, *blocks], ignore_index=True)
    poisoned_frame = poisoned_frame.astype(frame.dtypes.to_dict())
    user_ids = IdMap(np.concatenate([data.user_ids.tokens, fake_user_tokens(data.user_ids, n_fake)]))
    users = data.users
    if users is not None:
        # A fake account's profile is its template's (an attacker fills in a plausible profile).
        fake_profiles = users.iloc[templates].copy()
        fake_profiles.index = pd.RangeIndex(n_real, n_real + n_fake, name=users.index.name)
        users = pd.concat([users, fake_profiles])
    poisoned = LoggedInteractions(
        poisoned_frame,
        user_ids=user_ids,
        item_ids=data.item_ids,
        feedback_columns=data.feedback_columns,
        items=None if data.items is None else data.items.copy(),
        users=users,
        name=f"{data.name}+{config.kind}-poison",
    )
    fake_users = np.zeros(n_real + n_fake, dtype=bool)
    fake_users[n_real:] = True
    return PoisonedLogs(data=poisoned, fake_users=fake_users, target_items=targets)
