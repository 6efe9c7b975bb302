"""WindowMinibatches (agents/minibatches.py): seeded draws, gathers by window row, read-only inputs, bad shapes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from agents.minibatches import WindowMinibatches
from recsim_env.errors import ArgumentError


def _windows(s: int = 5, length: int = 3, f: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 9, (s, length)), rng.random((s, length, f), dtype=np.float32)


def _batches(n_steps: int = 40, batch_size: int = 8, seed: int = 3, **arrays) -> WindowMinibatches:
    item_ids, feedback = _windows()
    arrays = {"item_ids": item_ids, "feedback": feedback} | arrays
    return WindowMinibatches(
        **arrays, n_steps=n_steps, batch_size=batch_size, seed=seed, device=torch.device("cpu")
    )


def test_samples_are_the_seeded_generators_uniform_draws_of_at_most_batch_size_steps():
    batches = _batches(seed=3)
    draws = [batches.sample() for _ in range(3)]
    expected = np.random.default_rng(3)
    for drawn in draws:
        np.testing.assert_array_equal(drawn, expected.integers(0, 40, size=8))
    assert not np.array_equal(draws[0], draws[1])
    again = _batches(seed=3)
    np.testing.assert_array_equal(again.sample(), draws[0])
    assert len(_batches(n_steps=5, batch_size=8).sample()) == 5  # B = min(batch_size, T)


def test_windows_gather_the_rows_of_the_shared_windows():
    item_ids, feedback = _windows()
    batches = _batches()
    rows = np.array([[4, 0], [0, 2]])
    items, fb = batches.windows(rows)
    assert items.shape == (2, 2, 3) and fb.shape == (2, 2, 3, 2)
    np.testing.assert_array_equal(items.numpy(), item_ids[rows])
    np.testing.assert_array_equal(fb.numpy(), feedback[rows])
    assert items.dtype == torch.int64 and fb.dtype == torch.float32
    assert batches.tensor(np.array([1, 2]), torch.long).dtype == torch.int64
    assert batches.tensor(np.array([0.5])).dtype == torch.float32


def test_read_only_arrays_are_copied_not_wrapped():
    item_ids, feedback = _windows()
    item_ids.flags.writeable = False
    action = np.arange(4)
    action.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it wraps a non-writable array
        batches = _batches(item_ids=item_ids)
        np.testing.assert_array_equal(batches.tensor(action, torch.long).numpy(), action)
    np.testing.assert_array_equal(batches.item_ids.numpy(), item_ids)


def test_bad_arguments_are_named():
    item_ids, feedback = _windows()
    with pytest.raises(ArgumentError, match="feedback"):
        _batches(feedback=feedback[:, :2])
    with pytest.raises(ArgumentError, match="batch_size"):
        _batches(batch_size=0)
    with pytest.raises(ArgumentError, match="n_steps"):
        _batches(n_steps=-1)
