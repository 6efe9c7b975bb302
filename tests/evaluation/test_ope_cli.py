"""`seqrec ope-report` on small CSV / Parquet logs and on MovieLens 100K."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

ML100K = Path(__file__).resolve().parents[2] / "../shared/data/ml-100k"
ESTIMATOR_NAMES = ("DM", "IPS", "SNIPS", "DR", "SNDR", "Switch-DR", "DRos")


def _log(n: int = 600, n_items: int = 4, slate: bool = False, seed: int = 0) -> pd.DataFrame:
    """A uniform logger over `n_items` items; item i is clicked with probability 0.1 + 0.2 i."""
    rng = np.random.default_rng(seed)
    item = rng.integers(0, n_items, size=n)
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 30, size=n),
            "item_id": item,
            "timestamp": np.arange(n, dtype=float),
            "click": rng.binomial(1, 0.1 + 0.2 * item).astype(float),
            "propensity": np.full(n, 1.0 / n_items),
        }
    )
    if slate:
        frame["position"] = rng.integers(0, 2, size=n)
    return frame


def _check_report(out: Path, n_images: int = 2) -> str:
    html = (out / "report.html").read_text(encoding="utf-8")
    for name in ESTIMATOR_NAMES:
        assert f"<td>{name}</td>" in html
    assert html.count("data:image/png;base64,") == n_images
    assert (
        (out / "report.md").is_file()
        and (out / "estimates.png").is_file()
        and (out / "weights.png").is_file()
    )
    return html


def test_uniform_policy_on_a_csv_log(tmp_path, run_ope_report):
    path = tmp_path / "log.csv"
    _log().to_csv(path, index=False)
    result = run_ope_report(
        "--logs", str(path), "--policy", "uniform", "--out", str(tmp_path / "out"), "--n-bootstrap", "100"
    )
    assert result.exit_code == 0, result.output
    assert "verdict: undecided" in result.output  # uniform over a uniform logger is the logged policy
    _check_report(tmp_path / "out")


def test_npy_policy_on_a_parquet_slate_log(tmp_path, run_ope_report):
    frame = _log(slate=True)
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    # LoggedInteractions sorts rows by (user, timestamp): the .npy rows follow that order. The policy always
    # shows item 3 (click rate 0.7) against a logged value of ~0.4.
    dist = np.zeros((len(frame), 4))
    dist[:, 3] = 1.0
    np.save(tmp_path / "best_item.npy", dist)
    result = run_ope_report(
        "--logs", str(path), "--policy", str(tmp_path / "best_item.npy"), "--out", str(tmp_path / "out"),
        "--n-bootstrap", "100", "--min-ess", "20",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "verdict: better" in result.output
    html = _check_report(tmp_path / "out")
    assert "best_item" in html


def test_bad_policy_and_bad_log_fail_with_a_message(tmp_path, run_ope_report):
    path = tmp_path / "log.csv"
    _log().to_csv(path, index=False)
    result = run_ope_report("--logs", str(path), "--policy", "greedy.pt", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and "expected 'uniform', a saved policy directory or a .npy" in result.output
    np.save(tmp_path / "wrong.npy", np.full((3, 4), 0.25))
    result = run_ope_report(
        "--logs", str(path), "--policy", str(tmp_path / "wrong.npy"), "--out", str(tmp_path / "out")
    )
    assert result.exit_code == 1 and "action distribution has shape (3, 4)" in result.output
    _log().drop(columns="propensity").to_csv(path, index=False)
    result = run_ope_report("--logs", str(path), "--policy", "uniform", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and "'propensity': missing" in result.output
    bad = _log()
    bad.loc[5, "propensity"] = 0.0
    bad.to_csv(path, index=False)
    result = run_ope_report("--logs", str(path), "--policy", "uniform", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and "propensity" in result.output and "outside (0, 1]" in result.output


def test_estimated_propensities_on_movielens_100k(tmp_path, run_ope_report):
    if not (ML100K / "ml-100k.inter").is_file():
        pytest.skip(f"MovieLens 100K not found at {ML100K.resolve()}")
    result = run_ope_report(
        "--logs", str(ML100K), "--policy", "uniform", "--out", str(tmp_path / "out"), "--reward", "rating",
        "--estimate-pscore", "--max-rounds", "3000", "--n-bootstrap", "100",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    html = _check_report(tmp_path / "out")
    assert "empirical (item, position) frequency" in html
    assert "random subsample of 3,000" in html


def test_world_logs_produce_a_report(tmp_path, run_ope_report):
    logging = pytest.importorskip("recsim_env.world.logging")
    logs = logging.log_world("epsilon-greedy", steps=3_000, epsilon=0.3, slate_size=1, progress=False)
    path = tmp_path / "world.parquet"
    logs.to_parquet(path)
    result = run_ope_report(
        "--logs", str(path), "--policy", "uniform", "--out", str(tmp_path / "out"), "--n-bootstrap", "100",
        "--fqe-steps", "20",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # World logs have sessions: the sequential estimators, FQE and the risk section join the bandit ones.
    html = _check_report(tmp_path / "out", n_images=4)
    assert "uniform policy on world.parquet" in html
    for name in ("PDIS", "WPDIS", "seq-DR", "WDR", "seq-Switch-DR", "FQE", "CVaR 10%", "lower quartile"):
        assert f"<td>{name}</td>" in html
    assert "Risk: the distribution of the session return" in html
    # The logger shows its greedy item 70% of the time: the uniform policy's clicks are far fewer.
    assert "verdict: worse" in result.output


def test_importing_the_command_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, evaluation.cli, evaluation.ope, evaluation.report; "
        "heavy = [m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


def test_ope_report_evaluates_a_saved_policy_directory(tmp_path, run_ope_report):
    """A saved agents.Policy is evaluated on the log's own histories; a uniform one matches --policy uniform."""
    from agents.baselines import fit_baseline
    from recsim_env.world.logging import log_world

    logs = log_world("epsilon-greedy", steps=3000, seed=0, epsilon=0.3, progress=False)
    logs_path = tmp_path / "logs.parquet"
    logs.to_parquet(logs_path)
    fit_baseline("uniform", logs).save(tmp_path / "uniform-policy")
    fit_baseline("greedy", logs).save(tmp_path / "greedy-policy")
    outputs = {}
    for name, policy in (
        ("builtin", "uniform"),
        ("saved", str(tmp_path / "uniform-policy")),
        ("greedy", str(tmp_path / "greedy-policy")),
    ):
        out = tmp_path / f"report-{name}"
        args = ["--logs", str(logs_path), "--policy", policy, "--out", str(out)]
        result = run_ope_report(*args, "--n-bootstrap", "50", "--no-sequential")
        assert result.exit_code == 0, result.output
        outputs[name] = (out / "report.md").read_text()
    ips = re.compile(r"\| IPS \| ([-0-9.]+) ")
    assert ips.search(outputs["builtin"]).group(1) == ips.search(outputs["saved"]).group(1)
    assert ips.search(outputs["greedy"]).group(1) != ips.search(outputs["builtin"]).group(1)
    assert "greedy-policy" in outputs["greedy"]


def test_ope_report_on_an_encoder_trained_on_movielens_100k(tmp_path, run_ope_report):
    """The ml-100k artifact a team has first: a `seqrec train-encoder` checkpoint, evaluated as a policy."""
    if not (ML100K / "ml-100k.inter").is_file():
        pytest.skip(f"MovieLens 100K not found at {ML100K.resolve()}")
    encoder_dir = tmp_path / "sasrec"
    from recsim_env.cli import build_app

    train = CliRunner().invoke(
        build_app(),
        ["train-encoder", "--data", str(ML100K), "--out", str(encoder_dir), "--d-model", "16",
         "--max-len", "20", "--epochs", "1", "--device", "cpu", "--threads", "1", "--no-progress"],
    )  # fmt: skip
    assert train.exit_code == 0, train.output
    out = tmp_path / "report"
    result = run_ope_report(
        "--logs", str(ML100K), "--policy", str(encoder_dir), "--out", str(out), "--reward", "rating",
        "--estimate-pscore", "--max-rounds", "2000", "--n-bootstrap", "50",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    html = _check_report(out)
    assert "sasrec" in html and "empirical (item, position) frequency" in html


def test_encoder_policy_never_recommends_history_items_and_round_trips(tmp_path):
    import torch

    from agents import load_policy
    from agents.encoder_policy import EncoderPolicy
    from recsim_env import encoders
    from recsim_env.encoders.checkpoint import load_checkpoint, save

    torch.manual_seed(0)
    encoder = encoders.build("sasrec", {"n_items": 30, "max_len": 8, "d_model": 16})
    save(tmp_path / "bare", encoder, item_ids=[f"i{k}" for k in range(30)])
    bare = load_policy(tmp_path / "bare")  # a bare checkpoint loads with the default settings
    assert isinstance(bare, EncoderPolicy) and bare.exclude_seen and bare.temperature == 1.0
    obs = {"item_ids": np.array([[30, 30, 3, 7, 7], [1, 2, 3, 4, 5]]), "feedback": np.zeros((2, 5, 6))}
    probs = bare.action_distribution(obs)
    assert probs.shape == (2, 30) and np.allclose(probs.sum(axis=1), 1.0)
    assert (probs[0, [3, 7]] == 0).all() and (probs[1, 1:6] == 0).all() and (probs[0, 0] > 0)
    sharp = EncoderPolicy(load_checkpoint(tmp_path / "bare"), temperature=0.1, exclude_seen=False)
    sharp.save(tmp_path / "saved")
    again = load_policy(tmp_path / "saved")
    assert again.temperature == 0.1 and not again.exclude_seen
    np.testing.assert_array_equal(again.action_distribution(obs), sharp.action_distribution(obs))
    assert again.act({k: v[0] for k, v in obs.items()}) in range(30)
    with pytest.raises(ValueError, match="temperature"):
        EncoderPolicy(load_checkpoint(tmp_path / "bare"), temperature=0.0)
