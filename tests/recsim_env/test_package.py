"""The package as users meet it: a light import, the `seqrec` command and its discovered sub-commands."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from recsim_env.cli import build_app


def test_import_recsim_env_and_make_stays_light():
    code = (
        "import sys, gymnasium as gym, recsim_env; env = gym.make('SeqRec-v0'); env.reset(seed=0); env.step(1);"
        "heavy = [m for m in ('torch', 'ray', 'stable_baselines3') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_seqrec_discovers_the_commands_of_every_package():
    result = CliRunner().invoke(build_app(), ["--help"])
    assert result.exit_code == 0
    for command in ("data", "world", "demo"):
        assert command in result.output


def test_demo_prints_every_policy():
    result = CliRunner().invoke(build_app(), ["demo", "--episodes", "30", "--log-steps", "3000", "--json"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.output.strip().splitlines()[-1])
    names = [row["policy"] for row in table["policies"]]
    assert names == ["uniform", "popularity", "greedy", "myopic-oracle", "farsighted-oracle"]
    for row in table["policies"]:
        assert row["episodes"] == 30 and row["session_length"] > 0 and row["return_gap_days"] > 0
