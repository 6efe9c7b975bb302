"""Data-parallel encoder training on a Ray cluster: the trainer's loop under Ray Train, logs read by Ray Data.

`train_distributed` runs `N` Ray Train workers (`ray.train.torch.TorchTrainer`, gloo on CPU, NCCL on CUDA).
The protocol is the one of `recsim_env.encoders.trainer.train` (leave-one-out split, full-ranking
validation, early stopping on validation NDCG@10, best epoch's weights restored before the test), spread
over the workers as follows:

* **Data.** The driver opens the logs as a Ray Data dataset (`ray.data.read_parquet` for a Parquet file
  written by `LoggedInteractions.to_parquet` / `seqrec data`, whose id maps it reads from the file's
  metadata without reading a row; any other source is loaded on the driver and handed over with
  `ray.data.from_pandas`). Each worker streams the rows in file order and keeps those of its users
  (`user_id % N == rank`), so a user's sequence, its windows and its validation and test targets live on
  one worker, and a log larger than one machine's memory is held only in shards.
* **Batches.** `batch_size` is the global batch. An epoch has `ceil(W / batch_size)` steps for `W`
  training windows over all workers; at step `s` worker `r`, holding `W_r` windows in its own shuffled
  order, takes rows `floor(s * batch_size * W_r / W)` up to the next step's bound (its last step takes the
  rest), so each window is used once an epoch and a step's windows number `batch_size` give or take one
  per worker.
* **Gradients.** Each worker scales its mean loss by its share `n_r / n` of the step's target positions
  (`n` summed over the workers) and the gradients are summed across workers (one all-reduce of the
  flattened gradients per step): the update is the gradient of the mean loss over every target of the
  global batch, as one process would compute it on the union of the workers' rows (exactly so for
  losses that are a mean over target positions, which every built-in encoder's is). Every worker starts
  from the same seeded weights and applies the same update, so the replicas stay identical.
* **Validation and early stopping.** Each worker ranks its own users; the metrics are combined as
  user-weighted means of the workers' means (all-gathered, so every worker holds the same numbers and
  takes the same early-stopping and time-limit decisions: the time limit reads the slowest worker's clock).
* **Result.** Worker 0 reports the best epoch's `state_dict` as safetensors, with the `TrainResult` and
  the workers' node ids as JSON, in a `ray.train.Checkpoint`; the driver loads the weights into an
  encoder built from the same config (`DistributedRun`), which the caller saves with
  `recsim_env.encoders.save`.

One worker gives the single-process result: the same windows in the same order, the same random streams
(worker 0 draws from the seeds `train` uses; worker `r > 0` from `seed + r * 2**32`) and the same
arithmetic, so on the CPU with the same `num_threads` the weights and metrics are bit for bit those of
`train`. Several workers shuffle, mask and drop out with different streams and sum per-worker gradients
in another order, so their result agrees with a single process's within seed noise, not bit for bit.

Every node needs this package (the same version) and torch; the workers import it by name. On a cluster
of several machines, `storage_path` must be a location every node and the driver can reach (a shared
file system or a bucket): Ray Train persists the reported checkpoint there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from tqdm.auto import tqdm

from recsim_env.data import IdMap, LoggedInteractions, UserSequences
from recsim_env.encoders.base import IGNORE_TARGET, SequenceEncoder
from recsim_env.encoders.ray_logs import open_logs, user_shard
from recsim_env.encoders.trainer import (
    SELECTION_METRIC,
    ModelSelection,
    TrainResult,
    autocast,
    evaluate_full_ranking,
    leave_one_out_split,
    peak_memory_mb,
    resolve_device,
    seed_everything,
    torch_threads,
    window_batch,
    window_tensors,
)
from recsim_env.encoders.trainer_config import TrainerConfig
from recsim_env.errors import ArgumentError
from recsim_env.ray_train import (
    all_reduce_gradients,
    backward_share,
    check_num_workers,
    gathered,
    global_steps,
    ray_session,
    read_result,
    report_result,
    run_workers,
    shard_batch_bounds,
    uses_gpu,
    worker_batches,
    worker_identity,
    worker_seed,
)

WEIGHTS_FILE = "weights.safetensors"
RESULT_FILE = "result.json"


# -- the pieces of the data-parallel step (`recsim_env.ray_train`) and the metrics' combination --------


def combine_metrics(parts: Sequence[tuple[int, dict[str, dict[str, float]]]]) -> dict[str, dict[str, float]]:
    """Metrics over all users from each worker's `(users evaluated, evaluate_full_ranking result)`.

    Every metric is a mean over users, so the whole's is the user-weighted mean of the workers' means; a
    single part is returned as it is.
    """
    if len(parts) == 1:
        return parts[0][1]
    total = sum(n for n, _ in parts)
    return {
        protocol: {
            name: sum(n * metrics[protocol][name] for n, metrics in parts) / total
            for name in parts[0][1][protocol]
        }
        for protocol in parts[0][1]
    }


# -- the loop one worker runs ------------------------------------------------------------------------


def train_shard(
    encoder: SequenceEncoder,
    sequences: UserSequences,
    config: TrainerConfig,
    device: torch.device,
    *,
    rank: int,
    world_size: int,
) -> tuple[TrainResult, dict[str, torch.Tensor]]:
    """`trainer.train`'s loop on this worker's users, in step with the other workers (module docstring).

    Needs an initialised `torch.distributed` process group of `world_size` workers.

    Args:
        encoder: the freshly built encoder, initialised from the same seed on every worker.
        sequences: this worker's users (`user_shard`).
        config: optimisation settings; `batch_size` is the global batch.
        device: this worker's device.
        rank, world_size: this worker and the number of workers.

    Returns:
        The `TrainResult` over all workers' users (the same on every worker) and the best epoch's
        `state_dict` (on the CPU), which is also loaded into `encoder`.
    """
    cfg = encoder.config
    split = leave_one_out_split(sequences, max_len=cfg.max_len, pad_id=cfg.pad_id)
    windows = window_tensors(encoder, sequences, split.train_lengths, config)
    if type(encoder).fit_statistics is not SequenceEncoder.fit_statistics:
        # a statistic of the training data (MQSA-TED's transition graph) is of every worker's windows
        parts = gathered((windows.items, ~windows.counted_elsewhere), world_size)
        encoder.fit_statistics(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    # ---- the global step count, from every worker's window count ----
    n_local = windows.items.shape[0]
    n_steps, n_total, _ = global_steps(n_local, config.batch_size, world_size)

    encoder.to(device)
    parameters = [p for p in encoder.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(
        parameters, lr=config.lr, betas=(0.9, config.beta2), weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(worker_seed(config.seed, rank))
    loss_fn = torch.compile(encoder.loss) if config.compile else encoder.loss

    selection = ModelSelection.start(encoder, config)
    train_seconds, elapsed = 0.0, 0.0
    bar = tqdm(
        range(1, config.epochs + 1),
        desc=f"train {encoder.name} ({world_size} workers)",
        disable=not config.progress or rank != 0,
        unit="epoch",
    )
    for epoch in bar:
        # ---- one pass over every worker's shuffled windows, in global steps ----
        start = time.perf_counter()
        encoder.train()
        order = torch.randperm(n_local, generator=generator)
        total = 0.0
        for step in range(n_steps):
            lo, hi = shard_batch_bounds(step, n_steps, config.batch_size, n_local, n_total)
            batch = window_batch(encoder, windows, order[lo:hi], device, generator)
            with autocast(device):
                loss = loss_fn(batch, generator=generator)
            optimiser.zero_grad(set_to_none=True)
            share = backward_share(loss, int((batch.targets != IGNORE_TARGET).sum()), device)
            all_reduce_gradients(parameters)
            optimiser.step()
            total += float(loss.detach()) * share
        epoch_seconds = time.perf_counter() - start

        # ---- validation over every worker's users, and early stopping ----
        local_valid = evaluate_full_ranking(
            encoder, split.valid, device=device, batch_size=config.eval_batch_size
        )
        local_elapsed = elapsed + time.perf_counter() - start
        parts = gathered(
            (len(split.valid.users), local_valid, total, epoch_seconds, local_elapsed), world_size
        )
        epoch_seconds = max(part[3] for part in parts)
        elapsed = max(part[4] for part in parts)  # the slowest worker's clock: the same on every worker
        train_seconds += epoch_seconds
        selection.record(
            encoder,
            epoch=epoch,
            loss=sum(part[2] for part in parts) / n_steps,
            valid=combine_metrics([(n, metrics) for n, metrics, *_ in parts]),
            seconds=epoch_seconds,
            elapsed=elapsed,
        )
        bar.set_postfix(selection.progress())
        if selection.should_stop(epoch, elapsed):
            break
    bar.close()

    encoder.load_state_dict(selection.best_state)
    local_test = evaluate_full_ranking(encoder, split.test, device=device, batch_size=config.eval_batch_size)
    parts = gathered((len(split.test.users), local_test, peak_memory_mb(device)), world_size)
    result = selection.result(
        combine_metrics([(n, metrics) for n, metrics, _ in parts]),
        train_seconds=train_seconds,
        peak_memory_mb=max(memory for *_, memory in parts),  # the largest worker's
        device=device,
    )
    return result, {name: tensor.detach().cpu() for name, tensor in selection.best_state.items()}


@dataclass(frozen=True)
class WorkerJob:
    """What every Ray Train worker needs to build its encoder and read its users."""

    model: str
    """Registered encoder name."""
    encoder_config: dict[str, Any]
    """The encoder config's fields (`n_items` included)."""
    trainer: TrainerConfig
    """Optimisation settings (`batch_size` is the global batch)."""
    use_gpu: bool
    """Whether each worker has a GPU (then it trains on `ray.train.torch.get_device()`)."""
    columns: tuple[str, ...]
    """`user_id`, `item_id`, `timestamp` and the feedback columns."""
    n_users: int
    """Users in the user map."""
    n_items: int
    """Items in the catalogue."""
    source: str
    """What errors about the rows name."""


def run_worker(loop_config: dict[str, WorkerJob]) -> None:
    """The Ray Train worker function: read this worker's users, train in step, report the result.

    `loop_config["job"]` is the `WorkerJob`. Worker 0 reports a checkpoint directory holding `weights.safetensors` (the best `state_dict`) and
    `result.json` (the `TrainResult` and every worker's rank, node id and process id).
    """
    import ray.train.torch

    from recsim_env import encoders

    job = loop_config["job"]
    rank, world_size, batches = worker_batches()
    device = ray.train.torch.get_device() if job.use_gpu else torch.device("cpu")
    with torch_threads(job.trainer.num_threads):
        sequences = user_shard(
            batches,
            rank=rank,
            world_size=world_size,
            columns=job.columns,
            n_users=job.n_users,
            n_items=job.n_items,
            source=job.source,
        )
        seed_everything(job.trainer.seed)
        encoder = encoders.build(job.model, job.encoder_config)
        if rank:  # dropout draws from torch's global RNG: a stream of its own on each other worker
            torch.manual_seed(worker_seed(job.trainer.seed, rank))
        result, best_state = train_shard(
            encoder, sequences, job.trainer, device, rank=rank, world_size=world_size
        )
    workers = worker_identity(world_size)
    metrics = {
        "best_epoch": result.best_epoch,
        "test_ndcg@10": result.test["seen_excluded"][SELECTION_METRIC],
    }
    report_result(
        metrics,
        rank=rank,
        state=best_state,
        record={"result": result.to_dict(), "workers": workers},
        weights_file=WEIGHTS_FILE,
        record_file=RESULT_FILE,
    )


# -- the driver ----------------------------------------------------------------------------------------


@dataclass
class DistributedRun:
    """What `train_distributed` brings back to the driver."""

    encoder: SequenceEncoder
    """The encoder with the best epoch's weights (on the CPU)."""
    result: TrainResult
    """The metrics over all workers' users."""
    item_ids: IdMap
    """Item tokens (what `recsim_env.encoders.save` stores beside the weights)."""
    user_ids: IdMap
    """User tokens."""
    workers: list[dict[str, Any]] = field(default_factory=list)
    """Each worker's `rank`, Ray `node_id` and `pid`."""


def train_distributed(
    model_name: str,
    base_config: Mapping[str, Any],
    data: str | os.PathLike | LoggedInteractions,
    trainer_config: TrainerConfig,
    *,
    num_workers: int,
    ray_address: str | None = None,
    use_feedback: bool = False,
    storage_path: str | os.PathLike | None = None,
) -> DistributedRun:
    """Train encoder `model_name` data-parallel on `num_workers` Ray Train workers (see the module docstring).

    Args:
        model_name: a registered encoder (`recsim_env.encoders.ENCODERS`).
        base_config: encoder config fields; `n_items` (and `feedback_dim` with `use_feedback`) come from
            the data.
        data: a Parquet file written by `LoggedInteractions.to_parquet` (streamed by Ray Data), any other
            path or data set name `recsim_env.data.load` accepts, or a `LoggedInteractions`.
        trainer_config: as for `trainer.train`; `batch_size` is the global batch, `num_threads` each
            worker's, "auto" devices mean one GPU per worker when the cluster has them.
        num_workers: Ray Train workers (1 gives the single-process result).
        ray_address: the cluster to run on (a `RAY_ADDRESS`); None starts a local Ray with one CPU per
            worker plus one for reading the logs, shut down afterwards.
        use_feedback: feed the logs' feedback columns to the encoder.
        storage_path: where Ray Train persists the reported checkpoint (None: a temporary directory,
            removed afterwards; on a cluster of several machines, a location every node reaches).

    Raises:
        ArgumentError: bad arguments, or a `RAY_ADDRESS` at which no cluster answers.
        RuntimeError: a worker failed (the worker's error is in the message).
    """
    from recsim_env import encoders

    check_num_workers(num_workers)
    if not isinstance(trainer_config, TrainerConfig):
        raise ArgumentError(f"trainer_config: expected a TrainerConfig, got {type(trainer_config).__name__}")
    encoders.encoder_class(model_name)  # an unknown name fails before Ray starts
    if not ray_address and trainer_config.device != "auto":
        resolve_device(trainer_config.device)  # a local run needs the device here
    with ray_session(
        ray_address=ray_address,
        num_workers=num_workers,
        log_to_driver=trainer_config.progress,
        storage_path=storage_path,
    ) as storage:
        logs = open_logs(data)
        config = {**base_config, "n_items": logs.n_items}
        if "n_items" in base_config and int(base_config["n_items"]) != logs.n_items:
            raise ArgumentError(
                f"base_config: n_items={base_config['n_items']} but {logs.source} has {logs.n_items} items"
            )
        if use_feedback:
            config["feedback_dim"] = len(logs.feedback_columns)
        encoders.build(model_name, config)  # a bad encoder config fails before the workers start
        job = WorkerJob(
            model=model_name,
            encoder_config=config,
            trainer=trainer_config,
            use_gpu=uses_gpu(trainer_config.device, num_workers),
            columns=tuple(logs.columns),
            n_users=logs.n_users,
            n_items=logs.n_items,
            source=logs.source,
        )
        state, record = run_workers(
            run_worker,
            job,
            logs.dataset,
            num_workers=num_workers,
            use_gpu=job.use_gpu,
            storage=storage,
            name="train-encoder",
            read=partial(read_result, weights_file=WEIGHTS_FILE, record_file=RESULT_FILE),
        )
    seed_everything(trainer_config.seed)
    encoder = encoders.build(model_name, config)
    encoder.load_state_dict(state)
    encoder.eval()
    return DistributedRun(
        encoder=encoder,
        result=TrainResult(**record["result"]),
        item_ids=logs.item_ids,
        user_ids=logs.user_ids,
        workers=record["workers"],
    )
