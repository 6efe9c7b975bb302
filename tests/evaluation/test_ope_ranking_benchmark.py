"""Smoke run of benchmarks/ope_ranking.py (slow: logs 15,000 world steps, fits FQE three times)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_ranking_benchmark_orders_the_candidates_as_the_world_does():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "benchmarks/ope_ranking.py", "--quick"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=900,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ranking_estimator"] == "seq-Switch-DR"
    assert len(result["candidates"]) == 3
    assert result["report_order"] == result["true_order"], result
    for res in result["candidates"].values():
        assert res["lower"] <= res["value"] <= res["upper"]
