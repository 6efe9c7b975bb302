"""The pieces of data-parallel encoder training that need no Ray: batches, shards, metrics, one worker.

The runs on a Ray cluster are in `test_ray_train_cluster.py` (marked rllib).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist

from recsim_env import encoders
from recsim_env.encoders.base import IGNORE_TARGET
from recsim_env.encoders.distributed import (
    all_reduce_gradients,
    backward_share,
    combine_metrics,
    shard_batch_bounds,
    train_shard,
    worker_seed,
)
from recsim_env.encoders.ray_logs import user_shard
from recsim_env.encoders.trainer import TrainerConfig, seed_everything, train, training_windows

CONFIG = TrainerConfig(epochs=3, batch_size=32, lr=5e-3, device="cpu", progress=False, num_threads=1, seed=3)
BASE = {"max_len": 8, "d_model": 16, "n_layers": 1}


def batches_of(logs, rows: int):
    """The frame's columns in numpy batches of `rows` rows, as Ray Data's `iter_batches` yields them."""
    frame = logs.frame[["user_id", "item_id", "timestamp", *logs.feedback_columns]]
    for lo in range(0, len(frame), rows):
        yield {col: frame[col].to_numpy()[lo : lo + rows] for col in frame.columns}


def shard_of(logs, rank: int, world_size: int, rows: int = 97):
    return user_shard(
        batches_of(logs, rows),
        rank=rank,
        world_size=world_size,
        columns=("user_id", "item_id", "timestamp", *logs.feedback_columns),
        n_users=logs.n_users,
        n_items=logs.n_items,
        source="cyclic",
    )


def test_one_worker_takes_the_single_process_batches():
    n, batch = 1000, 128
    steps = -(-n // batch)
    bounds = [shard_batch_bounds(s, steps, batch, n, n) for s in range(steps)]
    assert bounds == [(lo, min(lo + batch, n)) for lo in range(0, n, batch)]


@pytest.mark.parametrize("sizes", [(500, 500), (480, 530, 7 * 128), (129, 2000)])
def test_workers_use_each_window_once_and_fill_the_global_batch(sizes):
    batch = 128
    total = sum(sizes)
    steps = -(-total // batch)
    per_step = np.zeros(steps, dtype=int)
    for n in sizes:
        bounds = [shard_batch_bounds(s, steps, batch, n, total) for s in range(steps)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(hi == next_lo for (_, hi), (next_lo, _) in zip(bounds, bounds[1:], strict=False))
        assert all(hi > lo for lo, hi in bounds)  # batch * n >= total: never an empty batch
        per_step += [hi - lo for lo, hi in bounds]
    assert (np.abs(per_step[:-1] - batch) <= len(sizes)).all()
    assert per_step.sum() == total


def test_metrics_combine_as_user_weighted_means():
    a = {"seen_excluded": {"ndcg@10": 0.5, "hr@10": 1.0}, "seen_included": {"ndcg@10": 0.25, "hr@10": 0.5}}
    b = {"seen_excluded": {"ndcg@10": 0.2, "hr@10": 0.0}, "seen_included": {"ndcg@10": 0.1, "hr@10": 0.0}}
    combined = combine_metrics([(3, a), (1, b)])
    assert combined["seen_excluded"] == pytest.approx({"ndcg@10": (1.5 + 0.2) / 4, "hr@10": 0.75})
    assert combined["seen_included"] == pytest.approx({"ndcg@10": (0.75 + 0.1) / 4, "hr@10": 0.375})
    assert combine_metrics([(3, a)]) is a


def test_one_shard_is_the_whole_log(cyclic_logs):
    whole, shard = cyclic_logs.sequences(), shard_of(cyclic_logs, 0, 1)
    for mine, theirs in zip(shard, whole, strict=True):
        np.testing.assert_array_equal(mine, theirs)  # every cyclic user has events


def test_shards_hold_whole_users_and_partition_them(cyclic_logs):
    whole = cyclic_logs.sequences()
    world = 3
    seen = []
    for rank in range(world):
        shard = shard_of(cyclic_logs, rank, world)
        users = [u for u in range(cyclic_logs.n_users) if u % world == rank]
        assert len(shard.offsets) == len(users) + 1
        for local, user in enumerate(users):
            for mine, theirs in zip(shard.user(local), whole.user(user), strict=True):
                np.testing.assert_array_equal(mine, theirs)
        seen += users
    assert sorted(seen) == list(range(cyclic_logs.n_users))


def test_a_shard_names_the_source_of_a_bad_row(cyclic_logs):
    frame_batches = list(batches_of(cyclic_logs, 1000))
    frame_batches[0]["item_id"] = frame_batches[0]["item_id"].copy()
    frame_batches[0]["item_id"][4] = cyclic_logs.n_items  # outside the catalogue
    with pytest.raises(ValueError, match=r"cyclic \(worker 0's users\).*item_id"):
        user_shard(
            iter(frame_batches),
            rank=0,
            world_size=1,
            columns=("user_id", "item_id", "timestamp", "rating"),
            n_users=cyclic_logs.n_users,
            n_items=cyclic_logs.n_items,
            source="cyclic",
        )


def test_worker_seeds_keep_worker_zero_on_the_single_process_seed():
    assert worker_seed(7, 0) == 7
    assert len({worker_seed(s, r) for s in range(4) for r in range(4)}) == 16


@pytest.mark.parametrize("name", ("sasrec", "mqsa"))  # MQSA-TED: the transition graph of the gathered windows
def test_one_worker_trains_bit_for_bit_as_one_process(cyclic_logs, one_worker_group, name):
    seed_everything(CONFIG.seed)
    reference = encoders.build(name, {"n_items": cyclic_logs.n_items, **BASE})
    expected = train(reference, cyclic_logs.sequences(), CONFIG)

    seed_everything(CONFIG.seed)
    encoder = encoders.build(name, {"n_items": cyclic_logs.n_items, **BASE})
    result, state = train_shard(
        encoder, shard_of(cyclic_logs, 0, 1), CONFIG, torch.device("cpu"), rank=0, world_size=1
    )
    for name, tensor in reference.state_dict().items():
        assert torch.equal(state[name], tensor), name
    assert result.test == expected.test and result.valid == expected.valid
    assert result.best_epoch == expected.best_epoch
    drop_time = [{k: v for k, v in row.items() if k != "seconds"} for row in expected.history]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in result.history] == drop_time


def _gradient_worker(rank: int, world_size: int, store: str, logs, out: str) -> None:
    """One of two workers: its rows of a fixed batch, its share of the loss, the summed gradients."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        seed_everything(0)
        encoder = encoders.build("sasrec", {"n_items": logs.n_items, **BASE}).eval()  # no dropout
        sequences = logs.sequences()
        windows = training_windows(
            sequences, np.diff(sequences.offsets) - 2, max_len=8, pad_id=logs.n_items, mode="last"
        )
        items = torch.from_numpy(windows.item_ids[:40])
        rows = slice(0, 25) if rank == 0 else slice(25, 40)  # uneven: the shares differ
        batch = encoder.training_batch(items[rows], None, None)
        loss = encoder.loss(batch)
        backward_share(loss, int((batch.targets != IGNORE_TARGET).sum()), torch.device("cpu"))
        parameters = list(encoder.parameters())
        all_reduce_gradients(parameters)
        grads = {name: p.grad.clone() for name, p in encoder.named_parameters()}
        torch.save(grads, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_workers_sum_to_the_gradient_of_the_union_batch(cyclic_logs, tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "grads")
    mp.spawn(_gradient_worker, args=(2, str(tmp_path / "store"), cyclic_logs, out), nprocs=2)

    seed_everything(0)
    encoder = encoders.build("sasrec", {"n_items": cyclic_logs.n_items, **BASE}).eval()
    sequences = cyclic_logs.sequences()
    windows = training_windows(
        sequences, np.diff(sequences.offsets) - 2, max_len=8, pad_id=cyclic_logs.n_items, mode="last"
    )
    encoder.loss(encoder.training_batch(torch.from_numpy(windows.item_ids[:40]), None, None)).backward()
    worker_grads = [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(2)]
    for name, p in encoder.named_parameters():
        assert torch.equal(worker_grads[0][name], worker_grads[1][name]), name  # replicas stay equal
        torch.testing.assert_close(worker_grads[0][name], p.grad, rtol=1e-5, atol=1e-7, msg=name)


def _train_encoder(args: list[str]):
    import typer
    from typer.testing import CliRunner

    from recsim_env.encoders.cli import train_encoder_command

    app = typer.Typer()
    app.command("train-encoder")(train_encoder_command)
    app.command("unused")(lambda: None)  # two commands: typer keeps the subcommand name
    return CliRunner().invoke(app, ["train-encoder", *args])


def test_train_encoder_refuses_zero_workers(cyclic_csv, tmp_path):
    result = _train_encoder(["--data", str(cyclic_csv), "--out", str(tmp_path / "o"), "--num-workers", "0"])
    assert result.exit_code == 1 and "--num-workers must be >= 1" in result.output
    assert not (tmp_path / "o").exists()


def test_train_encoder_refuses_a_ray_address_where_no_cluster_answers(cyclic_csv, tmp_path, monkeypatch):
    import importlib.util
    import socket

    with socket.socket() as handle:  # a port nobody listens on once closed
        handle.bind(("127.0.0.1", 0))
        port = handle.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    result = _train_encoder(["--data", str(cyclic_csv), "--out", str(tmp_path / "o"), "--num-workers", "2"])
    assert result.exit_code == 1
    if importlib.util.find_spec("ray") is None:
        assert "needs ray" in result.output
    else:
        assert f"RAY_ADDRESS='127.0.0.1:{port}': no Ray cluster answers there" in result.output
    assert not (tmp_path / "o").exists()
