"""Steps in blocks of users on parallel threads (`simulators.stepping`): the same rollouts bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from recsim_env.errors import ArgumentError
from simulators.stepping import BLOCK_ALIGN, MIN_BLOCK_ROWS, default_threads, map_blocks, row_blocks


@pytest.mark.parametrize("n", [1, 255, 511, 512, 600, 777, 1000, 1024, 4099])
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_row_blocks_cover_the_rows_in_aligned_blocks(n, threads):
    blocks = row_blocks(n, threads)
    assert blocks[0].start == 0 and blocks[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))
    assert len(blocks) <= threads
    assert all(b.start % BLOCK_ALIGN == 0 for b in blocks)
    if len(blocks) > 1:
        assert min(b.stop - b.start for b in blocks) >= MIN_BLOCK_ROWS - BLOCK_ALIGN
    assert len(blocks) == 1 or n >= 2 * MIN_BLOCK_ROWS


def test_map_blocks_keeps_the_order_and_the_torch_threads():
    torch.set_num_threads(1)
    assert map_blocks(lambda rows: (rows.start, torch.get_num_threads()), 1024, 3) == [
        (0, 1),
        (320, 1),
        (704, 1),
    ]
    assert torch.get_num_threads() == 1


def _rollout(simulator, n, steps=12, slate_size=1):
    from recsim_env.envs.seqrec import SeqRecVectorEnv

    env = SeqRecVectorEnv(
        num_envs=n, user_model=simulator, history_len=simulator.history_len, slate_size=slate_size
    )
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    out = []
    for _ in range(steps):
        action = np.argsort(rng.random((n, simulator.n_items)), axis=1)[:, :slate_size]
        obs, reward, terminated, truncated, info = env.step(action if slate_size > 1 else action[:, 0])
        out += [reward, terminated, truncated, info["chosen_position"], *obs.values()]
    state = env.user_state
    carried = state.carried if isinstance(state.carried, list) else [state.carried]
    return out + [a for c in carried for a in (c.beliefs, *c.events)]


def _set_threads(simulator, threads):
    for member in getattr(simulator, "simulators", [simulator]):
        member.threads = threads


@pytest.mark.parametrize(("n", "threads"), [(600, 2), (1000, 3), (1000, 2)])
def test_blocks_on_threads_step_as_one_thread(saved_simulator, n, threads):
    """An ensemble and its first member alone, with slates of 2 (blocks end at a row that is no multiple
    of the vector width in the last block only)."""
    import simulators

    ensemble = simulators.load(saved_simulator)
    for simulator in (ensemble, ensemble.simulators[0]):
        _set_threads(simulator, 1)
        whole = _rollout(simulator, n, slate_size=2)
        _set_threads(simulator, threads)
        blocks = _rollout(simulator, n, slate_size=2)
        assert len(whole) == len(blocks)
        for a, b in zip(whole, blocks):
            np.testing.assert_array_equal(a, b)
    assert torch.get_num_threads() == 1


def test_step_threads_refuse_bad_values(monkeypatch, saved_simulator):
    import simulators

    monkeypatch.setenv("SEQREC_SIMULATOR_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("SEQREC_SIMULATOR_THREADS", "two")
    with pytest.raises(ArgumentError, match="SEQREC_SIMULATOR_THREADS"):
        default_threads()
    member = simulators.load(saved_simulator).simulators[0]
    with pytest.raises(ArgumentError, match="threads"):
        type(member)(
            member.config, member.schema, member.model, member.start_pool, member.item_tokens, threads=0
        )


def test_the_item_table_is_kept_until_a_weight_changes(saved_simulator):
    import simulators

    member = simulators.load(saved_simulator).simulators[0]
    table = member._item_table(member.n_items + 1)
    assert member._item_table(member.n_items + 1) is table
    assert member._item_table(member.n_items) is None  # few lookups: no table
    with torch.no_grad():
        member.model.encoder.item_embedding.weight.mul_(2.0)
    again = member._item_table(member.n_items + 1)
    assert again is not table and not torch.equal(again, table)
    with torch.inference_mode():
        torch.testing.assert_close(again, member.model.item_vectors(torch.arange(member.n_items + 1)))


def test_freed_memory_policy_can_be_left_alone():
    code = "from simulators.stepping import keep_freed_memory; print(keep_freed_memory())"
    env = {**os.environ, "SEQREC_SIMULATOR_KEEP_FREED_MEMORY": "0"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    env.pop("SEQREC_SIMULATOR_KEEP_FREED_MEMORY")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ("True" if sys.platform.startswith("linux") else "False")


def test_steps_run_on_one_torch_thread_whatever_torch_says(saved_simulator):
    import simulators

    member = simulators.load(saved_simulator).simulators[0]
    member.threads = 1
    one = _rollout(member, 600)
    torch.set_num_threads(2)
    try:
        two = _rollout(member, 600)
        assert torch.get_num_threads() == 2  # restored after every step
    finally:
        torch.set_num_threads(1)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
