"""`seqrec ope-report`: off-policy evaluation report of a policy on a log.

Heavy libraries (scikit-learn, matplotlib) are imported inside the command, never at module import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console

from recsim_env.errors import ArgumentError, DataError

_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
_OPTIONAL_COLUMNS = {
    "position": "position",
    "propensity": "propensity",
    "session_id": "session",
    "slate_id": "slate",
}


def load_logs(path: Path):
    """Load a log: a `LoggedInteractions` parquet or data-set directory via `recsim_env.data.load`, or a
    CSV / TSV / Parquet table with `user_id`, `item_id`, `timestamp`, feedback columns and any of
    `position`, `propensity`, `session_id`, `slate_id`."""
    import pandas as pd

    from recsim_env.data.interactions import has_logged_interactions_metadata
    from recsim_env.data.loaders import ColumnMapping, load

    if (
        path.is_file()
        and path.suffix.lower() in _TABLE_SUFFIXES
        and not has_logged_interactions_metadata(path)
    ):
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            columns = pq.read_schema(path).names
        else:
            columns = list(
                pd.read_csv(path, nrows=0, sep="\t" if path.suffix.lower() == ".tsv" else ",").columns
            )
        # Reserved columns are only kept when mapped explicitly; map the ones the file has.
        mapping = ColumnMapping(**{field: col for col, field in _OPTIONAL_COLUMNS.items() if col in columns})
        return load(path, mapping=mapping)
    return load(path)


NPY_CHECK_ELEMENTS = 4_000_000
"""Elements of a `.npy` policy array checked at once (its rows are all checked, in bounded memory)."""


def read_npy(path: Path) -> np.ndarray:
    """A `.npy` file of plain numbers, memory-mapped read-only; never unpickles anything.

    The header is read and checked before any data: an object array (which only pickle could restore),
    a structured, string, boolean or complex dtype, or a corrupt header is refused with a `DataError`
    naming the file, and the data is then mapped with `allow_pickle=False`.
    """
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise DataError(f"{path}: unsupported .npy format version {version}")
    except DataError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        raise DataError(f"{path}: not a readable .npy array ({type(err).__name__}: {err})") from None
    if dtype.hasobject:
        raise DataError(
            f"{path}: the array holds Python objects (dtype {dtype}), which only unpickling could read; "
            "refused: save the action distribution as plain floats"
        )
    if dtype.kind not in "fiu":
        raise DataError(f"{path}: expected an array of probabilities (floats), got dtype {dtype}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npy array ({type(err).__name__}: {err})") from None


def check_policy_rows(where: str | Path, dist: np.ndarray) -> None:
    """Check every row of an action distribution `[n, N]` or `[n, N, K]`: finite, non-negative, and summing
    to 1 over actions within `ACTION_DIST_ATOL`. Rows are read in bounded chunks (a memory map stays one).

    Raises:
        DataError: naming `where`, the array and its first bad row (0-based, = log data row - 1).
    """
    from evaluation.ope.checks import ACTION_DIST_ATOL

    def located(index: tuple[int, ...]) -> str:
        row = index[0]
        text = f"{where}: action_dist row {row} (0-based; log data row {row + 1} in (user, timestamp) order)"
        labels = ("action", "position") if len(index) == dist.ndim else ("position",)
        return text + "".join(f", {label} {i}" for label, i in zip(labels, index[1:], strict=False))

    per_row = max(1, int(np.prod(dist.shape[1:], dtype=np.int64)))
    chunk = max(1, NPY_CHECK_ELEMENTS // per_row)
    for start in range(0, dist.shape[0], chunk):
        block = np.asarray(dist[start : start + chunk], dtype=np.float64)
        bad = ~(block >= 0.0)  # NaN included
        if bad.any() or not np.isfinite(block).all():
            bad |= ~np.isfinite(block)
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), block.shape))
            value = float(block[idx])
            why = "is not finite" if not np.isfinite(value) else "is negative"
            raise DataError(f"{located((start + idx[0], *idx[1:]))}: probability {value!r} {why}")
        sums = block.sum(axis=1)  # [c] or [c, K]
        off = ~(np.abs(sums - 1.0) <= ACTION_DIST_ATOL)
        if off.any():
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(off)), off.shape))
            raise DataError(
                f"{located((start + idx[0], *idx[1:]))}: probabilities sum to {float(sums[idx]):.6g}, not 1"
            )


def policy_action_dist(
    policy: str, *, n_rounds: int, n_actions: int, n_positions: int
) -> tuple[np.ndarray, str]:
    """The evaluation policy's `action_dist` `[n, N, K]` and a display name.

    `policy` is "uniform", or a `.npy` file holding `[n, N]` (the same distribution at every position) or
    `[n, N, K]`, one row per log row in `LoggedInteractions.frame` order. Every row of the file is checked
    (`check_policy_rows`), not only the rows a subsample later scores.
    """
    if policy == "uniform":
        dist = np.full((1, n_actions, n_positions), 1.0 / n_actions)
        return np.broadcast_to(dist, (n_rounds, n_actions, n_positions)), "uniform policy"
    path = Path(policy)
    if path.suffix.lower() != ".npy":
        raise ArgumentError(
            f"--policy {policy!r}: expected 'uniform', a saved policy directory or a .npy action-distribution array"
        )
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    dist = read_npy(path)
    if dist.shape not in ((n_rounds, n_actions), (n_rounds, n_actions, n_positions)):
        raise DataError(
            f"{path}: action distribution has shape {dist.shape}, expected "
            f"({n_rounds}, {n_actions}[, {n_positions}]) (log rows, catalogue, positions)"
        )
    check_policy_rows(path, dist)
    if dist.ndim == 2:
        dist = np.broadcast_to(dist[:, :, None], (*dist.shape, n_positions))
    return dist, path.stem


def saved_policy_action_dist(
    policy_dir: Path, log, rows: np.ndarray, *, history_len: int, n_positions: int
) -> tuple[np.ndarray, str]:
    """`action_dist` `[len(rows), N, K]` of a saved `agents.Policy` on the log's rows.

    Each row's observation is what `SeqRec-v0` would have shown before that step: the user's last
    `history_len` logged items and their feedback (`recsim_env.data.history_windows`), the step within
    the session and the days since the previous session (both 0 when the log has no sessions). The
    policy's first-position distribution is used at every position.
    """
    from agents.policy import load_policy
    from recsim_env.data.batching import history_windows

    loaded = load_policy(policy_dir)
    if getattr(loaded, "n_items", log.n_items) != log.n_items:
        raise DataError(
            f"{policy_dir}: the policy recommends {loaded.n_items} items, the log's catalogue has {log.n_items}"
        )
    tokens = getattr(loaded, "item_tokens", None)  # policies that know their catalogue by raw item id
    if tokens is not None:
        from recsim_env.encoders.checkpoint import check_catalogue

        check_catalogue(tokens, np.asarray(log.item_ids.tokens).tolist(), where=str(policy_dir))
    windows = history_windows(log, history_len=history_len)
    session_step, gap_days = _session_position(log)
    obs = {
        "item_ids": windows.item_ids[windows.before[rows]],
        "feedback": windows.feedback[windows.before[rows]],
        "session_step": session_step[rows, None],
        "gap_days": gap_days[rows, None],
    }
    dist = np.asarray(loaded.action_distribution(obs))
    if dist.dtype.kind not in "fiu" or dist.shape != (len(rows), log.n_items):
        raise DataError(
            f"{policy_dir}: the policy's action_distribution returned {dist.dtype} of shape {dist.shape}, "
            f"expected floats of shape ({len(rows)}, {log.n_items})"
        )
    check_policy_rows(f"{policy_dir} (the policy's output)", dist)
    dist = dist.astype(np.float64, copy=False)
    return np.broadcast_to(dist[:, :, None], (*dist.shape, n_positions)), policy_dir.name


def _session_position(log) -> tuple[np.ndarray, np.ndarray]:
    """[n] step within the session and [n] days since the user's previous session (0 without `session_id`)."""
    from recsim_env.data.sessions import session_position, session_starts

    n = len(log.frame)
    starts = session_starts(log, gap_s=None) if n else None
    if starts is None:
        return np.zeros(n, np.int64), np.zeros(n, np.float32)
    return session_position(log, starts)


MAX_ROUNDS = 10_000_000
"""Largest `--max-rounds`: the scored arrays are n * N * K floats."""


def check_options(
    *,
    policy: str,
    out: Path,
    max_rounds: int,
    n_folds: int,
    alpha: float,
    n_bootstrap: int,
    min_ess: float,
    lambda_: float,
    seed: int,
    history_len: int,
) -> None:
    """Refuse bad `seqrec ope-report` options before any file is read; each message starts with the option."""
    from evaluation.ope.checks import MAX_BOOTSTRAP_SAMPLES
    from recsim_env.checks import check_integer, check_real

    if policy != "uniform" and not Path(policy).is_dir() and Path(policy).suffix.lower() != ".npy":
        raise ArgumentError(
            f"--policy {policy!r}: expected 'uniform', a saved policy directory or a .npy action-distribution array"
        )
    if out.exists() and not out.is_dir():
        raise ArgumentError(f"--out: {out} exists and is not a directory")
    check_integer("--max-rounds", max_rounds, low=1, high=MAX_ROUNDS)
    check_integer("--n-folds", n_folds, low=1)
    check_real("--alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    check_integer("--n-bootstrap", n_bootstrap, low=1, high=MAX_BOOTSTRAP_SAMPLES)
    check_real("--min-ess", min_ess, low=0.0)
    check_real("--lambda", lambda_, low=0.0, allow_inf=True)
    check_integer("--seed", seed, low=0, high=2**32 - 1 - n_folds)
    check_integer("--history-len", history_len, low=1, high=1 << 20)


def ope_report_command(
    logs: Annotated[Path, typer.Option("--logs", help="Log file or directory (CSV, TSV, Parquet, RecBole).")],
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            help="'uniform', a saved agents.Policy directory (seqrec train ...) or a .npy action distribution.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output directory for report.md, report.html, PNGs.")],
    reward: Annotated[
        str | None,
        typer.Option("--reward", help="Feedback column used as reward (default: click, else first)."),
    ] = None,
    estimate_pscore: Annotated[
        bool,
        typer.Option(help="Without a propensity column, use empirical item frequencies as propensities."),
    ] = False,
    max_rounds: Annotated[
        int,
        typer.Option(help="Evaluate on a seeded random subsample of at most this many rows (memory: n*N*K)."),
    ] = 20_000,
    n_folds: Annotated[int, typer.Option(help="Cross-fitting folds of the reward model.")] = 3,
    alpha: Annotated[float, typer.Option(help="Significance level (0.05: 95% intervals).")] = 0.05,
    n_bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates per interval.")] = 1000,
    min_ess: Annotated[float, typer.Option(help="Warn below this effective sample size.")] = 100.0,
    lambda_: Annotated[
        float, typer.Option("--lambda", help="Switch-DR threshold and DRos shrinkage.")
    ] = 100.0,
    seed: Annotated[int, typer.Option(help="Seed of the subsample, folds, reward model and bootstrap.")] = 0,
    history_len: Annotated[
        int, typer.Option(help="Observation history length a saved policy was trained with (SeqRec-v0: 20).")
    ] = 20,
) -> None:
    """Estimate a policy's value on a log with DM, IPS, SNIPS, DR, SNDR, Switch-DR and DRos; write a report."""
    from evaluation.ope import bandit_estimators
    from evaluation.ope.logged import bandit_feedback
    from evaluation.ope.regression import RegressionModel
    from evaluation.report import build_report

    console = Console(stderr=True)
    try:
        check_options(
            policy=policy,
            out=out,
            max_rounds=max_rounds,
            n_folds=n_folds,
            alpha=alpha,
            n_bootstrap=n_bootstrap,
            min_ess=min_ess,
            lambda_=lambda_,
            seed=seed,
            history_len=history_len,
        )
        with console.status("loading the log"):
            log = load_logs(logs)
            # Every row is checked here, before any subsample is drawn.
            feedback = bandit_feedback(
                log, reward_column=reward, estimate_missing_pscore=estimate_pscore, source=str(logs)
            )
        n_log = len(feedback.reward)
        if n_folds > min(n_log, max_rounds):
            raise ArgumentError(
                f"--n-folds must be at most the {min(n_log, max_rounds)} rows scored, got {n_folds}"
            )
        warnings = []
        if feedback.pscore_estimated:
            warnings.append(
                "The log records no propensities: pscore is the empirical (item, position) frequency, a "
                "non-contextual proxy for the logging policy, so every importance-weighted estimate is approximate."
            )
        rows = np.arange(n_log)
        if n_log > max_rounds:
            rows = np.sort(np.random.default_rng(seed).choice(n_log, size=max_rounds, replace=False))
            feedback = feedback.take(rows)
            warnings.append(f"Evaluated on a random subsample of {max_rounds:,} of {n_log:,} logged rows.")
        if Path(policy).is_dir():
            with console.status("computing the policy's action distribution"):
                dist, policy_name = saved_policy_action_dist(
                    Path(policy), log, rows, history_len=history_len, n_positions=feedback.n_positions
                )
        else:
            dist, policy_name = policy_action_dist(
                policy, n_rounds=n_log, n_actions=feedback.n_actions, n_positions=feedback.n_positions
            )
            dist = dist[rows]
        dist = np.ascontiguousarray(dist, dtype=np.float64)

        from sklearn.linear_model import Ridge

        # Logs carry no context here, so the reward model is a function of (item, position) alone; ridge on
        # their one-hot codes gives shrunken per-item means (trees would never split on rare items).
        regression = RegressionModel(
            n_actions=feedback.n_actions, len_list=feedback.n_positions, base_model=Ridge(alpha=1.0)
        )
        with console.status("fitting the reward model"):
            q_hat = regression.fit_predict(
                action=feedback.action,
                reward=feedback.reward,
                position=feedback.position,
                n_folds=n_folds,
                random_state=seed,
            )
        estimators = bandit_estimators(lambda_)
        report = build_report(
            estimators,
            **feedback.as_kwargs(),
            action_dist=dist,
            estimated_rewards_by_reg_model=q_hat,
            policy_name=f"{policy_name} on {logs.name}",
            alpha=alpha,
            n_bootstrap_samples=n_bootstrap,
            random_state=seed,
            min_ess=min_ess,
            extra_warnings=warnings,
            progress=True,
        )
        written = report.save(out)
    except (ValueError, OSError) as err:  # DataError is a ValueError
        Console(stderr=True).print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"verdict: {report.verdict}. {report.verdict_line}")
    for warning in report.warnings:
        typer.echo(f"warning: {warning}")
    typer.echo(f"wrote {', '.join(str(p) for p in written.values())}")
