"""How a learned simulator computes a step over N users: blocks of rows on parallel threads, and the
allocator policy. Neither changes what a step returns.

* **Row blocks.** The model's work for N users is split into up to `threads` blocks of rows, each run on
  its own thread with one torch thread (torch releases the GIL inside its kernels), then joined; the
  rest of a step (sampling, the env's bookkeeping) stays on the calling thread. Every block but the
  last holds a multiple of `BLOCK_ALIGN` rows, so that each element keeps its place relative to the
  kernels' vector loops: ATen's elementwise loops handle two vectors per iteration and the remainder
  in scalar code, whose `exp` / `sigmoid` round differently, so a boundary elsewhere changes the last
  bits of a few rows. The row-wise kernels a step uses (linear maps, layer norm, attention, small
  matrix products) give each row the same bits whatever rows share its batch (checked on this
  project's CPUs by `benchmarks/simulator_behaviour_hash.py` and `tests/simulators/test_stepping.py`),
  so the blocks' outputs are the whole batch's on one torch thread.
* **Freed memory.** A step allocates some tens of MB of temporaries and frees them; glibc's default
  policy hands the top of the heap back to the OS after each step and takes it again on the next, so
  that every step pays for thousands of fresh (zeroed) pages. `keep_freed_memory` makes glibc keep up
  to `KEPT_FREE_BYTES` of freed memory for reuse (`mallopt`; nothing on other C libraries). This is
  process-wide: memory a process frees stays mapped, up to that much.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager
from typing import TypeVar

import torch

from recsim_env.errors import ArgumentError

BLOCK_ALIGN = 64
"""Rows per alignment unit of a block (a multiple of two vectors of any CPU's widest float loop)."""

MIN_BLOCK_ROWS = 256
"""Fewest rows worth a thread of their own: below it a block costs more in dispatch than it saves."""

THREADS_VARIABLE = "SEQREC_SIMULATOR_THREADS"
"""Environment variable that sets the default number of step threads."""

KEEP_MEMORY_VARIABLE = "SEQREC_SIMULATOR_KEEP_FREED_MEMORY"
"""Environment variable: "0" makes `keep_freed_memory` leave the allocator's policy alone."""

KEPT_FREE_BYTES = 256 * 2**20
"""Freed memory glibc keeps at the top of the heap (`M_TRIM_THRESHOLD`) after `keep_freed_memory`."""

_MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's own ceiling for its adaptive threshold
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_pool_workers = 0
_pool_lock = threading.Lock()
_memory_kept: bool | None = None  # None: not tried yet in this process


def default_threads() -> int:
    """`SEQREC_SIMULATOR_THREADS` if set, else 1: on the 2-core machine two step threads were slower than
    one (benchmarks/RESULTS.md, "Learned-simulator step: cached attention"), since most of a step is
    Python between short kernels, which holds the GIL.

    Raises:
        ArgumentError: if the variable is not a positive integer.
    """
    value = os.environ.get(THREADS_VARIABLE)
    if value is not None:
        if not value.strip().isdigit() or int(value) < 1:
            raise ArgumentError(f"{THREADS_VARIABLE} must be a positive integer, got {value!r}")
        return int(value)
    return 1


def check_threads(threads: int | None) -> int | None:
    """`threads` (None: the default) as given, or an `ArgumentError` naming the argument."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ArgumentError(f"argument 'threads' must be None or an integer >= 1, got {threads!r}")
    return threads


def row_blocks(n: int, threads: int) -> list[slice]:
    """Rows `0..n` in at most `threads` consecutive blocks of near-equal size, each but the last a
    multiple of `BLOCK_ALIGN` rows, as many as `n` holds `MIN_BLOCK_ROWS` (one block: `[slice(0, n)]`)."""
    count = max(1, min(threads, n // MIN_BLOCK_ROWS))
    bounds = [0]
    for k in range(1, count):
        bounds.append(round(k * n / count / BLOCK_ALIGN) * BLOCK_ALIGN)
    bounds.append(n)
    return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]


def _reset_pool() -> None:
    global _pool, _pool_workers
    _pool, _pool_workers = None, 0  # a forked child has none of the parent's threads


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_pool)


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is None or _pool_workers < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            # Workers run blocks only: one torch thread each, for good.
            _pool = ThreadPoolExecutor(
                workers, "simulator-step", initializer=torch.set_num_threads, initargs=(1,)
            )
            _pool_workers = workers
        return _pool


def _in_inference(compute: Callable[[slice], T], rows: slice) -> T:
    with torch.inference_mode():
        return compute(rows)


def map_blocks(compute: Callable[[slice], T], n: int, threads: int) -> list[T]:
    """`compute(rows)` for each of `row_blocks(n, threads)`, in order. With one block it runs as called;
    with more, the first runs on the calling thread and the others on a shared pool of worker threads,
    every one with a single torch thread (the blocks are the parallelism; torch's own threads would wait
    on each other for cores). The calling thread's torch threads are restored afterwards."""
    blocks = row_blocks(n, threads)
    if len(blocks) == 1:
        return [compute(blocks[0])]
    with torch_threads(1):
        pending = [_executor(len(blocks) - 1).submit(_in_inference, compute, rows) for rows in blocks[1:]]
        try:
            first = _in_inference(compute, blocks[0])
        finally:
            wait(pending)  # no block may still run once this returns or raises
        return [first, *(future.result() for future in pending)]


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with `threads` torch threads (the calling thread's setting restored after)."""
    previous = torch.get_num_threads()
    if previous != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if previous != threads:
            torch.set_num_threads(previous)


def step_context() -> AbstractContextManager[None]:
    """What a simulator's step runs in: one torch thread (the step threads are the parallelism; torch's
    own threads would spin waiting for the cores the blocks use, and would make the outputs depend on
    their number)."""
    return torch_threads(1)


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (up to `KEPT_FREE_BYTES` at the top of the heap, blocks
    under 32 MB from the heap rather than fresh mappings), once per process; True if it applies (glibc,
    and `SEQREC_SIMULATOR_KEEP_FREED_MEMORY` is not "0")."""
    global _memory_kept
    if _memory_kept is not None:
        return _memory_kept
    if os.environ.get(KEEP_MEMORY_VARIABLE, "").strip() == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt: not glibc
        _memory_kept = False
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _memory_kept = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, KEPT_FREE_BYTES)
    )
    return _memory_kept
