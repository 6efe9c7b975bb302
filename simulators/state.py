"""The hidden state of N simulated users: the users' side (`UserState`), what one response model carries
for them (`MemberState`), and both together for one simulator (`SimulatorState`). Mutated in place by
the simulators' `respond` and `end_session` (`simulators.simulator`, `simulators.ensemble`,
`simulators.simulator_set`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class UserState:
    """The users' side of the hidden state of N simulated users, whichever model reads them (mutated in
    place by `respond` and `end_session`)."""

    user_ids: np.ndarray  # [N] int64 index into the start pool
    items: np.ndarray  # [N, L] int64 history, left-padded with n_items
    inputs: np.ndarray  # [N, L, F + 1] float32 encoder inputs of the history
    pending_gap: np.ndarray  # [N] days since the last session, for the next exposure
    satiation: np.ndarray  # [N, D]
    gap_mean: np.ndarray  # [N] log-days mean of the return gap, from the last step
    gap_sigma: np.ndarray  # [N]
    user_features: np.ndarray  # [N, P] float32 encoded features of the logged user each row started from
    parameters: dict[str, np.ndarray]
    """Behaviour parameters per row (`simulators.behaviour.PARAMETERS`)."""

    _ARRAYS = (
        "user_ids",
        "items",
        "inputs",
        "pending_gap",
        "satiation",
        "gap_mean",
        "gap_sigma",
        "user_features",
    )

    def set_rows(self, rows: np.ndarray, other: UserState) -> None:
        """Overwrite users `rows` with the users of `other` (same order)."""
        for name in self._ARRAYS:
            getattr(self, name)[rows] = getattr(other, name)
        for name, values in self.parameters.items():
            values[rows] = other.parameters[name]


@dataclass
class MemberState:
    """What one response model carries for N users, from the history it has read.

    The per-event cache `events` is a ring over the window's L slots: the window's position j (0 the
    oldest exposure, L - 1 the newest) is in slot `(start + j) % L`, for every row. A step then writes
    its K new exposures over the K oldest slots and moves `start` on, instead of shifting every array
    (`write_new`, `move_on`); `window` gives the cache in window order.
    """

    beliefs: np.ndarray  # [N, W] float32 interest-filter states (W = 0 without a filter)
    events: tuple[np.ndarray, ...]  # `ResponseModel.embed_history` of the history: the encoder's
    # per-event cache, [N, L, ...] float32 arrays in ring order (empty: an encoder without `encode_last`,
    # which reads the history each step)
    start: int = 0

    def set_rows(self, rows: np.ndarray, other: MemberState) -> None:
        """Overwrite users `rows` with the users of `other` (same order)."""
        self.beliefs[rows] = other.beliefs
        for mine, theirs in zip(self.events, other.events, strict=True):
            shift = (self.start - other.start) % mine.shape[1]
            mine[rows] = np.roll(theirs, shift, axis=1) if shift else theirs

    def select(self, rows: np.ndarray | slice) -> MemberState:
        """Users `rows` (copies for an index array, views for a slice)."""
        return MemberState(self.beliefs[rows], tuple(e[rows] for e in self.events), self.start)

    def window(self) -> tuple[np.ndarray, ...]:
        """The cache in window order (copies), oldest exposure first."""
        return tuple(np.roll(e, -self.start, axis=1) if self.start else e.copy() for e in self.events)

    def write_new(self, rows: np.ndarray | slice, new_events: tuple[np.ndarray, ...]) -> None:
        """Write the `[n, K, ...]` cache of K new exposures of users `rows` over their K oldest slots
        (`move_on(K)` then makes them the newest: every row must be written before it)."""
        for e, new in zip(self.events, new_events, strict=True):
            length, k = e.shape[1], new.shape[1]
            if k >= length:  # the new exposures fill the window: the last L of them, in ring order
                e[rows] = np.roll(new[:, k - length :], (self.start + k) % length, axis=1)
            else:
                slots = (self.start + np.arange(k)) % length
                e[(rows, slots) if isinstance(rows, slice) else np.ix_(rows, slots)] = new

    def move_on(self, k: int) -> None:
        """After `write_new` of K exposures for every row: they become the window's newest."""
        if self.events:
            self.start = (self.start + k) % self.events[0].shape[1]

    def extend(self, new_events: tuple[np.ndarray, ...]) -> None:
        """Move every row's window on by the `[N, K, ...]` cache `new_events` of K new exposures."""
        if new_events:
            self.write_new(slice(None), new_events)
            self.move_on(new_events[0].shape[1])


@dataclass
class SimulatorState(UserState):
    """Hidden state of N users of one simulator: the users' side and what its model carries (for a
    simulator set, each row's own member's)."""

    carried: MemberState

    def set_rows(self, rows: np.ndarray, other: SimulatorState) -> None:
        super().set_rows(rows, other)
        self.carried.set_rows(rows, other.carried)
