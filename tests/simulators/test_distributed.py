"""The pieces of data-parallel simulator training that need no Ray: shards of the exposure log and one
worker's loop in a gloo group of one. The runs on a Ray cluster are in `test_ray_train_cluster.py`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist

from recsim_env.ray_train import shard_rows
from simulators import SimulatorConfig, fit
from simulators.distributed import (
    exposure_frame,
    fit_shard,
    local_users,
    shard_log,
    worker_job,
)
from simulators.train import config_user_split, member_users, prepare
from tests.simulators.conftest import TINY

CONFIG = SimulatorConfig(**{**TINY, "dropout": 0.1}, ensemble_size=2)


def batches_of(frame, rows: int):
    """The table's columns in numpy batches of `rows` rows, as Ray Data's `iter_batches` yields them."""
    for lo in range(0, len(frame), rows):
        yield {col: frame[col].to_numpy()[lo : lo + rows] for col in frame.columns}


def shard_of(log, rank: int, world_size: int):
    frame = exposure_frame(log)
    rows = shard_rows(
        batches_of(frame, 997),
        rank=rank,
        world_size=world_size,
        columns=tuple(frame.columns),
        user_column="user",
    )
    return shard_log(rows, log.lengths(), log.user_features, rank=rank, world_size=world_size)


def assert_logs_equal(a, b):
    for name, x, y in zip(a._fields, a, b, strict=True):
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_shards_hold_whole_users_and_select_as_the_whole_log(world_logs):
    _, _, log = prepare(world_logs, CONFIG)
    train_users, _, _ = config_user_split(log, CONFIG)
    resample = member_users(train_users, CONFIG)[1]  # a bootstrap resample: users repeat
    assert len(np.unique(resample)) < len(resample)
    world = 3
    for rank in range(world):
        shard = shard_of(log, rank, world)
        mine = resample[resample % world == rank]
        assert_logs_equal(shard.select(local_users(resample, rank=rank, world_size=world)), log.select(mine))
    assert_logs_equal(shard_of(log, 0, 1), log)


def test_a_shard_refuses_rows_that_do_not_match_the_counts(world_logs):
    _, _, log = prepare(world_logs, CONFIG)
    frame = exposure_frame(log).iloc[1:]  # the first user's first exposure is missing
    rows = shard_rows(
        batches_of(frame, 500), rank=0, world_size=2, columns=tuple(frame.columns), user_column="user"
    )
    with pytest.raises(ValueError, match="worker 0: the exposure rows of its users do not match"):
        shard_log(rows, log.lengths(), log.user_features, rank=0, world_size=2)


def test_one_worker_fits_bit_for_bit_as_one_process(world_logs, one_worker_group):
    expected = fit(world_logs, CONFIG)

    job, log, _ = worker_job(world_logs, CONFIG, seconds=600.0, num_threads=1, progress=False)
    members, history = fit_shard(job, shard_of(log, 0, 1), rank=0, world_size=1)
    assert len(members) == 2
    for model, reference in zip(members, expected.simulator.members, strict=True):
        reference_state = reference.state_dict()
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, reference_state[name]), name
        assert not torch.equal(model.temperature, torch.ones_like(model.temperature))  # calibrated
    drop_time = [{k: v for k, v in row.items() if k != "seconds"} for row in expected.history]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in history] == drop_time


def _fit_worker(rank: int, world_size: int, store: str, logs, out: str) -> None:
    """One of two workers: its shard of the exposure log, `fit_shard` in step, its members' weights."""
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        job, log, _ = worker_job(logs, CONFIG, seconds=600.0, num_threads=1, progress=False)
        members, history = fit_shard(job, shard_of(log, rank, world_size), rank=rank, world_size=world_size)
        state = {
            f"{k}.{name}": t.contiguous() for k, m in enumerate(members) for name, t in m.state_dict().items()
        }
        state["epochs"] = torch.tensor([row["epoch"] for row in history])
        state["valid_loss"] = torch.tensor([row["valid_loss"] for row in history], dtype=torch.float64)
        save_file(state, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes: about 10-17 s on the shared 2-core machine
def test_two_workers_keep_identical_replicas_and_decisions(world_logs, tmp_path):
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    out = str(tmp_path / "members")
    mp.spawn(_fit_worker, args=(2, str(tmp_path / "store"), world_logs, out), nprocs=2)
    first, second = (load_file(f"{out}.{rank}") for rank in range(2))
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name  # same weights, calibration, epochs and losses
    expected = fit(world_logs, CONFIG)
    single = {
        f"{k}.{n}": t for k, m in enumerate(expected.simulator.members) for n, t in m.state_dict().items()
    }
    assert not all(torch.equal(first[name], single[name]) for name in single)  # other streams, other weights
    losses = first["valid_loss"]
    reference = torch.tensor([row["valid_loss"] for row in expected.history], dtype=torch.float64)
    assert abs(float(losses.min()) - float(reference.min())) < 0.05 * float(reference.min())


def test_train_simulator_refuses_zero_workers(world_logs, tmp_path):
    import typer
    from typer.testing import CliRunner

    from simulators.cli import train_simulator_command

    app = typer.Typer()
    app.command("train-simulator")(train_simulator_command)
    app.command("unused")(lambda: None)  # two commands: typer keeps the subcommand name
    logs = tmp_path / "logs.parquet"
    world_logs.to_parquet(logs)
    args = ["train-simulator", "--data", str(logs), "--out", str(tmp_path / "o"), "--num-workers", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "--num-workers must be >= 1" in result.output
    assert not (tmp_path / "o").exists()
