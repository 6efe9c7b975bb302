"""`WindowMinibatches`: uniform minibatches of logged steps whose states are rows of shared history
windows, gathered as tensors on the training device (the offline agents' sampler)."""

from __future__ import annotations

import numpy as np
import torch

from recsim_env.checks import check_integer
from recsim_env.errors import ArgumentError


class WindowMinibatches:
    """Minibatches of T logged steps over S shared history windows, as tensors on one device.

    Offline logs store each distinct history window once (`item_ids` [S, L], `feedback` [S, L, F],
    as `recsim_env.data.batching.history_windows` builds them) and give each step the row of its
    state. The windows move to the device once; a minibatch is then a gather by row.

    `sample` draws B = min(batch_size, T) step indices uniformly with replacement from one generator
    seeded with `seed`, so a trainer's sequence of minibatches is fixed by its seed.

    Args:
        item_ids: [S, L] int64 item windows (left-padded with the pad item N).
        feedback: [S, L, F] float32 feedback of the windows' items, as the network reads it.
        n_steps: T, the number of logged steps minibatches are drawn from.
        batch_size: the most steps per minibatch.
        seed: seed of the minibatch generator.
        device: where the windows and every returned tensor live.
    """

    def __init__(
        self,
        item_ids: np.ndarray,
        feedback: np.ndarray,
        *,
        n_steps: int,
        batch_size: int,
        seed: int,
        device: torch.device,
    ) -> None:
        self.n_steps = check_integer("n_steps", n_steps, low=0)
        self.batch_size = check_integer("batch_size", batch_size, low=1)
        if np.ndim(item_ids) != 2 or np.ndim(feedback) != 3 or np.shape(feedback)[:2] != np.shape(item_ids):
            raise ArgumentError(
                f"item_ids [S, L] and feedback [S, L, F] must share S and L, got shapes "
                f"{np.shape(item_ids)} and {np.shape(feedback)}"
            )
        self.device = device
        self.item_ids = self.tensor(item_ids, torch.int64)  # [S, L]
        self.feedback = self.tensor(feedback)  # [S, L, F]
        self.rng = np.random.default_rng(seed)

    def sample(self) -> np.ndarray:
        """[B] step indices in [0, T), drawn with replacement."""
        return self.rng.integers(0, self.n_steps, size=min(self.batch_size, self.n_steps))

    def windows(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The windows at `rows` [...] (window rows, e.g. the states of sampled steps): item ids [..., L]
        and feedback [..., L, F]."""
        rows = torch.as_tensor(rows, device=self.device)
        return self.item_ids[rows], self.feedback[rows]

    def tensor(self, array: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """`array` as a `dtype` tensor on the device (per-step columns: rewards, actions, returns).

        On the CPU the tensor shares a writable array's memory (nothing here writes to it); a read-only
        array (a pandas column under copy-on-write, a memory map) is copied, as torch cannot wrap it.
        """
        if isinstance(array, np.ndarray) and not array.flags.writeable:
            array = array.copy()
        return torch.as_tensor(array, dtype=dtype, device=self.device)
