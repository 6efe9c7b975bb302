"""`seqrec ope-report` on logs with sessions: sequential estimators, FQE, risk, several candidates ranked."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.cli import OPEReportOptions, build_ope_report

CLICK = np.array([0.1, 0.3, 0.5, 0.7])
"""Click probability of each of the four items."""
CANDIDATES = {
    "good": np.array([0.1, 0.1, 0.1, 0.7]),  # session value 5 * 0.58 = 2.9
    "uniform-ish": np.array([0.25, 0.25, 0.25, 0.25]),  # 2.0, the logger's own
    "bad": np.array([0.7, 0.1, 0.1, 0.1]),  # 1.1
}
FAST = ("--n-bootstrap", "100", "--fqe-steps", "20", "--horizon", "5")


def session_log(n_sessions: int = 400, length: int = 5, seed: int = 0) -> pd.DataFrame:
    """A uniform logger over 4 items in sessions of `length` steps; item i is clicked with probability CLICK[i]."""
    rng = np.random.default_rng(seed)
    n = n_sessions * length
    item = rng.integers(0, 4, size=n)
    return pd.DataFrame(
        {
            "user_id": np.repeat(np.arange(n_sessions) // 2, length),  # two sessions per user
            "session_id": np.repeat(np.arange(n_sessions), length),
            "item_id": item,
            "timestamp": np.arange(n, dtype=float) * 30.0,
            "click": rng.binomial(1, CLICK[item]).astype(float),
            "propensity": np.full(n, 0.25),
        }
    )


def write_candidates(directory: Path, n_rows: int) -> list[str]:
    paths = []
    for name, probs in CANDIDATES.items():
        path = directory / f"{name}.npy"
        np.save(path, np.tile(probs, (n_rows, 1)))
        paths.append(str(path))
    return paths


def test_several_candidates_are_ranked_and_the_best_is_recommended(tmp_path, run_ope_report):
    frame = session_log()
    frame.to_csv(tmp_path / "log.csv", index=False)
    policies = write_candidates(tmp_path, len(frame))
    out = tmp_path / "out"
    args = ["--logs", str(tmp_path / "log.csv"), "--out", str(out), *FAST]
    for p in policies:
        args += ["--policy", p]
    result = run_ope_report(*args)
    assert result.exit_code == 0, result.output
    assert "recommendation: Deploy good" in result.output
    markdown = (out / "report.md").read_text()
    order = re.findall(r"^\| (\d) \| ([\w-]+) \|", markdown, flags=re.MULTILINE)
    assert order == [("1", "good"), ("2", "uniform-ish"), ("3", "bad")]
    assert "Ranked by seq-Switch-DR's lower confidence bound" in markdown
    for k in (1, 2, 3):
        assert f"## Candidate {k}:" in markdown
    html = (out / "report.html").read_text()
    for name in (
        "PDIS",
        "WPDIS",
        "seq-DR",
        "WDR",
        "seq-Switch-DR",
        "FQE",
        "CVaR 10%",
        "CVaR 30%",
        "lower quartile",
    ):
        assert f"<td>{name}</td>" in html
    # ranking + risk comparison, then per candidate: estimates, weights, sequential, risk.
    assert html.count("data:image/png;base64,") == 2 + 3 * 4
    assert {p.name for p in out.glob("*.png")} >= {"ranking.png", "risk.png", "candidate1-risk.png"}


def test_sequential_estimates_match_the_synthetic_truth():
    """Rewards are i.i.d. per step here, so a candidate's session value is 5 * sum_i pi(i) CLICK[i]."""
    import tempfile

    frame = session_log(n_sessions=600)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frame.to_parquet(tmp / "log.parquet")
        report, reports = build_ope_report(
            OPEReportOptions(
                logs=tmp / "log.parquet", policy=write_candidates(tmp, len(frame)), out=tmp / "out",
                n_bootstrap=100, fqe_steps=50, horizon=5, seed=1,
            )
        )  # fmt: skip
    for r, probs in zip(reports, CANDIDATES.values(), strict=True):
        truth = 5 * float(probs @ CLICK)
        seq = r.sequential
        assert seq.n_episodes == 600 and seq.horizon == 5
        for name in ("seq-DR", "WDR", "seq-Switch-DR"):
            est = seq.estimate(name)
            assert abs(est.value - truth) < 0.25, (r.policy_name, name, est, truth)
        risk = seq.risk
        assert np.all(np.diff(risk.policy.cdf) >= 0) and risk.policy.cdf[-1] == 1.0
        assert risk.measure("CVaR 10%").policy.value <= risk.measure("mean").policy.value
    assert report.ranking.logged.value == pytest.approx(2.0, abs=0.15)
    assert report.ranking.recommended == "good"


def test_bad_candidates_and_options_fail_naming_them(tmp_path, run_ope_report):
    frame = session_log(n_sessions=40)
    log = tmp_path / "log.csv"
    frame.to_csv(log, index=False)
    good, uniform_ish, _ = write_candidates(tmp_path, len(frame))
    np.save(tmp_path / "short.npy", np.full((len(frame) - 1, 4), 0.25))
    base = ["--logs", str(log), "--out", str(tmp_path / "out"), *FAST]

    result = run_ope_report(*base, "--policy", good, "--policy", str(tmp_path / "short.npy"))
    assert result.exit_code == 1
    assert "short.npy: action distribution has shape (199, 4), expected (200, 4[, 1])" in result.output
    np.save(tmp_path / "unnormalised.npy", np.full((len(frame), 4), 0.3))
    result = run_ope_report(*base, "--policy", good, "--policy", str(tmp_path / "unnormalised.npy"))
    assert result.exit_code == 1 and "unnormalised.npy: action_dist row 0" in result.output
    result = run_ope_report(*base, "--policy", good, "--policy", good)
    assert result.exit_code == 1 and "is given twice" in result.output
    result = run_ope_report(*base, "--policy", good, "--policy", "greedy.pt")
    assert result.exit_code == 1 and "--policy 'greedy.pt': expected 'uniform'" in result.output
    result = run_ope_report(*base, "--policy", good, "--policy", uniform_ish, "--rank-by", "best")
    assert result.exit_code == 1 and "--rank-by 'best': expected one of" in result.output
    result = run_ope_report(*base, "--policy", good, "--horizon", "0")
    assert result.exit_code == 1 and "--horizon" in result.output
    result = run_ope_report(*base, "--policy", good, "--cvar-alpha", "1.5")
    assert result.exit_code == 1 and "--cvar-alpha" in result.output
    result = run_ope_report(
        *base, "--policy", good, "--policy", uniform_ish, "--no-sequential", "--rank-by", "seq-DR"
    )
    assert result.exit_code == 1 and "a sequential estimator, but the log has no sessions" in result.output
    assert not (tmp_path / "out").exists()  # nothing written on a refusal


def test_without_sessions_candidates_are_ranked_by_dr(tmp_path, run_ope_report):
    frame = session_log(n_sessions=100).drop(columns="session_id")
    frame["user_id"] = np.arange(len(frame)) % 37  # no session column, no gap given: no sessions
    log = tmp_path / "log.csv"
    frame.to_csv(log, index=False)
    good, uniform_ish, bad = write_candidates(tmp_path, len(frame))
    result = run_ope_report(
        "--logs", str(log), "--out", str(tmp_path / "out"), "--n-bootstrap", "100",
        "--policy", bad, "--policy", good, "--policy", uniform_ish,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "Ranked by DR's lower confidence bound" in markdown and "Sequential estimators" not in markdown
    assert re.findall(r"^\| \d \| ([\w-]+) \|", markdown, flags=re.MULTILINE) == [
        "good",
        "uniform-ish",
        "bad",
    ]
