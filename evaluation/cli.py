"""`seqrec ope-report`: off-policy evaluation report of one or several candidate policies on a log.

The log and the candidates' action distributions are read by `evaluation.cli_inputs`, the options checked by
`evaluation.cli_options`; their public names are importable from here too. Heavy libraries (scikit-learn,
matplotlib) are imported inside the command, never at module import.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console

from evaluation.cli_inputs import (
    NPY_CHECK_ELEMENTS,
    candidate_action_dist,
    check_policy_rows,
    load_logs,
    policy_action_dist,
    read_npy,
    saved_policy_action_dist,
    unique_names,
)
from evaluation.cli_options import (
    MAX_HORIZON,
    MAX_ROUNDS,
    RANKABLE,
    OPEReportOptions,
    sequential_names,
)
from evaluation.ope.sparse import SparseActionDist
from recsim_env.errors import ArgumentError

__all__ = [
    "MAX_HORIZON",
    "MAX_ROUNDS",
    "NPY_CHECK_ELEMENTS",
    "OPEReportOptions",
    "RANKABLE",
    "SEQUENTIAL_RANKER",
    "build_ope_report",
    "check_policy_rows",
    "load_logs",
    "ope_report_command",
    "policy_action_dist",
    "ranking_reason",
    "read_npy",
    "saved_policy_action_dist",
]

SEQUENTIAL_RANKER = "seq-Switch-DR"
"""The ranking estimator of a log with sessions."""
MIPS_LOGGER_MARGINAL = (
    "MIPS and SNMIPS weigh each row by the candidate's probability of the logged item's embedding ({name}, "
    "{values} values) over the logger's, which a log with one propensity per row does not give: the logger's is "
    "the embedding's frequency in the evaluated rows, exact only for a logger whose choice of embedding ignores "
    "the context; both are unbiased only if the reward depends on the item through its embedding alone."
)
"""The caveat of the MIPS rows (`--action-embedding`)."""


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


def build_ope_report(options: OPEReportOptions, *, console: Console | None = None):
    """What `seqrec ope-report` computes with `options`, without writing it: `(report, per-candidate reports)`.

    The report is the candidate's `OPEReport` for one policy, else a `ComparisonReport` ranking them;
    `options.out` is not written. `console` shows the progress (default: stderr).

    Raises:
        ArgumentError, DataError: for a bad log or policy, naming it.
    """
    from evaluation.ope import bandit_estimators
    from evaluation.ope.logged import bandit_feedback
    from evaluation.ope.regression import RegressionModel
    from evaluation.report import build_report

    console = console or Console(stderr=True)
    with console.status("loading the log"):
        log = load_logs(options.logs)
        # Every row is checked here, before any subsample is drawn.
        feedback = bandit_feedback(
            log,
            reward_column=options.reward,
            estimate_missing_pscore=options.estimate_pscore,
            source=str(options.logs),
        )
    n_log = len(feedback.reward)
    warnings = []
    if feedback.pscore_estimated:
        warnings.append(
            "The log records no propensities: pscore is the empirical (item, position) frequency, a "
            "non-contextual proxy for the logging policy, so every importance-weighted estimate is approximate."
        )
    session = None
    if options.sequential:
        from evaluation.sessions import session_index
        from recsim_env.data.sessions import SECONDS_PER_HOUR

        gap_s = None if options.session_gap_hours is None else options.session_gap_hours * SECONDS_PER_HOUR
        session = session_index(log, gap_s=gap_s)
        if session is not None and feedback.n_positions > 1:
            warnings.append(
                "The log has sessions but shows slates: the sequential estimators need one item per step, so "
                "the report has no sequential or risk section."
            )
            session = None
    rows = np.arange(n_log)
    if n_log > options.max_rounds:
        if session is not None:
            from evaluation.sessions import sample_sessions

            rows = sample_sessions(session, options.max_rounds, options.seed)
            what = (
                f"{len(np.unique(session[rows])):,} whole sessions ({len(rows):,} of {n_log:,} logged rows)"
            )
        else:
            rows = np.sort(
                np.random.default_rng(options.seed).choice(n_log, size=options.max_rounds, replace=False)
            )
            what = f"{options.max_rounds:,} of {n_log:,} logged rows"
        warnings.append(f"Evaluated on a random subsample of {what}.")
    if options.n_folds > len(rows):
        raise ArgumentError(f"--n-folds must be at most the {len(rows)} rows scored, got {options.n_folds}")
    scored = feedback.take(rows)
    if options.rank_by in sequential_names() and session is None:
        raise ArgumentError(
            f"--rank-by {options.rank_by!r}: a sequential estimator, but the log has no sessions here (no session_id "
            "column, no --session-gap-hours, slates, or --no-sequential); rank by a bandit estimator"
        )

    # Every candidate's action distribution is read and checked before anything is fitted.
    dists, names = [], []
    for p in options.policy:
        dist, name = candidate_action_dist(
            p, log, feedback, rows, n_log, history_len=options.history_len, console=console
        )
        dists.append(dist)
        names.append(name)
    names = unique_names(names)
    sparse = [isinstance(dist, SparseActionDist) for dist in dists]

    # Like the candidates, the item embedding is read and checked before anything is fitted.
    estimators = bandit_estimators(options.lambda_) + _embedding_estimators(
        options.action_embedding, n_actions=scored.n_actions, warnings=warnings
    )

    from sklearn.linear_model import Ridge

    # Logs carry no context here, so the reward model is a function of (item, position) alone; ridge on
    # their one-hot codes gives shrunken per-item means (trees would never split on rare items). It is kept
    # as one [N, K] table per fold, expanded to [n, N, K] only for a dense candidate.
    regression = RegressionModel(
        n_actions=scored.n_actions, len_list=scored.n_positions, base_model=Ridge(alpha=1.0)
    )
    with console.status("fitting the reward model"):
        q_table = regression.fit_predict_table(
            action=scored.action,
            reward=scored.reward,
            position=scored.position,
            n_folds=options.n_folds,
            random_state=options.seed,
        )
    q_dense = q_table.dense() if not all(sparse) else None

    episodes = layout = None
    if session is not None:
        layout, episodes = _episode_inputs(
            log, feedback, session, rows, horizon=options.horizon, console=console
        )

    single = len(options.policy) == 1
    # Every estimate's interval and diagnostics, bandit and sequential alike.
    interval = {
        "alpha": options.alpha,
        "n_bootstrap_samples": options.n_bootstrap,
        "random_state": options.seed,
        "min_ess": options.min_ess,
    }
    reports = []
    for dist, name, is_sparse in zip(dists, names, sparse, strict=True):
        report = build_report(
            estimators,
            **scored.as_kwargs(),
            action_dist=dist,
            estimated_rewards_by_reg_model=q_table if is_sparse else q_dense,
            policy_name=f"{name} on {options.logs.name}" if single else name,
            **interval,
            extra_warnings=warnings,
            progress=True,
        )
        if episodes is not None:
            from evaluation.session_ope import evaluate_sessions

            # A sparse candidate's rows are taken per step (episode-major, `E * H` rows), never `[E, H, N]`;
            # a masked step reads row 0's, which the estimators never use.
            steps = dist.take(layout.index.ravel()) if is_sparse else layout.gather(dist[:, :, 0])
            with console.status(f"sequential estimators and FQE for {name}"):
                seq = evaluate_sessions(
                    **episodes,
                    action_dist=steps,
                    gamma=options.gamma,
                    max_weight=options.lambda_,
                    fqe_iterations=options.fqe_iterations,
                    fqe_steps=options.fqe_steps,
                    cvar_alphas=options.cvar_alphas,
                    **interval,
                )
            report = dataclasses.replace(report, sequential=seq)
        reports.append(report)

    final = (
        reports[0]
        if single
        else _comparison(reports, logs=options.logs, rank_by=options.rank_by, max_weight=options.lambda_)
    )
    return final, tuple(reports)


def ope_report_command(
    logs: Annotated[Path, typer.Option("--logs", help="Log file or directory (CSV, TSV, Parquet, RecBole).")],
    policy: Annotated[
        list[str],
        typer.Option(
            "--policy",
            help="'uniform', a saved agents.Policy directory (seqrec train ...), a .npy action distribution or a "
            "sparse .npz (items, probs, rest: each row's top items plus the rest's mass, for large catalogues); "
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
            "has them (memory: n*N*K for a dense candidate, n*T for a sparse one)."
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
    action_embedding: Annotated[
        Path | None,
        typer.Option(
            help="One integer embedding value per item (a .npy array, or a one-column .parquet / .csv with a "
            "header, in item-index order), e.g. its category: adds MIPS and SNMIPS to the bandit estimators."
        ),
    ] = None,
) -> None:
    """Estimate policies' values on a log (bandit estimators; with sessions also PDIS, WPDIS, DR, WDR,
    Switch-DR, FQE and the return's risk), rank several candidates and write a report."""
    try:
        options = OPEReportOptions(
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
            action_embedding=action_embedding,
        )
        final, reports = build_ope_report(options)
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


def _embedding_estimators(path: Path | None, *, n_actions: int, warnings: list[str]) -> list:
    """MIPS and SNMIPS over the item embedding in `path` (none without one); appends their caveat to `warnings`."""
    if path is None:
        return []
    from evaluation.cli_inputs import read_action_embedding
    from evaluation.ope import (
        MarginalizedInverseProbabilityWeighting,
        SelfNormalizedMarginalizedInverseProbabilityWeighting,
    )

    embedding = read_action_embedding(path, n_actions=n_actions)
    warnings.append(MIPS_LOGGER_MARGINAL.format(name=path.name, values=int((embedding.counts > 0).sum())))
    return [
        MarginalizedInverseProbabilityWeighting(action_embedding=embedding),
        SelfNormalizedMarginalizedInverseProbabilityWeighting(action_embedding=embedding),
    ]


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
    sequential_scale = estimator in sequential_names()
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
