"""`benchmarks/gpu_check.py` on a machine without CUDA: a clear message, one JSON line, exit 0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_skips_cleanly_without_cuda():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is here: the check would run (benchmarks/gpu_check.py, minutes)")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip()) == {"skipped": "no CUDA"}
    assert len(result.stdout.strip().splitlines()) == 1
    assert "no CUDA" in result.stderr
