"""The pieces of data-parallel training on Ray Train that encoders and learned simulators share.

`recsim_env.encoders.distributed` (encoders) and `simulators.distributed` (learned simulators) run their
single-process loops on `N` Ray Train workers with these pieces: users sharded by `user % N == rank`
(`shard_rows`), a global batch split among the workers in proportion to their windows
(`shard_batch_bounds`), each worker's loss scaled by its share of the step's targets and the gradients
summed in one all-reduce (`backward_share`, `all_reduce_gradients`), the driver's Ray session
(`ray_session`) and the Ray Train run that brings worker 0's checkpoint back (`run_workers`).

Importing this module imports torch but not ray (the functions that need ray import it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsim_env.ray_address import check_ray_address

LOGS_DATASET = "logs"
"""The name of the logs dataset handed to the Ray Train workers."""
WORKER_SEED_STRIDE = 2**32
"""Worker `r` seeds its generators with `seed + r * WORKER_SEED_STRIDE` (worker 0 with `seed` itself)."""
READ_BATCH_ROWS = 2**16
"""Rows per batch a worker reads from the logs dataset while keeping its users' rows."""


def worker_seed(seed: int, rank: int) -> int:
    """The seed of worker `rank`'s generators: `seed` for worker 0 (the single-process streams)."""
    return seed + rank * WORKER_SEED_STRIDE


def worker_batches() -> tuple[int, int, Iterable[dict[str, Any]]]:
    """Inside a Ray Train worker: its rank, the number of workers, and the logs dataset's row batches
    (`LOGS_DATASET`, `READ_BATCH_ROWS` rows each, numpy columns) for `shard_rows` to keep its users from."""
    import ray.train

    context = ray.train.get_context()
    shard = ray.train.get_dataset_shard(LOGS_DATASET)
    batches = shard.iter_batches(batch_size=READ_BATCH_ROWS, batch_format="numpy")
    return context.get_world_rank(), context.get_world_size(), batches


def shard_rows(
    batches: Iterable[dict[str, Any]], *, rank: int, world_size: int, columns: Sequence[str], user_column: str
) -> dict[str, np.ndarray] | None:
    """The rows whose `user_column` is `u` with `u % world_size == rank`, in the batches' order.

    Args:
        batches: dicts of numpy columns (`DataIterator.iter_batches(batch_format="numpy")`).
        rank, world_size: this worker and the number of workers.
        columns: the columns to keep (`user_column` among them).
        user_column: the column of user indices the rows are sharded by.

    Returns:
        Each column's kept rows, or None when there were no batches at all.
    """
    kept: dict[str, list[np.ndarray]] = {col: [] for col in columns}
    for batch in batches:
        mine = np.asarray(batch[user_column]) % world_size == rank
        for col in columns:
            kept[col].append(np.asarray(batch[col])[mine])
    if not kept[user_column]:
        return None
    return {col: np.concatenate(parts) for col, parts in kept.items()}


def shard_batch_bounds(
    step: int, n_steps: int, batch_size: int, n_local: int, n_total: int
) -> tuple[int, int]:
    """Rows `[lo, hi)` of this worker's shuffled windows in global step `step`.

    An epoch has `n_steps = ceil(n_total / batch_size)` steps; this worker, holding `n_local` of the
    `n_total` windows, takes rows `floor(step * batch_size * n_local / n_total)` up to the next step's
    bound (its last step takes the rest): each window once an epoch, and a step's windows over all workers
    number `batch_size` give or take one per worker. With one worker (`n_local == n_total`) these are the
    single-process batches `[step * B, (step + 1) * B)`.
    """
    lo = step * batch_size * n_local // n_total
    hi = n_local if step == n_steps - 1 else (step + 1) * batch_size * n_local // n_total
    return lo, hi


def global_steps(n_local: int, batch_size: int, world_size: int) -> tuple[int, int, list[int]]:
    """`(n_steps, n_total, every worker's n_local)` of an epoch over all workers' windows.

    Raises:
        ValueError: a worker would get an empty batch (`batch_size * n_local < n_total` for some worker).
    """
    shard_sizes = gathered(n_local, world_size)
    n_total = sum(shard_sizes)
    if any(batch_size * n < n_total for n in shard_sizes):
        raise ValueError(
            f"batch_size={batch_size} leaves a worker an empty batch: the workers hold "
            f"{shard_sizes} training windows; use a larger batch or fewer workers"
        )
    return -(-n_total // batch_size), n_total, shard_sizes


def backward_share(loss: torch.Tensor, n_targets: float, device: torch.device) -> float:
    """Backpropagate this worker's share of the global batch's mean loss: `loss * n_r / n`, with `n_r`
    this worker's target positions (or their total weight) and `n` the sum over the workers; returns the share.

    With `all_reduce_gradients` after it, the gradient is that of the mean loss over every target of the
    global batch. With one worker the share is exactly 1.0 (the single-process gradient, bit for bit).
    """
    step_targets = summed(n_targets, device)
    share = n_targets / step_targets if step_targets else 1.0
    (loss * share).backward()
    return share


def all_reduce_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the workers, in one all-reduce of the flattened gradients.

    A parameter that has no gradient on any worker keeps none (the optimiser skips it, as it would in one
    process); one that has a gradient on some worker only gets the sum on every worker.
    """
    import torch.distributed as dist

    device = parameters[0].device
    flat = torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in parameters]
        + [torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32, device=device)]
    )
    dist.all_reduce(flat)
    present = flat[-len(parameters) :] > 0
    offset = 0
    for p, has_grad in zip(parameters, present.tolist(), strict=True):
        n = p.numel()
        if has_grad:
            summed_grad = flat[offset : offset + n].view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = summed_grad.clone()
            else:
                p.grad.copy_(summed_grad)
        offset += n


def gathered(value: Any, world_size: int) -> list[Any]:
    """`value` of every worker, in rank order (the same list on every worker)."""
    import torch.distributed as dist

    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, value)
    return out


def summed(value: float | int, device: torch.device) -> float:
    """`value` summed over the workers."""
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())


def check_num_workers(num_workers: Any) -> None:
    """Refuse a worker count that is not an integer >= 1 (`ArgumentError`)."""
    from recsim_env.errors import ArgumentError

    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ArgumentError(f"num_workers: expected an integer >= 1, got {num_workers!r}")


@contextlib.contextmanager
def ray_session(
    *, ray_address: str | None, num_workers: int, log_to_driver: bool, storage_path: str | os.PathLike | None
) -> Iterator[Path]:
    """Connect to the cluster at `ray_address` (None: start a local Ray with one CPU per worker plus one
    for reading the logs); yields the directory Ray Train persists checkpoints in (`storage_path`, or a
    temporary directory removed afterwards). A Ray this call started is shut down afterwards.

    Raises:
        ArgumentError: a `RAY_ADDRESS` at which no cluster answers.
    """
    import ray

    if ray_address:
        check_ray_address(ray_address)
    started = not ray.is_initialized()
    if started:
        if ray_address:
            ray.init(address=ray_address, log_to_driver=log_to_driver)
        else:
            ray.init(num_cpus=num_workers + 1, include_dashboard=False, log_to_driver=log_to_driver)
    temporary = storage_path is None
    storage = Path(tempfile.mkdtemp(prefix="seqrec-train-")) if temporary else Path(storage_path)
    try:
        yield storage
    finally:
        if temporary:
            shutil.rmtree(storage, ignore_errors=True)
        if started:
            ray.shutdown()


def run_workers(
    worker: Callable[[dict[str, Any]], None],
    job: Any,
    dataset: Any,
    *,
    num_workers: int,
    use_gpu: bool,
    storage: Path,
    name: str,
    read: Callable[[Path], Any],
) -> Any:
    """Run `worker` on `num_workers` Ray Train workers (`train_loop_config={"job": job}`), every worker
    streaming all of `dataset`'s rows in order; returns `read(directory)` of worker 0's reported checkpoint.

    Raises:
        RuntimeError: a worker failed (the worker's error is in the message), or no checkpoint came back.
    """
    from ray.data import ExecutionOptions
    from ray.train import DataConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    dataset.context.enable_progress_bars = False  # the workers' reads would print over the epochs' bar
    trainer = TorchTrainer(
        worker,
        train_loop_config={"job": job},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(name=name, storage_path=str(storage)),
        datasets={LOGS_DATASET: dataset},
        # Every worker streams all rows in order and keeps its users' (`shard_rows`).
        dataset_config=DataConfig(
            datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True)
        ),
    )
    outcome = trainer.fit()
    if outcome.error is not None:
        raise RuntimeError(f"Ray Train run failed: {outcome.error}") from outcome.error
    if outcome.checkpoint is None:
        raise RuntimeError("Ray Train run ended without worker 0's checkpoint")
    with outcome.checkpoint.as_directory() as directory:
        return read(Path(directory))


def uses_gpu(device: str, num_workers: int) -> bool:
    """Whether the workers train on GPUs: "cuda*" asks for one each; "auto" takes them when the cluster
    has one per worker."""
    import ray

    if device == "cpu":
        return False
    if device.startswith("cuda"):
        return True
    return ray.cluster_resources().get("GPU", 0) >= num_workers


def worker_identity(world_size: int) -> list[dict[str, Any]]:
    """Every worker's `rank`, Ray `node_id` and `pid`, in rank order (a collective: every worker calls it)."""
    import ray
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    worker = {"rank": rank, "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
    return gathered(worker, world_size)


def report_result(
    metrics: dict[str, Any],
    *,
    rank: int,
    state: dict[str, torch.Tensor],
    record: dict[str, Any],
    weights_file: str,
    record_file: str,
) -> None:
    """Report `metrics` to Ray Train; worker 0 adds a checkpoint directory holding `state` as
    safetensors (`weights_file`) and `record` as JSON (`record_file`)."""
    import ray.train

    from recsim_env.checkpoint import write_json, write_tensors

    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="ray-train-") as directory:
        write_tensors(Path(directory) / weights_file, state)
        write_json(Path(directory) / record_file, record)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def read_result(
    directory: Path, *, weights_file: str, record_file: str
) -> tuple[dict[str, torch.Tensor], dict]:
    """The weights (torch tensors) and the JSON record of a checkpoint directory `report_result` wrote."""
    import json

    from recsim_env.checkpoint import tensors_from_bytes

    weights = directory / weights_file
    state = tensors_from_bytes(weights.read_bytes(), framework="pt", where=str(weights))
    return state, json.loads((directory / record_file).read_text())
