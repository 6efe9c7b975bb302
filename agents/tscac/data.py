"""TSCAC's data: logged transitions (`Transitions`) and how they are built from world logs.

Transitions come from world logs per user in chronological order: s_t = the last L exposures before
step t (item ids and their feedback, left-padded with the pad id N, like `SeqRec-v0`'s observation),
a_t = the logged item, r_t = the step's feedback vector, s_{t+1}, done at the user's last logged step,
pi_b(a_t|s_t) = the logged `propensity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from agents.tscac.config import SIGNALS
from recsim_env.data.batching import history_windows
from recsim_env.errors import DataError


class Transitions(NamedTuple):
    """Logged transitions; s_t and s_{t+1} are rows of the shared state windows (`item_ids`, `feedback`)."""

    item_ids: np.ndarray  # [S, L] int64 state windows, left-padded with N
    feedback: np.ndarray  # [S, L, 6] float32 raw feedback of the window's items
    state: np.ndarray  # [T] int64 row of s_t
    next_state: np.ndarray  # [T] int64 row of s_{t+1}
    action: np.ndarray  # [T] int64 logged item
    reward: np.ndarray  # [T, 6] float32 raw feedback of the step, `SIGNALS` order
    done: np.ndarray  # [T] float32, 1 at a user's last logged step
    propensity: np.ndarray  # [T] float64 pi_b(a_t|s_t)
    n_items: int

    def __len__(self) -> int:
        return len(self.action)

    def observations(self, index: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The `SeqRec-v0`-style observations (`item_ids`, `feedback`) of the states s_t (all, or `index`)."""
        rows = self.state if index is None else self.state[index]
        return {"item_ids": self.item_ids[rows], "feedback": self.feedback[rows]}

    def behaviour_rates(self) -> dict[str, float]:
        """Per-step mean of each signal in the logs."""
        return {name: float(self.reward[:, j].mean()) for j, name in enumerate(SIGNALS)}


def transitions_from_logs(data, history_len: int) -> Transitions:
    """Transitions (see the module docstring) from world logs (a `LoggedInteractions` of one-item slates).

    Raises:
        DataError: a feedback signal or the `propensity` column is missing, or slates have several items.
    """
    frame = data.frame
    missing = [name for name in (*SIGNALS, "propensity") if name not in frame.columns]
    if missing:
        raise DataError(f"{data.name}: logs lack column(s) {missing}, needed for TSCAC's transitions")
    data.require_single_item_slates("TSCAC")
    windows = history_windows(data, history_len=history_len, feedback_columns=SIGNALS)
    feedback = frame[list(SIGNALS)].to_numpy(np.float32)
    done = np.zeros(len(frame), dtype=np.float32)
    users = frame["user_id"].to_numpy(np.int64)
    done[np.flatnonzero(np.r_[users[1:] != users[:-1], True])] = 1.0  # each user's last logged step
    return Transitions(
        item_ids=windows.item_ids,
        feedback=windows.feedback,
        state=windows.before,
        next_state=windows.after,
        action=frame["item_id"].to_numpy(np.int64),
        reward=feedback,
        done=done,
        propensity=frame["propensity"].to_numpy(np.float64),
        n_items=int(data.n_items),
    )


def _concatenate(pieces: Sequence[Transitions]) -> Transitions:
    offsets = np.cumsum([0] + [len(p.item_ids) for p in pieces[:-1]])
    return Transitions(
        item_ids=np.concatenate([p.item_ids for p in pieces]),
        feedback=np.concatenate([p.feedback for p in pieces]),
        state=np.concatenate([p.state + o for p, o in zip(pieces, offsets, strict=True)]),
        next_state=np.concatenate([p.next_state + o for p, o in zip(pieces, offsets, strict=True)]),
        action=np.concatenate([p.action for p in pieces]),
        reward=np.concatenate([p.reward for p in pieces]),
        done=np.concatenate([p.done for p in pieces]),
        propensity=np.concatenate([p.propensity for p in pieces]),
        n_items=pieces[0].n_items,
    )
