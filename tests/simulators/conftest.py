"""Shared fixtures: small world logs and a tiny trained simulator (fast; seconds, not minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest

ML100K = Path(__file__).resolve().parents[2] / "../shared/data/ml-100k"

TINY = {
    "d_model": 16,
    "history_len": 8,
    "epochs": 2,
    "batch_size": 128,
    "dropout": 0.0,
    "seed": 0,
}
"""A tiny SimulatorConfig (as a dict) that trains in a few seconds."""


@pytest.fixture(scope="session")
def world_logs():
    from recsim_env.world.logging import log_world

    return log_world("uniform", steps=3000, seed=0, progress=False, num_envs=64)


@pytest.fixture(scope="session")
def tiny_fit(world_logs):
    from simulators import SimulatorConfig, fit

    return fit(world_logs, SimulatorConfig(**TINY, ensemble_size=2))


@pytest.fixture(scope="session")
def saved_simulator(tiny_fit, tmp_path_factory):
    from simulators import save

    return save(tiny_fit.simulator, tmp_path_factory.mktemp("sim") / "sim")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids OpenMP workers spinning
    against other processes (measured 20x slower with two under load)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
