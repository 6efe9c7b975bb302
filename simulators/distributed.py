"""Data-parallel simulator training on a Ray cluster: `simulators.train.fit`'s loop under Ray Train.

`fit_distributed` runs `N` Ray Train workers (`ray.train.torch.TorchTrainer`, gloo, on CPUs, as `fit`
trains). The protocol is `fit`'s (the same user split, ensemble members, early stopping on the validation
loss, best epoch's weights, Platt calibration on the validation users), spread over the workers:

* **Data.** The driver prepares what `fit` prepares (`simulators.train.prepare`: the schema, the
  catalogue's item features and every user's labelled exposures with the negatives inserted, one seeded
  draw over the whole log, so that every worker count trains on the same exposures), splits the users
  (`config_user_split`) and draws each member's bootstrap resample (`member_users`). It hands the
  exposure rows to the workers as a Ray Data dataset (`ray.data.from_pandas`); each worker streams the
  rows in order and keeps those of its users (`user % N == rank`, `recsim_env.ray_train.shard_rows`), so
  a user's exposures, windows and interest-filter state live on one worker, and a worker holds only its
  shard. The split is by user and the shards are by user, so each worker's training and validation users
  are its shard's part of the split, and a member's resample is each shard's entries of it, in order (a
  user drawn twice is trained on twice, on its worker). The driver holds the whole exposure log: the
  simulator keeps it as its start pool.
* **Batches and gradients** (as for encoders, `recsim_env.encoders.distributed`). `batch_size` is the
  global batch, split among the workers in proportion to their training windows
  (`recsim_env.ray_train.shard_batch_bounds`); each worker scales its loss by its share of the step's
  target positions (the mask's sum) and one all-reduce sums the flattened gradients, before the gradient
  clipping. The update is then exactly the gradient of the global batch's loss for the heads whose loss
  is a mean over the target positions (click, the other binary signals, leave) and a close approximation
  for the continuous signals and the return gap, whose means run over the positions that have them.
* **Validation, early stopping, time budget.** Each worker evaluates its validation windows; the loss is
  the window-weighted mean over all workers, and a worker stops when any does (the time budget reads
  every worker's clock), so all stop at the same epoch with the same best weights.
* **Calibration.** The workers all-gather their validation positions' logits and targets of every binary
  head (a few floats per validation exposure) and each fits the same Platt scaling on their union, in
  rank order: the calibration of one process on all validation users.
* **Result.** Worker 0 reports every member's `state_dict` (calibration included) as safetensors and the
  training history with the workers' node ids as JSON, in a `ray.train.Checkpoint`; the driver builds
  the simulator from them (`simulators.ensemble.simulator_of`) (`DistributedFit`), which the caller saves with `simulators.save`.

One worker gives the single-process result: the same exposures, windows and batches in the same order,
the same random streams (worker 0 draws from `fit`'s seeds; worker `r > 0` from `seed + r * 2**32` once
its member's weights are initialised from the member's seed) and the same arithmetic, so on the CPU with
the same `num_threads` the weights are bit for bit those of `fit`. Several workers shuffle and drop out
with other streams and sum per-worker gradients, so their simulator agrees with one process's within seed
noise. Per-user weights (`fit`'s `user_weights`) are not supported here.

Every node needs this package (the same version) and torch. On a cluster of several machines,
`storage_path` must be a location every node and the driver can reach.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch

from recsim_env.data import LoggedInteractions
from recsim_env.encoders.trainer import torch_threads
from recsim_env.errors import ArgumentError, DataError
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
    worker_identity,
    worker_seed,
)
from simulators.config import SimulatorConfig
from simulators.data import DataSchema, ExposureLog
from simulators.ensemble import simulator_of
from simulators.response_model import ResponseModel
from simulators.train import (
    CalibrationHead,
    FitResult,
    OneProcess,
    config_user_split,
    fit_members,
    item_content,
    mean_valid_loss,
    member_users,
    prepare,
)

WEIGHTS_FILE = "weights.safetensors"
RECORD_FILE = "record.json"
EXPOSURE_COLUMNS = ("user", "item", "gap_before", "leave", "leave_known", "return_gap", "return_gap_known")
"""The exposure log's per-row columns in the dataset (then `feedback_0` ... one per signal)."""


# -- the hooks of `_fit_member` on one of several workers --------------------------------------------


class Replicas(OneProcess):
    """`_fit_member`'s hooks on worker `rank` of `world_size`, in step with the others (module docstring).

    Needs an initialised `torch.distributed` process group.
    """

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size
        self.device = torch.device("cpu")
        self._n_steps = 0

    def streams(self, seed: int) -> int:
        if self.rank:  # dropout draws from torch's global RNG: a stream of its own on each other worker
            torch.manual_seed(worker_seed(seed, self.rank))
        return worker_seed(seed, self.rank)

    def batches(self, rng: np.random.Generator, n_windows: int, batch_size: int) -> Iterator[np.ndarray]:
        n_steps, n_total, _ = global_steps(n_windows, batch_size, self.world_size)
        self._n_steps = n_steps
        order = rng.permutation(n_windows)
        for step in range(n_steps):
            lo, hi = shard_batch_bounds(step, n_steps, batch_size, n_windows, n_total)
            yield order[lo:hi]

    def backward(self, loss: torch.Tensor, mask: torch.Tensor, parameters: list[torch.nn.Parameter]) -> float:
        share = backward_share(loss, float(mask.sum()), self.device)
        all_reduce_gradients(parameters)
        return float(loss.detach()) * share

    def epoch_loss(self, losses: list[float]) -> float:
        if self.world_size == 1:  # share 1.0: the single-process losses and their mean
            return super().epoch_loss(losses)
        return sum(gathered(sum(losses), self.world_size)) / self._n_steps

    def valid_loss(self, total: float, count: float, *, weighted: bool) -> float:
        parts = gathered((total, count), self.world_size)
        return mean_valid_loss(sum(t for t, _ in parts), sum(c for _, c in parts), weighted=weighted)

    def stop(self, local: bool) -> bool:
        return any(gathered(local, self.world_size))

    def calibration_heads(self, heads: list[CalibrationHead]) -> list[CalibrationHead]:
        parts = gathered(heads, self.world_size)
        union = []
        for j in range(len(heads)):
            logits, targets, weights = zip(*(part[j] for part in parts), strict=True)
            union.append(
                (torch.cat(logits), torch.cat(targets), None if weights[0] is None else torch.cat(weights))
            )
        return union


# -- the shard one worker holds ------------------------------------------------------------------------


def exposure_frame(log: ExposureLog) -> pd.DataFrame:
    """The exposure log's rows as a table (`EXPOSURE_COLUMNS`, then `feedback_0`...), in log order."""
    columns = {
        "user": np.repeat(np.arange(log.n_users, dtype=np.int64), log.lengths()),
        "item": log.items,
        "gap_before": log.gap_before,
        "leave": log.leave,
        "leave_known": log.leave_known,
        "return_gap": log.return_gap,
        "return_gap_known": log.return_gap_known,
    }
    columns.update({f"feedback_{j}": log.feedback[:, j] for j in range(log.feedback.shape[1])})
    return pd.DataFrame(columns)  # the columns in `EXPOSURE_COLUMNS`' order, then the feedback


def shard_log(
    rows: dict[str, np.ndarray] | None,
    lengths: np.ndarray,
    user_features: np.ndarray,
    *,
    rank: int,
    world_size: int,
) -> ExposureLog:
    """The exposure log of the users `u % world_size == rank` (local user `i` is global user
    `rank + i * world_size`) from their rows (`shard_rows` of an `exposure_frame`; None: no rows at all).

    Raises:
        DataError: the rows do not match the users' exposure counts.
    """
    mine = np.arange(rank, len(lengths), world_size)
    offsets = np.zeros(len(mine) + 1, dtype=np.int64)
    np.cumsum(lengths[mine], out=offsets[1:])
    if rows is None or not np.array_equal(rows["user"], np.repeat(mine, lengths[mine])):
        n_rows = 0 if rows is None else len(rows["user"])
        raise DataError(
            f"worker {rank}: the exposure rows of its users do not match their exposure counts "
            f"({n_rows} rows, {int(offsets[-1])} expected)"
        )
    n_signals = sum(1 for name in rows if name.startswith("feedback_"))
    feedback = np.zeros((len(rows["user"]), n_signals), dtype=np.float32)
    for j in range(n_signals):
        feedback[:, j] = rows[f"feedback_{j}"]
    return ExposureLog(
        offsets,
        rows["item"].astype(np.int64, copy=False),
        feedback,
        rows["gap_before"].astype(np.float32, copy=False),
        rows["leave"].astype(np.float32, copy=False),
        rows["leave_known"].astype(bool, copy=False),
        rows["return_gap"].astype(np.float32, copy=False),
        rows["return_gap_known"].astype(bool, copy=False),
        user_features[mine],
    )


def local_users(users: np.ndarray, *, rank: int, world_size: int) -> np.ndarray:
    """The local indices (in `shard_log`'s log) of the entries of `users` on this worker, in order."""
    users = np.asarray(users, dtype=np.int64)
    return (users[users % world_size == rank] - rank) // world_size


# -- the loop one worker runs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerJob:
    """What every Ray Train worker needs to train its part of the simulator."""

    config: SimulatorConfig
    """The simulator's settings (`batch_size` is the global batch)."""
    schema: DataSchema
    """The data's schema (built on the driver, the same on every worker)."""
    item_features: np.ndarray
    """The catalogue's encoded item features."""
    item_content: np.ndarray | None
    """The encoder's item content (`simulators.train.item_content`), or None."""
    lengths: np.ndarray
    """[U] every user's exposure count."""
    user_features: np.ndarray
    """[U, P] every user's encoded features."""
    columns: tuple[str, ...]
    """The dataset's columns."""
    valid_users: np.ndarray
    """The validation users (global indices)."""
    members: list[np.ndarray]
    """Each member's training users (global indices; a bootstrap resample may repeat users)."""
    seconds_left: float
    """The training budget left when the job was made."""
    num_threads: int | None
    """torch threads per worker (None: torch's setting)."""
    progress: bool
    """Show worker 0's progress bar."""


def worker_job(
    logs: LoggedInteractions,
    config: SimulatorConfig,
    *,
    seconds: float,
    num_threads: int | None,
    progress: bool,
) -> tuple[WorkerJob, ExposureLog, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """What the driver prepares (the module docstring): the workers' job (with `seconds` of training
    budget), every user's exposure log and the (train, valid, test) users."""
    schema, item_features, log = prepare(logs, config)
    train_users, valid_users, test_users = config_user_split(log, config)
    job = WorkerJob(
        config=config,
        schema=schema,
        item_features=item_features,
        item_content=item_content(logs, config, item_features),
        lengths=log.lengths(),
        user_features=log.user_features,
        columns=(*EXPOSURE_COLUMNS, *(f"feedback_{j}" for j in range(log.feedback.shape[1]))),
        valid_users=valid_users,
        members=member_users(train_users, config),
        seconds_left=seconds,
        num_threads=num_threads,
        progress=progress,
    )
    return job, log, (train_users, valid_users, test_users)


def fit_shard(
    job: WorkerJob, log: ExposureLog, *, rank: int, world_size: int
) -> tuple[list[ResponseModel], list[dict]]:
    """`fit`'s members trained on this worker's shard `log` (`shard_log`), in step with the other workers:
    the members (the same on every worker) and the training history."""
    return fit_members(
        job.config,
        job.schema,
        job.item_features,
        log,
        [local_users(users, rank=rank, world_size=world_size) for users in job.members],
        local_users(job.valid_users, rank=rank, world_size=world_size),
        time.perf_counter() + job.seconds_left,
        progress=job.progress and rank == 0,
        replicas=Replicas(rank, world_size),
        content=job.item_content,
    )


def run_worker(loop_config: dict[str, WorkerJob]) -> None:
    """The Ray Train worker function: read this worker's users' exposures, train in step, report.

    Worker 0 reports a checkpoint directory holding `weights.safetensors` (member `k`'s `state_dict`
    under `member_k.<name>`) and `record.json` (the history and every worker's rank, node id and pid).
    """
    from recsim_env.ray_train import shard_rows, worker_batches

    job = loop_config["job"]
    rank, world_size, batches = worker_batches()
    with torch_threads(job.num_threads):
        rows = shard_rows(
            batches,
            rank=rank,
            world_size=world_size,
            columns=job.columns,
            user_column="user",
        )
        log = shard_log(rows, job.lengths, job.user_features, rank=rank, world_size=world_size)
        members, history = fit_shard(job, log, rank=rank, world_size=world_size)
    workers = worker_identity(world_size)
    metrics = {"epochs": len(history), "valid_loss": min(row["valid_loss"] for row in history)}
    state = {
        f"member_{k}.{name}": tensor.detach().cpu()
        for k, model in enumerate(members)
        for name, tensor in model.state_dict().items()
    }
    report_result(
        metrics,
        rank=rank,
        state=state,
        record={"history": history, "workers": workers},
        weights_file=WEIGHTS_FILE,
        record_file=RECORD_FILE,
    )


# -- the driver ----------------------------------------------------------------------------------------


@dataclass
class DistributedFit:
    """What `fit_distributed` brings back to the driver."""

    result: FitResult
    """The simulator, its data splits and the training history, as `fit` returns them."""
    workers: list[dict[str, Any]] = field(default_factory=list)
    """Each worker's `rank`, Ray `node_id` and `pid`."""


def fit_distributed(
    data: str | os.PathLike | LoggedInteractions,
    config: SimulatorConfig | None = None,
    *,
    num_workers: int,
    ray_address: str | None = None,
    progress: bool = False,
    num_threads: int | None = 1,
    storage_path: str | os.PathLike | None = None,
) -> DistributedFit:
    """Train a simulator data-parallel on `num_workers` Ray Train workers (see the module docstring).

    Args:
        data: the logs: a `LoggedInteractions`, or a path or data set name `recsim_env.data.load` accepts.
        config: the simulator's settings (None: the defaults); `batch_size` is the global batch.
        num_workers: Ray Train workers (1 gives `fit`'s simulator).
        ray_address: the cluster to run on (a `RAY_ADDRESS`); None starts a local Ray with one CPU per
            worker plus one for the data, shut down afterwards.
        progress: show worker 0's progress bar (and the workers' logs on the driver).
        num_threads: torch threads of each worker (None: torch's setting).
        storage_path: where Ray Train persists the reported checkpoint (None: a temporary directory,
            removed afterwards; on a cluster of several machines, a location every node reaches).

    Raises:
        ArgumentError: bad arguments, or a `RAY_ADDRESS` at which no cluster answers.
        RuntimeError: a worker failed (the worker's error is in the message).
    """
    import ray.data

    from simulators.env import load_dataset

    check_num_workers(num_workers)
    config = config or SimulatorConfig()
    if not isinstance(config, SimulatorConfig):
        raise ArgumentError(f"config: expected a SimulatorConfig, got {type(config).__name__}")
    started = time.perf_counter()
    logs = load_dataset(data)
    with torch_threads(num_threads):
        job, log, (train_users, valid_users, test_users) = worker_job(
            logs, config, seconds=60.0 * config.max_train_minutes, num_threads=num_threads, progress=progress
        )
    job = dataclasses.replace(job, seconds_left=job.seconds_left - (time.perf_counter() - started))
    with ray_session(
        ray_address=ray_address, num_workers=num_workers, log_to_driver=progress, storage_path=storage_path
    ) as storage:
        state, record = run_workers(
            run_worker,
            job,
            ray.data.from_pandas(exposure_frame(log)),
            num_workers=num_workers,
            use_gpu=False,
            storage=storage,
            name="train-simulator",
            read=partial(read_result, weights_file=WEIGHTS_FILE, record_file=RECORD_FILE),
        )
    members = []
    for k in range(config.ensemble_size):
        model = ResponseModel(config, job.schema)
        prefix = f"member_{k}."
        model.load_state_dict(
            {name[len(prefix) :]: t for name, t in state.items() if name.startswith(prefix)}
        )
        members.append(model.eval())
    item_tokens = np.asarray(logs.item_ids.tokens).tolist()
    simulator = simulator_of(config, job.schema, members, log, item_tokens)
    result = FitResult(
        simulator, log, train_users, valid_users, test_users, record["history"], time.perf_counter() - started
    )
    return DistributedFit(result=result, workers=record["workers"])
