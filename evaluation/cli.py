"""`seqrec ope-report`: off-policy evaluation report of one or several candidate policies on a log.

Heavy libraries (scikit-learn, matplotlib) are imported inside the command, never at module import.
"""

from __future__ import annotations

import dataclasses
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
MAX_HORIZON = 10_000
"""Largest `--horizon` (steps of a session evaluated)."""


def check_options(
    *,
    policy: str | list[str],
    out: Path,
    max_rounds: int,
    n_folds: int,
    alpha: float,
    n_bootstrap: int,
    min_ess: float,
    lambda_: float,
    seed: int,
    history_len: int,
    horizon: int = 20,
    gamma: float = 1.0,
    fqe_iterations: int | None = None,
    fqe_steps: int = 200,
    session_gap_hours: float | None = None,
    cvar_alpha: list[float] | tuple[float, ...] = (0.1, 0.3),
    rank_by: str | None = None,
) -> None:
    """Refuse bad `seqrec ope-report` options before any file is read; each message starts with the option."""
    from evaluation.ope.checks import MAX_BOOTSTRAP_SAMPLES
    from recsim_env.checks import check_integer, check_real

    policies = [policy] if isinstance(policy, str) else list(policy)
    if not policies:
        raise ArgumentError("--policy: give at least one policy to evaluate")
    for p in policies:
        if p != "uniform" and not Path(p).is_dir() and Path(p).suffix.lower() != ".npy":
            raise ArgumentError(
                f"--policy {p!r}: expected 'uniform', a saved policy directory or a .npy action-distribution array"
            )
    seen: set[str] = set()
    for p in policies:
        key = p if p == "uniform" else str(Path(p).resolve())
        if key in seen:
            raise ArgumentError(f"--policy {p!r} is given twice: each candidate once")
        seen.add(key)
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
    check_integer("--horizon", horizon, low=1, high=MAX_HORIZON)
    check_real("--gamma", gamma, low=0.0, high=1.0)
    if fqe_iterations is not None:
        check_integer("--fqe-iterations", fqe_iterations, low=1, high=100_000)
    check_integer("--fqe-steps", fqe_steps, low=1, high=1_000_000)
    if session_gap_hours is not None:
        check_real("--session-gap-hours", session_gap_hours, low=0.0, low_open=True)
    if not cvar_alpha:
        raise ArgumentError("--cvar-alpha: give at least one tail share in (0, 1]")
    for a in cvar_alpha:
        check_real("--cvar-alpha", a, low=0.0, high=1.0, low_open=True)
    if rank_by is not None and rank_by not in RANKABLE:
        raise ArgumentError(f"--rank-by {rank_by!r}: expected one of {', '.join(RANKABLE)}")


def _bandit_names() -> tuple[str, ...]:
    from evaluation.ope import bandit_estimators

    return tuple(e.estimator_name for e in bandit_estimators())


def _sequential_names() -> tuple[str, ...]:
    from evaluation.session_ope import SEQUENTIAL_NAMES

    return SEQUENTIAL_NAMES


RANKABLE = _bandit_names() + _sequential_names()
"""Estimators `--rank-by` may name: the bandit ones (per decision) and the sequential ones (per session)."""
SEQUENTIAL_RANKER = "seq-Switch-DR"
"""The ranking estimator of a log with sessions."""


def ranking_reason(estimator: str, *, max_weight: float, chosen: bool) -> str:
    """Why `estimator` ranks the candidates, for the report."""
    if chosen:
        why = "Chosen with --rank-by."
    elif estimator == SEQUENTIAL_RANKER:
        why = (
            "It estimates the return of a whole session, which is what deploying a recommender changes (not only "
            "the next click); its cumulative importance weights are capped at M = "
            f"{max_weight:g} (beyond it a session's remaining value is FQE's), so a few sessions cannot swamp the "
            "interval the way they swamp PDIS, and its importance-weighted correction limits FQE's bias."
        )
    else:
        why = (
            "The log has no sessions, so candidates are ranked by their value per decision; DR is unbiased with "
            "correct propensities and its reward-model baseline narrows the interval compared with IPS."
        )
    return (
        why
        + " A candidate is recommended only when that lower bound is above the logged policy's value and its "
        "diagnostics (effective sample size, support, propensities) hold."
    )


def _candidate_dist(
    policy: str, log, feedback, rows: np.ndarray, n_log: int, *, history_len: int, console: Console
) -> tuple[np.ndarray, str]:
    """One candidate's `action_dist` `[len(rows), N, K]` (float64, contiguous) and display name."""
    if Path(policy).is_dir():
        with console.status(f"computing the action distribution of {policy}"):
            dist, name = saved_policy_action_dist(
                Path(policy), log, rows, history_len=history_len, n_positions=feedback.n_positions
            )
    else:
        dist, name = policy_action_dist(
            policy, n_rounds=n_log, n_actions=feedback.n_actions, n_positions=feedback.n_positions
        )
        dist = dist[rows]
    return np.ascontiguousarray(dist, dtype=np.float64), name


def _unique_names(names: list[str]) -> list[str]:
    """`names` with a repeated one numbered: ["a", "a"] -> ["a", "a (2)"]."""
    out: list[str] = []
    for name in names:
        candidate, k = name, 1
        while candidate in out:
            k += 1
            candidate = f"{name} ({k})"
        out.append(candidate)
    return out


def build_ope_report(
    *,
    logs: Path,
    policy: list[str],
    out: Path,
    reward: str | None = None,
    estimate_pscore: bool = False,
    max_rounds: int = 20_000,
    n_folds: int = 3,
    alpha: float = 0.05,
    n_bootstrap: int = 1000,
    min_ess: float = 100.0,
    lambda_: float = 100.0,
    seed: int = 0,
    history_len: int = 20,
    sequential: bool = True,
    horizon: int = 20,
    gamma: float = 1.0,
    fqe_iterations: int | None = None,
    fqe_steps: int = 200,
    session_gap_hours: float | None = None,
    cvar_alpha: list[float] | None = None,
    rank_by: str | None = None,
    console: Console | None = None,
):
    """What `seqrec ope-report` computes, without writing it: `(report, per-candidate reports)`.

    The report is the candidate's `OPEReport` for one `--policy`, else a `ComparisonReport` ranking them.
    Arguments are the command's options (see `ope_report_command`); `out` is only checked.

    Raises:
        ArgumentError, DataError: for a bad option, log or policy, naming it.
    """
    from evaluation.ope import bandit_estimators
    from evaluation.ope.logged import bandit_feedback
    from evaluation.ope.regression import RegressionModel
    from evaluation.report import build_report

    console = console or Console(stderr=True)
    cvar_alphas = tuple(cvar_alpha) if cvar_alpha else (0.1, 0.3)
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
        horizon=horizon,
        gamma=gamma,
        fqe_iterations=fqe_iterations,
        fqe_steps=fqe_steps,
        session_gap_hours=session_gap_hours,
        cvar_alpha=cvar_alphas,
        rank_by=rank_by,
    )
    with console.status("loading the log"):
        log = load_logs(logs)
        # Every row is checked here, before any subsample is drawn.
        feedback = bandit_feedback(
            log, reward_column=reward, estimate_missing_pscore=estimate_pscore, source=str(logs)
        )
    n_log = len(feedback.reward)
    warnings = []
    if feedback.pscore_estimated:
        warnings.append(
            "The log records no propensities: pscore is the empirical (item, position) frequency, a "
            "non-contextual proxy for the logging policy, so every importance-weighted estimate is approximate."
        )
    session = None
    if sequential:
        from evaluation.sessions import session_index
        from recsim_env.data.sessions import SECONDS_PER_HOUR

        gap_s = None if session_gap_hours is None else session_gap_hours * SECONDS_PER_HOUR
        session = session_index(log, gap_s=gap_s)
        if session is not None and feedback.n_positions > 1:
            warnings.append(
                "The log has sessions but shows slates: the sequential estimators need one item per step, so "
                "the report has no sequential or risk section."
            )
            session = None
    rows = np.arange(n_log)
    if n_log > max_rounds:
        if session is not None:
            from evaluation.sessions import sample_sessions

            rows = sample_sessions(session, max_rounds, seed)
            what = (
                f"{len(np.unique(session[rows])):,} whole sessions ({len(rows):,} of {n_log:,} logged rows)"
            )
        else:
            rows = np.sort(np.random.default_rng(seed).choice(n_log, size=max_rounds, replace=False))
            what = f"{max_rounds:,} of {n_log:,} logged rows"
        warnings.append(f"Evaluated on a random subsample of {what}.")
    if n_folds > len(rows):
        raise ArgumentError(f"--n-folds must be at most the {len(rows)} rows scored, got {n_folds}")
    scored = feedback.take(rows)
    if rank_by in _sequential_names() and session is None:
        raise ArgumentError(
            f"--rank-by {rank_by!r}: a sequential estimator, but the log has no sessions here (no session_id "
            "column, no --session-gap-hours, slates, or --no-sequential); rank by a bandit estimator"
        )

    # Every candidate's action distribution is read and checked before anything is fitted.
    dists, names = [], []
    for p in policy:
        dist, name = _candidate_dist(p, log, feedback, rows, n_log, history_len=history_len, console=console)
        dists.append(dist)
        names.append(name)
    names = _unique_names(names)

    from sklearn.linear_model import Ridge

    # Logs carry no context here, so the reward model is a function of (item, position) alone; ridge on
    # their one-hot codes gives shrunken per-item means (trees would never split on rare items).
    regression = RegressionModel(
        n_actions=scored.n_actions, len_list=scored.n_positions, base_model=Ridge(alpha=1.0)
    )
    with console.status("fitting the reward model"):
        q_hat = regression.fit_predict(
            action=scored.action,
            reward=scored.reward,
            position=scored.position,
            n_folds=n_folds,
            random_state=seed,
        )

    episodes = layout = None
    if session is not None:
        layout, episodes = _episode_inputs(log, feedback, session, rows, horizon=horizon, console=console)

    single = len(policy) == 1
    reports = []
    for dist, name in zip(dists, names, strict=True):
        report = build_report(
            bandit_estimators(lambda_),
            **scored.as_kwargs(),
            action_dist=dist,
            estimated_rewards_by_reg_model=q_hat,
            policy_name=f"{name} on {logs.name}" if single else name,
            alpha=alpha,
            n_bootstrap_samples=n_bootstrap,
            random_state=seed,
            min_ess=min_ess,
            extra_warnings=warnings,
            progress=True,
        )
        if episodes is not None:
            from evaluation.session_ope import evaluate_sessions

            with console.status(f"sequential estimators and FQE for {name}"):
                seq = evaluate_sessions(
                    **episodes,
                    action_dist=layout.gather(dist[:, :, 0]),
                    gamma=gamma,
                    max_weight=lambda_,
                    fqe_iterations=fqe_iterations,
                    fqe_steps=fqe_steps,
                    cvar_alphas=cvar_alphas,
                    alpha=alpha,
                    n_bootstrap_samples=n_bootstrap,
                    random_state=seed,
                    min_ess=min_ess,
                )
            report = dataclasses.replace(report, sequential=seq)
        reports.append(report)

    final = reports[0] if single else _comparison(reports, logs=logs, rank_by=rank_by, max_weight=lambda_)
    return final, tuple(reports)


def ope_report_command(
    logs: Annotated[Path, typer.Option("--logs", help="Log file or directory (CSV, TSV, Parquet, RecBole).")],
    policy: Annotated[
        list[str],
        typer.Option(
            "--policy",
            help="'uniform', a saved agents.Policy directory (seqrec train ...) or a .npy action distribution; "
            "repeat to compare and rank several candidates.",
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
        typer.Option(
            help="Evaluate on a seeded random subsample of at most this many rows, whole sessions when the log "
            "has them (memory: n*N*K)."
        ),
    ] = 20_000,
    n_folds: Annotated[int, typer.Option(help="Cross-fitting folds of the reward model.")] = 3,
    alpha: Annotated[float, typer.Option(help="Significance level (0.05: 95% intervals).")] = 0.05,
    n_bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates per interval.")] = 1000,
    min_ess: Annotated[float, typer.Option(help="Warn below this effective sample size.")] = 100.0,
    lambda_: Annotated[
        float,
        typer.Option("--lambda", help="Switch-DR threshold (bandit and sequential) and DRos shrinkage."),
    ] = 100.0,
    seed: Annotated[
        int, typer.Option(help="Seed of the subsample, folds, reward model, FQE and bootstrap.")
    ] = 0,
    history_len: Annotated[
        int, typer.Option(help="Observation history length a saved policy was trained with (SeqRec-v0: 20).")
    ] = 20,
    sequential: Annotated[
        bool,
        typer.Option(help="With sessions in the log: sequential estimators, FQE and the risk section."),
    ] = True,
    horizon: Annotated[int, typer.Option(help="Steps of each session evaluated (its first H).")] = 20,
    gamma: Annotated[float, typer.Option(help="Discount factor of the session return.")] = 1.0,
    fqe_iterations: Annotated[
        int | None, typer.Option(help="FQE's Bellman backups (default: the horizon).")
    ] = None,
    fqe_steps: Annotated[int, typer.Option(help="FQE's gradient steps per backup.")] = 200,
    session_gap_hours: Annotated[
        float | None,
        typer.Option(
            help="Without a session_id column: a gap of more than this many hours starts a session."
        ),
    ] = None,
    cvar_alpha: Annotated[
        list[float] | None,
        typer.Option("--cvar-alpha", help="Tail share of a CVaR row (repeatable; default 0.1 and 0.3)."),
    ] = None,
    rank_by: Annotated[
        str | None,
        typer.Option(
            help="Estimator whose lower bound ranks the candidates (default: seq-Switch-DR with sessions, else DR)."
        ),
    ] = None,
) -> None:
    """Estimate policies' values on a log (bandit estimators; with sessions also PDIS, WPDIS, DR, WDR,
    Switch-DR, FQE and the return's risk), rank several candidates and write a report."""
    try:
        final, reports = build_ope_report(
            logs=logs,
            policy=policy,
            out=out,
            reward=reward,
            estimate_pscore=estimate_pscore,
            max_rounds=max_rounds,
            n_folds=n_folds,
            alpha=alpha,
            n_bootstrap=n_bootstrap,
            min_ess=min_ess,
            lambda_=lambda_,
            seed=seed,
            history_len=history_len,
            sequential=sequential,
            horizon=horizon,
            gamma=gamma,
            fqe_iterations=fqe_iterations,
            fqe_steps=fqe_steps,
            session_gap_hours=session_gap_hours,
            cvar_alpha=cvar_alpha,
            rank_by=rank_by,
        )
        written = final.save(out)
    except (ValueError, OSError) as err:  # DataError is a ValueError
        Console(stderr=True).print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    single = len(reports) == 1
    for report in reports:
        prefix = "" if single else f"{report.policy_name}: "
        typer.echo(f"{prefix}verdict: {report.verdict}. {report.verdict_line}")
    if not single:
        typer.echo(f"recommendation: {final.ranking.recommendation}")
    for warning in dict.fromkeys(w for r in reports for w in r.all_warnings):
        typer.echo(f"warning: {warning}")
    typer.echo(f"wrote {', '.join(str(p) for p in written.values())}")


def _episode_inputs(log, feedback, session: np.ndarray, rows: np.ndarray, *, horizon: int, console: Console):
    """The scored rows as episodes: their `SessionEpisodes` layout, and the state, reward, action, pscore,
    mask, item features and truncated share as keyword arguments of `evaluate_sessions`."""
    from evaluation.sessions import item_features, session_episodes, session_state_features

    with console.status("building session episodes and their states"):
        layout = session_episodes(session[rows], horizon=horizon)
        state = session_state_features(log, feedback.reward, session)[rows]
        return layout, {
            "state": layout.gather(state),
            "reward": layout.gather(feedback.reward[rows]),
            "action": layout.gather(feedback.action[rows]).astype(np.int64),
            "pscore": layout.gather(feedback.pscore[rows], fill=1.0),
            "mask": layout.mask,
            "item_features": item_features(log, feedback.reward),
            "truncated_share": float(np.mean(layout.length > horizon)),
        }


def _comparison(reports: list, *, logs: Path, rank_by: str | None, max_weight: float):
    """Rank the candidates' reports by `rank_by` (default: seq-Switch-DR with sessions, else the bandit
    verdict's estimator) and wrap them in a `ComparisonReport`."""
    from evaluation.ranking import Candidate, rank_candidates
    from evaluation.report import ComparisonReport

    has_sessions = all(r.sequential is not None for r in reports)
    estimator = rank_by or (SEQUENTIAL_RANKER if has_sessions else reports[0].primary)
    sequential_scale = estimator in _sequential_names()
    candidates = []
    for r in reports:
        pool = r.sequential.estimates if sequential_scale else r.estimates
        found = next((e for e in pool if e.name == estimator), None)
        if found is None:
            available = [e.name for e in pool]
            raise ArgumentError(
                f"--rank-by {estimator!r}: no such estimate for {r.policy_name} (it has {available}); "
                "choose another --rank-by"
            )
        candidates.append(Candidate(name=r.policy_name, estimate=found, issues=r.reliability_issues))
    logged = reports[0].sequential.behaviour if sequential_scale else reports[0].behaviour
    ranking = rank_candidates(
        candidates,
        logged=logged,
        estimator=estimator,
        reason=ranking_reason(estimator, max_weight=max_weight, chosen=rank_by is not None),
    )
    title = f"Off-policy evaluation of {len(reports)} candidates on {logs.name}"
    return ComparisonReport(title=title, reports=tuple(reports), ranking=ranking)
