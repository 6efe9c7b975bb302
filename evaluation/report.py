"""OPE reports: estimates with intervals, the logged value, importance-weight diagnostics and a verdict.

`build_report` runs a list of bandit estimators on one data set and returns an `OPEReport`; the report
renders itself to Markdown, to a self-contained HTML page (plots embedded as base64 PNGs) and to a folder
(`save`: report.md, report.html, estimates.png, weights.png, written atomically).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from evaluation.ope.base import BanditEstimator, Estimate, bootstrap_interval, validate_bandit_inputs
from evaluation.ope.checks import (
    FeedbackError,
    check_action_dist,
    check_bootstrap_arguments,
    numeric_array,
)
from recsim_env.checks import check_bool, check_real
from recsim_env.errors import ArgumentError

VERDICTS = ("better", "worse", "undecided")
PLOT_FILES = ("estimates.png", "weights.png")


def markdown_text(text: str) -> str:
    """`text` shown literally in Markdown: one line, with Markdown's and HTML's special characters escaped
    (a file name in a report must not become a link, an image or markup)."""
    text = " ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join("\\" + c if c in "\\`*_[]()#!|" else c for c in text)


@dataclass(frozen=True, kw_only=True, eq=False)
class OPEReport:
    """The outcome of evaluating one policy on one log, renderable as Markdown, HTML and PNG plots."""

    policy_name: str
    """What was evaluated, as shown in the report title."""
    estimates: tuple[Estimate, ...]
    """One estimate per estimator, with its (1 - alpha) bootstrap interval."""
    behaviour: Estimate
    """The logged (behaviour) policy's value: the mean logged reward, with its bootstrap interval."""
    n_rounds: int
    """Rounds (logged decisions) in the data."""
    ess: float
    """Effective sample size of the importance weights, (sum w)^2 / sum w^2 (Kong 1992)."""
    weight_stats: dict[str, float]
    """Summary of the importance weights w = action_dist / pscore: min, mean, median, p99, max, share_zero."""
    support_deficit: float
    """Mean evaluation-policy mass on actions outside the logger's support (0 when fully covered)."""
    warnings: tuple[str, ...]
    """Diagnostics the reader must see before trusting the numbers (low ESS, missing support, ...)."""
    verdict: str
    """"better", "worse" or "undecided" relative to the logged policy."""
    verdict_line: str
    """One sentence explaining the verdict."""
    primary: str
    """Name of the estimator whose interval decides the verdict."""
    alpha: float
    """Significance level of every interval."""
    weights: np.ndarray = field(repr=False)
    """The importance weights `[n]`, kept for the histogram."""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ArgumentError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    # ------------------------------------------------------------------------------------------- plots
    def plots(self) -> dict[str, bytes]:
        """The report's figures as PNG bytes, keyed by file name (`estimates.png`, `weights.png`)."""
        # Figures drawn on an Agg canvas directly (no pyplot): headless and no global backend switch.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        out: dict[str, bytes] = {}
        fig = Figure(figsize=(7, 0.5 * len(self.estimates) + 2))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        names = [e.name for e in self.estimates]
        values = np.array([e.value for e in self.estimates])
        lower = values - np.array([e.lower for e in self.estimates])
        upper = np.array([e.upper for e in self.estimates]) - values
        y = np.arange(len(names))
        ax.errorbar(values, y, xerr=[lower, upper], fmt="o", capsize=4, color="tab:blue")
        ax.axvspan(self.behaviour.lower, self.behaviour.upper, color="tab:gray", alpha=0.2)
        ax.axvline(self.behaviour.value, color="tab:gray", linestyle="--", label="logged policy")
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlabel(f"policy value ({self.behaviour_confidence_pct}% bootstrap interval)")
        ax.set_title(f"Estimated value of {self.policy_name}")
        ax.legend(loc="best")
        fig.tight_layout()
        out["estimates.png"] = _png(fig)

        fig = Figure(figsize=(7, 3.5))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        positive = self.weights[self.weights > 0]
        if positive.size:
            # Weights span orders of magnitude when the policies differ; a log axis keeps the tail visible.
            bins = (
                np.geomspace(positive.min(), positive.max() * 1.0001, 50)
                if positive.max() > positive.min()
                else 10
            )
            ax.hist(positive, bins=bins, color="tab:orange")
            if positive.max() > positive.min():
                ax.set_xscale("log")
        ax.set_xlabel("importance weight w = action_dist / pscore (w > 0)")
        ax.set_ylabel("rounds")
        ax.set_title(
            f"ESS = {self.ess:,.0f} of {self.n_rounds:,} rounds; {self.weight_stats['share_zero']:.1%} with w = 0"
        )
        fig.tight_layout()
        out["weights.png"] = _png(fig)
        return out

    @property
    def behaviour_confidence_pct(self) -> str:
        return f"{100 * (1 - self.alpha):g}"

    # ------------------------------------------------------------------------------------------- text
    def _rows(self) -> list[tuple[str, str, str, str, str]]:
        rows = []
        for e in self.estimates:
            relative = (
                (e.value - self.behaviour.value) / abs(self.behaviour.value)
                if self.behaviour.value
                else math.nan
            )
            rows.append((e.name, f"{e.value:.4f}", f"{e.lower:.4f}", f"{e.upper:.4f}", f"{relative:+.1%}"))
        return rows

    def to_markdown(self, image_dir: str | None = ".") -> str:
        """The report as Markdown; images are linked from `image_dir` (omitted when None)."""
        pct = self.behaviour_confidence_pct
        lines = [
            f"# Off-policy evaluation: {markdown_text(self.policy_name)}",
            "",
            f"**Verdict: {self.verdict}.** {self.verdict_line}",
            "",
            f"Logged (behaviour) policy value: {self.behaviour.value:.4f} "
            f"({pct}% interval {self.behaviour.lower:.4f} to {self.behaviour.upper:.4f}), {self.n_rounds:,} rounds.",
            "",
            f"| estimator | value | {pct}% lower | {pct}% upper | vs logged |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [f"| {' | '.join(row)} |" for row in self._rows()]
        lines += ["", "## Importance weights", ""]
        lines += [f"- effective sample size: {self.ess:,.1f} of {self.n_rounds:,} rounds"]
        lines += [f"- {key}: {value:.4g}" for key, value in self.weight_stats.items()]
        lines += [f"- evaluation-policy mass outside the logger's support: {self.support_deficit:.4g}"]
        lines += ["", "## Warnings", ""]
        lines += [f"- WARNING: {markdown_text(w)}" for w in self.warnings] or ["- none"]
        if image_dir is not None:
            lines += ["", "## Plots", ""]
            lines += [f"![{name}]({image_dir}/{name})" for name in PLOT_FILES]
        return "\n".join(lines) + "\n"

    def to_html(self, plots: dict[str, bytes] | None = None) -> str:
        """A self-contained HTML page: the plots are embedded as `data:image/png;base64,` URIs."""
        plots = self.plots() if plots is None else plots
        esc = html.escape
        pct = self.behaviour_confidence_pct
        table_rows = "\n".join(
            "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in self._rows()
        )
        stats = "\n".join(f"<li>{esc(k)}: {v:.4g}</li>" for k, v in self.weight_stats.items())
        warnings = "\n".join(f'<li class="warning">{esc(w)}</li>' for w in self.warnings) or "<li>none</li>"
        images = "\n".join(
            f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
            f"<figcaption>{esc(name)}</figcaption></figure>"
            for name, png in plots.items()
        )
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Off-policy evaluation: {esc(self.policy_name)}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: right; }}
td:first-child {{ text-align: left; }}
.warning {{ color: #a40000; }}
.verdict {{ font-size: 1.2em; }}
img {{ max-width: 100%; }}
</style>
</head>
<body>
<h1>Off-policy evaluation: {esc(self.policy_name)}</h1>
<p class="verdict"><strong>Verdict: {esc(self.verdict)}.</strong> {esc(self.verdict_line)}</p>
<p>Logged (behaviour) policy value: {self.behaviour.value:.4f} ({pct}% interval {self.behaviour.lower:.4f} to
{self.behaviour.upper:.4f}), {self.n_rounds:,} rounds.</p>
<table>
<tr><th>estimator</th><th>value</th><th>{pct}% lower</th><th>{pct}% upper</th><th>vs logged</th></tr>
{table_rows}
</table>
<h2>Importance weights</h2>
<ul>
<li>effective sample size: {self.ess:,.1f} of {self.n_rounds:,} rounds</li>
{stats}
<li>evaluation-policy mass outside the logger's support: {self.support_deficit:.4g}</li>
</ul>
<h2>Warnings</h2>
<ul>
{warnings}
</ul>
<h2>Plots</h2>
{images}
</body>
</html>
"""

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write report.md, report.html and the PNG plots into `out_dir`; return the paths.

        Everything is rendered in memory first, then every file is written to a temporary file beside its
        target and only then are all renamed into place: an interrupted or failed save leaves whole files
        (old or new), never a half-written one, and no temporaries; a directory it created is removed again.
        """
        if not isinstance(out_dir, str | os.PathLike):
            raise ArgumentError(f"out_dir: expected a path, got {type(out_dir).__name__}")
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise ArgumentError(f"out_dir: {out_dir} exists and is not a directory")
        plots = self.plots()
        files = {
            **plots,
            "report.md": self.to_markdown(".").encode("utf-8"),
            "report.html": self.to_html(plots).encode("utf-8"),
        }
        return write_files_atomically(out_dir, files)


def write_files_atomically(out_dir: Path, files: dict[str, bytes]) -> dict[str, Path]:
    """Write `files` (name -> bytes) into `out_dir`: all to temporaries first, then all renamed into place.

    On failure the temporaries are removed, and `out_dir` too when this call created it and it is empty.
    """
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    temporaries: dict[str, Path] = {}
    try:
        for name, data in files.items():
            fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".tmp")
            temporaries[name] = Path(tmp)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        for name, tmp in temporaries.items():
            os.replace(tmp, out_dir / name)
    except BaseException:
        for tmp in temporaries.values():
            tmp.unlink(missing_ok=True)
        if created:
            try:
                out_dir.rmdir()
            except OSError:
                pass
        raise
    return {name: out_dir / name for name in files}


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    # A fixed Software tag and no timestamp metadata keep the PNG bytes reproducible.
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def effective_sample_size(weights: np.ndarray) -> float:
    """Kong's effective sample size `(sum_i w_i)^2 / sum_i w_i^2` (0 when every weight is 0)."""
    squares = float(np.sum(weights**2))
    return float(np.sum(weights)) ** 2 / squares if squares > 0 else 0.0


def build_report(
    estimators: Sequence[BanditEstimator],
    *,
    reward: np.ndarray,
    action: np.ndarray,
    pscore: np.ndarray,
    action_dist: np.ndarray,
    position: np.ndarray | None = None,
    estimated_rewards_by_reg_model: np.ndarray | None = None,
    behaviour_action_dist: np.ndarray | None = None,
    policy_name: str = "evaluation policy",
    primary: str | None = None,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 1000,
    random_state: int = 0,
    min_ess: float = 100.0,
    support_tolerance: float = 1e-3,
    extra_warnings: Sequence[str] = (),
    progress: bool = False,
) -> OPEReport:
    """Run `estimators` on one log and assemble an `OPEReport`.

    Diagnostics: ESS = (sum w)^2 / sum w^2 with w = action_dist[i, a_i, k_i] / pscore_i; a warning when
    ESS < `min_ess`. Support: with `behaviour_action_dist` `[n, N, K]`, the mean evaluation mass on actions the
    logger gives probability 0; without it, the mean mass on (action, position) pairs that never occur in the
    log (an empirical proxy); a warning when it exceeds `support_tolerance`.

    Propensity check: with correct pscores the mean importance weight is 1 minus the evaluation mass
    outside the logger's support (between 1 minus the never-logged mass and 1 without
    `behaviour_action_dist`); a warning when the sample mean is further from that than 10% and four
    standard errors.

    Verdict: the `primary` estimator's interval (default DR, else SNIPS, else the first) against the logged
    value: "better" if its lower end is above it, "worse" if its upper end is below it, else "undecided";
    always "undecided" when the ESS is too small, (judged from `behaviour_action_dist`) support is
    missing, or the propensity check fails, since the interval is then not trustworthy.

    Args:
        estimators: Bandit estimators to run (model-based ones need `estimated_rewards_by_reg_model`).
        reward, action, pscore, action_dist, position, estimated_rewards_by_reg_model: OBP-named log arrays.
        behaviour_action_dist: The logger's full distribution, when known, for an exact support check.
        policy_name: Shown in the title.
        primary: Name of the estimator that decides the verdict.
        alpha: Significance level of all intervals.
        n_bootstrap_samples: Bootstrap replicates per interval.
        random_state: Seed of every bootstrap.
        min_ess: Warn (and withhold a verdict) below this effective sample size.
        support_tolerance: Warn (and withhold a verdict) above this much evaluation mass outside the support.
        extra_warnings: Caller-side warnings to show (e.g. estimated propensities).
        progress: Show a progress bar over the estimators.
    """
    if isinstance(estimators, str) or not isinstance(estimators, Sequence):
        raise ArgumentError(
            f"estimators: expected a sequence of bandit estimators, got {type(estimators).__name__}"
        )
    if not estimators:
        raise ArgumentError("estimators is empty: pass at least one estimator")
    for k, est in enumerate(estimators):
        if not isinstance(est, BanditEstimator):
            raise ArgumentError(f"estimators[{k}]: expected a bandit estimator, got {type(est).__name__}")
    check_bootstrap_arguments(alpha, n_bootstrap_samples, random_state)
    min_ess = check_real("min_ess", min_ess, low=0.0)
    support_tolerance = check_real("support_tolerance", support_tolerance, low=0.0, high=1.0)
    if not isinstance(policy_name, str):
        raise ArgumentError(f"policy_name: expected a string, got {type(policy_name).__name__}")
    if primary is not None and not isinstance(primary, str):
        raise ArgumentError(f"primary: expected an estimator name, got {type(primary).__name__}")
    if isinstance(extra_warnings, str) or not all(isinstance(w, str) for w in extra_warnings):
        raise ArgumentError("extra_warnings: expected a sequence of strings")
    check_bool("progress", progress)
    data = validate_bandit_inputs(
        reward=reward,
        action=action,
        pscore=pscore,
        action_dist=action_dist,
        position=position,
        estimated_rewards_by_reg_model=estimated_rewards_by_reg_model,
        require=("reward", "action", "pscore"),
    )
    n, n_actions, n_positions = data.action_dist.shape
    kwargs = data._asdict()  # the estimators' keyword arguments, validated
    boot = dict(alpha=alpha, n_bootstrap_samples=n_bootstrap_samples, random_state=random_state)
    estimates = tuple(
        est.estimate(**boot, **kwargs) for est in tqdm(estimators, desc="estimators", disable=not progress)
    )
    names = [e.name for e in estimates]
    if len(set(names)) != len(names):
        raise ArgumentError(f"estimators: estimator names must be unique, got {names}")

    behaviour_ci = bootstrap_interval({"reward": data.reward}, lambda t: t["reward"].mean(axis=-1), **boot)
    behaviour = Estimate(
        name="logged",
        value=float(data.reward.mean()),
        lower=behaviour_ci["lower"],
        upper=behaviour_ci["upper"],
        alpha=alpha,
    )

    rows = np.arange(n)
    weights = data.action_dist[rows, data.action, data.position] / data.pscore
    ess = effective_sample_size(weights)
    weight_stats = {
        "min": float(weights.min()),
        "mean": float(weights.mean()),
        "median": float(np.median(weights)),
        "p99": float(np.quantile(weights, 0.99)),
        "max": float(weights.max()),
        "share_zero": float(np.mean(weights == 0)),
    }

    pi_at_position = data.action_dist[rows, :, data.position]  # [n, N]
    if behaviour_action_dist is not None:
        behaviour_dist = numeric_array("behaviour_action_dist", behaviour_action_dist)
        if behaviour_dist.shape != data.action_dist.shape:
            raise FeedbackError(
                f"behaviour_action_dist has shape {behaviour_dist.shape} but action_dist has "
                f"{data.action_dist.shape} (shape mismatch)"
            )
        check_action_dist("behaviour_action_dist", behaviour_dist)
        unsupported = behaviour_dist[rows, :, data.position] <= 0  # [n, N]
    else:
        logged = np.zeros((n_actions, n_positions), dtype=bool)
        logged[data.action, data.position] = True
        unsupported = ~logged.T[data.position]  # [n, N]
    support_deficit = float((pi_at_position * unsupported).sum(axis=1).mean())

    warnings = list(extra_warnings)
    unreliable = []
    if ess < min_ess:
        unreliable.append(f"effective sample size {ess:.1f} < {min_ess:g}")
        warnings.append(
            f"Effective sample size is {ess:.1f} of {n:,} rounds (< {min_ess:g}): the evaluation policy rarely "
            "takes the logged actions, so importance-weighted estimates rest on a handful of rounds."
        )
    if support_deficit > support_tolerance:
        if behaviour_action_dist is not None:
            unreliable.append(f"{support_deficit:.1%} of the policy's mass lacks support")
            warnings.append(
                f"Missing support: the evaluation policy puts {support_deficit:.2%} of its mass on actions the "
                "logger never takes; IPS-type estimators cannot see that mass and DM/DR extrapolate there."
            )
        else:
            # Never-logged is only evidence of missing support: a rare action may simply not have come up,
            # so this warns without withholding the verdict.
            warnings.append(
                f"Possible missing support: the evaluation policy puts {support_deficit:.2%} of its mass on "
                "(action, position) pairs that never occur in the log; if the logger cannot take them, IPS-type "
                "estimators miss that mass and DM/DR extrapolate there (pass the logger's distribution as "
                "behaviour_action_dist for an exact check)."
            )

    # With the logger's true propensities E_b[w] = 1 - (mass outside its support): a sample mean far from
    # that (beyond sampling noise) says the pscores do not describe how the logged actions were chosen.
    # Without the logger's distribution the never-logged mass only bounds the support deficit from above.
    low = 1.0 - support_deficit
    high = low if behaviour_action_dist is not None else 1.0
    mean_weight = weight_stats["mean"]
    mean_error = max(low - mean_weight, mean_weight - high, 0.0)
    if mean_error > max(0.1 * high, 4.0 * weights.std() / np.sqrt(n)):
        expected = f"{low:.3g}" if low == high else f"between {low:.3g} and {high:.3g}"
        unreliable.append(f"mean importance weight {mean_weight:.3g}, expected {expected}")
        warnings.append(
            f"Propensities inconsistent with the log: the mean importance weight is {mean_weight:.3g}, but with "
            f"the logging policy's true pscores it would be {expected}. The pscores do not describe how the "
            "logged actions were chosen (estimated propensities, or logs where the user, not a recommender, "
            "chose the item), so IPS, DR and their variants are biased."
        )

    if primary is None:
        primary = next((p for p in ("DR", "SNIPS") if p in names), names[0])
    if primary not in names:
        raise ArgumentError(f"primary estimator {primary!r} is not among the estimators {names}")
    chosen = estimates[names.index(primary)]
    pct = f"{100 * (1 - alpha):g}%"
    if unreliable:
        verdict = "undecided"
        verdict_line = f"No verdict: {'; '.join(unreliable)}."
    elif chosen.lower > behaviour.value:
        verdict = "better"
        verdict_line = (
            f"{primary}'s {pct} interval [{chosen.lower:.4f}, {chosen.upper:.4f}] lies above the logged value "
            f"{behaviour.value:.4f}."
        )
    elif chosen.upper < behaviour.value:
        verdict = "worse"
        verdict_line = (
            f"{primary}'s {pct} interval [{chosen.lower:.4f}, {chosen.upper:.4f}] lies below the logged value "
            f"{behaviour.value:.4f}."
        )
    else:
        verdict = "undecided"
        verdict_line = (
            f"{primary}'s {pct} interval [{chosen.lower:.4f}, {chosen.upper:.4f}] contains the logged value "
            f"{behaviour.value:.4f}."
        )
    return OPEReport(
        policy_name=policy_name,
        estimates=estimates,
        behaviour=behaviour,
        n_rounds=n,
        ess=ess,
        weight_stats=weight_stats,
        support_deficit=support_deficit,
        warnings=tuple(warnings),
        verdict=verdict,
        verdict_line=verdict_line,
        primary=primary,
        alpha=alpha,
        weights=weights,
    )
