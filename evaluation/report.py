"""OPE reports: estimates with intervals, the logged value, importance-weight diagnostics and a verdict.

`build_report` runs a list of bandit estimators on one data set and returns an `OPEReport`; with a log of
sessions the caller attaches the sequential estimates, FQE and the risk section (`evaluation.session_ope`,
`dataclasses.replace(report, sequential=...)`). A report renders itself to Markdown, to a self-contained HTML
page (plots embedded as base64 PNGs) and to a folder (`save`: report.md, report.html, estimates.png,
weights.png and, with sessions, sequential.png and risk.png, written atomically). `ComparisonReport` holds
several candidates' reports with their ranking (`evaluation.ranking`) and renders them as one page.
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
from evaluation.ope.risk import ReturnDistribution, RiskResult
from evaluation.ranking import Ranking
from evaluation.session_ope import SequentialResult
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
    reliability_issues: tuple[str, ...] = ()
    """Why the estimates are not trusted enough for a verdict (low ESS, missing support, bad propensities)."""
    sequential: SequentialResult | None = None
    """Sequential estimates, FQE and the risk section on the log's sessions; None for a log without sessions."""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ArgumentError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @property
    def behaviour_confidence_pct(self) -> str:
        return f"{100 * (1 - self.alpha):g}"

    @property
    def all_estimates(self) -> tuple[Estimate, ...]:
        """The bandit estimates, then the sequential ones."""
        return self.estimates + (self.sequential.estimates if self.sequential is not None else ())

    @property
    def all_warnings(self) -> tuple[str, ...]:
        """The bandit diagnostics, then the sequential ones."""
        return self.warnings + (self.sequential.warnings if self.sequential is not None else ())

    def plot_names(self) -> tuple[str, ...]:
        """File names of the report's figures, in the order they are shown."""
        names = PLOT_FILES
        if self.sequential is not None:
            names += ("sequential.png",)
            if self.sequential.risk is not None:
                names += ("risk.png",)
        return names

    # ------------------------------------------------------------------------------------------- plots
    def plots(self) -> dict[str, bytes]:
        """The report's figures as PNG bytes, keyed by file name (`plot_names`)."""
        out = {
            "estimates.png": _interval_png(
                self.estimates,
                self.behaviour,
                title=f"Estimated value of {self.policy_name}",
                xlabel=f"policy value per decision ({self.behaviour_confidence_pct}% bootstrap interval)",
            ),
            "weights.png": _weights_png(
                self.weights, self.ess, self.n_rounds, self.weight_stats["share_zero"]
            ),
        }
        seq = self.sequential
        if seq is not None:
            out["sequential.png"] = _interval_png(
                seq.estimates,
                seq.behaviour,
                title=f"Session return of {self.policy_name} (first {seq.horizon} steps)",
                xlabel=f"expected session return ({self.behaviour_confidence_pct}% bootstrap interval)",
            )
            if seq.risk is not None:
                out["risk.png"] = _risk_png([(self.policy_name, seq.risk.policy)], seq.risk.logged, seq.risk)
        return out

    # ------------------------------------------------------------------------------------------- text
    def to_markdown(self, image_dir: str | None = ".") -> str:
        """The report as Markdown; images are linked from `image_dir` (omitted when None)."""
        images = None if image_dir is None else [f"{image_dir}/{name}" for name in self.plot_names()]
        return "\n".join(self.markdown_lines(level=1, images=images)) + "\n"

    def markdown_lines(
        self, *, level: int, images: Sequence[str] | None, title: str | None = None
    ) -> list[str]:
        """The report's Markdown lines with its title at heading `level`; `images` are the plots' links."""
        pct = self.behaviour_confidence_pct
        h = "#" * level
        lines = [
            f"{h} {markdown_text(title or f'Off-policy evaluation: {self.policy_name}')}",
            "",
            f"**Verdict: {self.verdict}.** {self.verdict_line}",
            "",
            f"Logged (behaviour) policy value: {self.behaviour.value:.4f} "
            f"({pct}% interval {self.behaviour.lower:.4f} to {self.behaviour.upper:.4f}), {self.n_rounds:,} rounds.",
            "",
            f"| estimator | value | {pct}% lower | {pct}% upper | vs logged |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [f"| {' | '.join(row)} |" for row in _estimate_rows(self.estimates, self.behaviour.value)]
        seq = self.sequential
        if seq is not None:
            lines += ["", f"{h}# Sequential estimators (per session)", "", _sequential_intro(seq), ""]
            lines += [
                f"| estimator | value | {pct}% lower | {pct}% upper | vs logged |",
                "|---|---:|---:|---:|---:|",
            ]
            lines += [f"| {' | '.join(row)} |" for row in _estimate_rows(seq.estimates, seq.behaviour.value)]
            lines += ["", *[f"- {note}" for note in _sequential_notes(seq)]]
            lines += ["", f"{h}# Risk: the distribution of the session return", ""]
            if seq.risk is None:
                lines += ["Not estimated (see the warnings)."]
            else:
                lines += [_risk_intro(seq.risk), ""]
                lines += [
                    f"| measure | policy | {pct}% lower | {pct}% upper | logged | {pct}% lower | {pct}% upper |",
                    "|---|---:|---:|---:|---:|---:|---:|",
                ]
                lines += [f"| {' | '.join(row)} |" for row in _risk_rows(seq.risk)]
        lines += ["", f"{h}# Importance weights", ""]
        lines += [f"- effective sample size: {self.ess:,.1f} of {self.n_rounds:,} rounds"]
        lines += [f"- {key}: {value:.4g}" for key, value in self.weight_stats.items()]
        lines += [f"- evaluation-policy mass outside the logger's support: {self.support_deficit:.4g}"]
        lines += ["", f"{h}# Warnings", ""]
        lines += [f"- WARNING: {markdown_text(w)}" for w in self.all_warnings] or ["- none"]
        if images is not None:
            lines += ["", f"{h}# Plots", ""]
            lines += [f"![{Path(link).name}]({link})" for link in images]
        return lines

    def to_html(self, plots: dict[str, bytes] | None = None) -> str:
        """A self-contained HTML page: the plots are embedded as `data:image/png;base64,` URIs."""
        plots = self.plots() if plots is None else plots
        title = f"Off-policy evaluation: {self.policy_name}"
        return _html_page(title, self.html_body(level=1, plots=plots, title=title))

    def html_body(
        self, *, level: int, plots: dict[str, bytes], title: str | None = None, anchor: str = ""
    ) -> str:
        """The report's HTML (no page around it) with its title at heading `level`."""
        esc = html.escape
        pct = self.behaviour_confidence_pct
        h1, h2 = f"h{level}", f"h{level + 1}"
        header = f"<tr><th>estimator</th><th>value</th><th>{pct}% lower</th><th>{pct}% upper</th><th>vs logged</th></tr>"
        parts = [
            f'<{h1} id="{anchor}title">{esc(title or f"Off-policy evaluation: {self.policy_name}")}</{h1}>',
            f'<p class="verdict"><strong>Verdict: {esc(self.verdict)}.</strong> {esc(self.verdict_line)}</p>',
            f"<p>Logged (behaviour) policy value: {self.behaviour.value:.4f} ({pct}% interval "
            f"{self.behaviour.lower:.4f} to\n{self.behaviour.upper:.4f}), {self.n_rounds:,} rounds.</p>",
            f'<table id="{anchor}bandit">\n{header}\n{_html_rows(_estimate_rows(self.estimates, self.behaviour.value))}\n</table>',
        ]
        seq = self.sequential
        if seq is not None:
            parts += [
                f'<section id="{anchor}sequential">',
                f"<{h2}>Sequential estimators (per session)</{h2}>",
                f"<p>{esc(_sequential_intro(seq))}</p>",
                f"<table>\n{header}\n{_html_rows(_estimate_rows(seq.estimates, seq.behaviour.value))}\n</table>",
                "<ul>" + "".join(f"<li>{esc(note)}</li>" for note in _sequential_notes(seq)) + "</ul>",
                "</section>",
                f'<section id="{anchor}risk">',
                f"<{h2}>Risk: the distribution of the session return</{h2}>",
            ]
            if seq.risk is None:
                parts.append("<p>Not estimated (see the warnings).</p>")
            else:
                risk_header = (
                    f"<tr><th>measure</th><th>policy</th><th>{pct}% lower</th><th>{pct}% upper</th>"
                    f"<th>logged</th><th>{pct}% lower</th><th>{pct}% upper</th></tr>"
                )
                parts += [
                    f"<p>{esc(_risk_intro(seq.risk))}</p>",
                    f"<table>\n{risk_header}\n{_html_rows(_risk_rows(seq.risk))}\n</table>",
                ]
            parts.append("</section>")
        stats = "\n".join(f"<li>{esc(k)}: {v:.4g}</li>" for k, v in self.weight_stats.items())
        warnings = (
            "\n".join(f'<li class="warning">{esc(w)}</li>' for w in self.all_warnings) or "<li>none</li>"
        )
        parts += [
            f"<{h2}>Importance weights</{h2}>",
            f"<ul>\n<li>effective sample size: {self.ess:,.1f} of {self.n_rounds:,} rounds</li>\n{stats}\n"
            f"<li>evaluation-policy mass outside the logger's support: {self.support_deficit:.4g}</li>\n</ul>",
            f"<{h2}>Warnings</{h2}>",
            f"<ul>\n{warnings}\n</ul>",
            f"<{h2}>Plots</{h2}>",
            _html_images(plots),
        ]
        return "\n".join(parts)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write report.md, report.html and the PNG plots into `out_dir`; return the paths.

        Everything is rendered in memory first, then every file is written to a temporary file beside its
        target and only then are all renamed into place: an interrupted or failed save leaves whole files
        (old or new), never a half-written one, and no temporaries; a directory it created is removed again.
        """
        out_dir = _check_out_dir(out_dir)
        plots = self.plots()
        files = {
            **plots,
            "report.md": self.to_markdown(".").encode("utf-8"),
            "report.html": self.to_html(plots).encode("utf-8"),
        }
        return write_files_atomically(out_dir, files)


@dataclass(frozen=True, kw_only=True, eq=False)
class ComparisonReport:
    """Several candidate policies evaluated on one log, ranked, with a deployment recommendation."""

    title: str
    """What was compared, shown in the title."""
    reports: tuple[OPEReport, ...]
    """One report per candidate, in the order the candidates were given."""
    ranking: Ranking
    """The candidates ranked by the ranking estimator's lower bound, and the recommendation."""

    def _prefix(self, k: int) -> str:
        return f"candidate{k + 1}-"

    def plots(self) -> dict[str, bytes]:
        """`ranking.png`, `risk.png` (every candidate's return CDF, when estimated) and each candidate's plots
        prefixed `candidate<k>-` (k from 1, in the given order)."""
        by_name = {r.policy_name: r for r in self.reports}
        ranked = [by_name[c.name] for c in self.ranking.candidates]
        out = {"ranking.png": _ranking_png(self.ranking)}
        risks = [
            r.sequential.risk for r in ranked if r.sequential is not None and r.sequential.risk is not None
        ]
        if risks and len(risks) == len(ranked):
            out["risk.png"] = _risk_png(
                [(r.policy_name, r.sequential.risk.policy) for r in ranked], risks[0].logged
            )
        for k, report in enumerate(self.reports):
            out.update({self._prefix(k) + name: png for name, png in report.plots().items()})
        return out

    def _ranking_rows(self) -> list[tuple[str, ...]]:
        logged = self.ranking.logged.value
        return [
            (
                str(rank + 1),
                c.name,
                f"{c.estimate.value:.4f}",
                f"{c.estimate.lower:.4f}",
                f"{c.estimate.upper:.4f}",
                f"{c.estimate.lower - logged:+.4f}",
                "yes" if c.eligible else "no: " + "; ".join(c.issues),
            )
            for rank, c in enumerate(self.ranking.candidates)
        ]

    def _ranking_header(self) -> tuple[str, ...]:
        pct = f"{100 * (1 - self.ranking.logged.alpha):g}%"
        return ("rank", "candidate", "value", f"{pct} lower", f"{pct} upper", "lower - logged", "trusted")

    def _logged_line(self) -> str:
        logged = self.ranking.logged
        return (
            f"Logged policy's value on this scale (the on-policy mean of the log): {logged.value:.4f} "
            f"({100 * (1 - logged.alpha):g}% interval {logged.lower:.4f} to {logged.upper:.4f})."
        )

    def to_markdown(self, image_dir: str | None = ".") -> str:
        """The comparison as Markdown; images are linked from `image_dir` (omitted when None)."""
        ranking = self.ranking
        lines = [
            f"# {markdown_text(self.title)}",
            "",
            f"**Recommendation: {markdown_text(ranking.recommendation)}**",
            "",
            "## Ranking",
            "",
            f"Ranked by {ranking.estimator}'s lower confidence bound. {ranking.reason}",
            "",
            self._logged_line(),
            "",
            f"| {' | '.join(self._ranking_header())} |",
            "|---:|---|---:|---:|---:|---:|---|",
        ]
        for row in self._ranking_rows():
            lines.append(
                f"| {' | '.join((row[0], markdown_text(row[1]), *row[2:6], markdown_text(row[6])))} |"
            )
        plots = self.plots()
        if image_dir is not None:
            lines += ["", f"![ranking.png]({image_dir}/ranking.png)"]
            if "risk.png" in plots:
                lines += ["", f"![risk.png]({image_dir}/risk.png)"]
        for k, report in enumerate(self.reports):
            images = (
                None
                if image_dir is None
                else [f"{image_dir}/{self._prefix(k)}{name}" for name in report.plot_names()]
            )
            lines += [
                "",
                *report.markdown_lines(
                    level=2, images=images, title=f"Candidate {k + 1}: {report.policy_name}"
                ),
            ]
        return "\n".join(lines) + "\n"

    def to_html(self, plots: dict[str, bytes] | None = None) -> str:
        """A self-contained HTML page: the plots are embedded as `data:image/png;base64,` URIs."""
        plots = self.plots() if plots is None else plots
        esc = html.escape
        ranking = self.ranking
        header = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in self._ranking_header()) + "</tr>"
        parts = [
            f'<h1 id="title">{esc(self.title)}</h1>',
            f'<p class="verdict" id="recommendation"><strong>Recommendation:</strong> {esc(ranking.recommendation)}</p>',
            '<section id="ranking">',
            "<h2>Ranking</h2>",
            f"<p>Ranked by {esc(ranking.estimator)}'s lower confidence bound. {esc(ranking.reason)}</p>",
            f"<p>{esc(self._logged_line())}</p>",
            f"<table>\n{header}\n{_html_rows(self._ranking_rows())}\n</table>",
            _html_images({k: v for k, v in plots.items() if k in ("ranking.png", "risk.png")}),
            "</section>",
        ]
        for k, report in enumerate(self.reports):
            prefix = self._prefix(k)
            own = {name[len(prefix) :]: png for name, png in plots.items() if name.startswith(prefix)}
            parts += [
                f'<section id="{prefix}report" class="candidate">',
                report.html_body(
                    level=2, plots=own, title=f"Candidate {k + 1}: {report.policy_name}", anchor=prefix
                ),
                "</section>",
            ]
        return _html_page(self.title, "\n".join(parts))

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write report.md, report.html and every plot into `out_dir` atomically (see `OPEReport.save`)."""
        out_dir = _check_out_dir(out_dir)
        plots = self.plots()
        files = {
            **plots,
            "report.md": self.to_markdown(".").encode("utf-8"),
            "report.html": self.to_html(plots).encode("utf-8"),
        }
        return write_files_atomically(out_dir, files)


def _check_out_dir(out_dir: object) -> Path:
    if not isinstance(out_dir, str | os.PathLike):
        raise ArgumentError(f"out_dir: expected a path, got {type(out_dir).__name__}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ArgumentError(f"out_dir: {out_dir} exists and is not a directory")
    return out_dir


# ------------------------------------------------------------------------------------------------ rendering
HTML_STYLE = """body { font-family: sans-serif; max-width: 60em; margin: 2em auto; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: right; }
td:first-child { text-align: left; }
.warning { color: #a40000; }
.verdict { font-size: 1.2em; }
section.candidate { border-top: 2px solid #888; margin-top: 2em; }
img { max-width: 100%; }"""


def _html_page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<link rel="icon" href="data:,">
<style>
{HTML_STYLE}
</style>
</head>
<body>
{body}
</body>
</html>
"""


def _html_rows(rows: Sequence[Sequence[str]]) -> str:
    return "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)


def _html_images(plots: dict[str, bytes]) -> str:
    esc = html.escape
    return "\n".join(
        f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        f"<figcaption>{esc(name)}</figcaption></figure>"
        for name, png in plots.items()
    )


def _estimate_rows(estimates: Sequence[Estimate], logged: float) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for e in estimates:
        relative = (e.value - logged) / abs(logged) if logged else math.nan
        rows.append((e.name, f"{e.value:.4f}", f"{e.lower:.4f}", f"{e.upper:.4f}", f"{relative:+.1%}"))
    return rows


def _sequential_intro(seq: SequentialResult) -> str:
    discount = "undiscounted" if seq.gamma == 1.0 else f"discounted by gamma = {seq.gamma:g}"
    return (
        f"Value = the expected return of a session's first {seq.horizon} steps ({discount}), over "
        f"{seq.n_episodes:,} logged sessions as episodes. Logged policy's session return: "
        f"{seq.behaviour.value:.4f} ({100 * (1 - seq.behaviour.alpha):g}% interval {seq.behaviour.lower:.4f} "
        f"to {seq.behaviour.upper:.4f})."
    )


def _sequential_verdict(seq: SequentialResult, name: str = "seq-Switch-DR") -> str | None:
    """How `name`'s interval sits against the logged session return, or None without that estimate."""
    est = seq.estimate(name)
    if est is None:
        return None
    logged = seq.behaviour.value
    where = "lies above" if est.lower > logged else "lies below" if est.upper < logged else "contains"
    return (
        f"{name}'s {100 * (1 - est.alpha):g}% interval [{est.lower:.4f}, {est.upper:.4f}] {where} the logged "
        f"session return {logged:.4f}."
    )


def _sequential_notes(seq: SequentialResult) -> list[str]:
    verdict = _sequential_verdict(seq)
    notes = [] if verdict is None else [verdict]
    notes += [
        "PDIS / WPDIS: per-decision importance sampling (Precup et al. 2000), plain and self-normalised; "
        "seq-DR / WDR: sequential doubly robust (Jiang & Li 2016) and weighted DR (Thomas & Brunskill 2016) "
        "with FQE's Q as the model; seq-Switch-DR: seq-DR that hands a session to FQE's value once its "
        f"cumulative importance weight exceeds M = {seq.max_weight:g}; FQE: fitted Q evaluation (Le et al. 2019).",
        "FQE's interval resamples start states with the fitted Q held fixed: it omits the Q-network's fitting "
        "error and is narrower than the others"
        + (
            "; here every session starts in the same state features, so it is a single point."
            if (fqe := seq.estimate("FQE")) is not None and fqe.lower == fqe.upper
            else "."
        ),
        f"Effective sample size of the trajectory-wise importance weights: {seq.ess:,.1f} of {seq.n_episodes:,} "
        "sessions.",
    ]
    if seq.truncated_share > 0:
        notes.append(
            f"{seq.truncated_share:.1%} of the sessions are longer than {seq.horizon} steps; their later steps are "
            "not evaluated."
        )
    return notes


def _risk_intro(risk: RiskResult) -> str:
    return (
        "The evaluation policy's distribution of the session return, estimated by self-normalised "
        "trajectory-wise importance sampling (SCOPE-RL's CumulativeDistributionSNTIS): F(m) = sum_i w_i "
        "1{G_i <= m} / sum_i w_i over the logged returns G_i with trajectory weights w_i. CVaR a% is the mean "
        "of the worst a% of returns; the lower quartile is the 25% quantile. The logged columns are the log's "
        f"own distribution. Effective sample size of the weights: {risk.ess:,.1f} of {risk.n_trajectories:,} "
        f"sessions; the largest weight is {risk.max_weight_share:.1%} of the total."
    )


def _risk_rows(risk: RiskResult) -> list[tuple[str, ...]]:
    return [
        (
            m.name,
            f"{m.policy.value:.4f}",
            f"{m.policy.lower:.4f}",
            f"{m.policy.upper:.4f}",
            f"{m.logged.value:.4f}",
            f"{m.logged.lower:.4f}",
            f"{m.logged.upper:.4f}",
        )
        for m in risk.measures
    ]


# ------------------------------------------------------------------------------------------------ figures
def _figure(width: float, height: float):
    # Figures drawn on an Agg canvas directly (no pyplot): headless and no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _interval_png(estimates: Sequence[Estimate], logged: Estimate, *, title: str, xlabel: str) -> bytes:
    fig = _figure(7, 0.5 * len(estimates) + 2)
    ax = fig.subplots()
    values = np.array([e.value for e in estimates])
    lower = values - np.array([e.lower for e in estimates])
    upper = np.array([e.upper for e in estimates]) - values
    y = np.arange(len(estimates))
    ax.errorbar(values, y, xerr=[lower, upper], fmt="o", capsize=4, color="tab:blue")
    ax.axvspan(logged.lower, logged.upper, color="tab:gray", alpha=0.2)
    ax.axvline(logged.value, color="tab:gray", linestyle="--", label="logged policy")
    ax.set_yticks(y, [e.name for e in estimates])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="best")
    fig.tight_layout()
    return _png(fig)


def _weights_png(weights: np.ndarray, ess: float, n_rounds: int, share_zero: float) -> bytes:
    fig = _figure(7, 3.5)
    ax = fig.subplots()
    positive = weights[weights > 0]
    if positive.size:
        # Weights span orders of magnitude when the policies differ; a log axis keeps the tail visible.
        spread = positive.max() > positive.min()
        bins = np.geomspace(positive.min(), positive.max() * 1.0001, 50) if spread else 10
        ax.hist(positive, bins=bins, color="tab:orange")
        if spread:
            ax.set_xscale("log")
    ax.set_xlabel("importance weight w = action_dist / pscore (w > 0)")
    ax.set_ylabel("rounds")
    ax.set_title(f"ESS = {ess:,.0f} of {n_rounds:,} rounds; {share_zero:.1%} with w = 0")
    fig.tight_layout()
    return _png(fig)


def _risk_png(
    policies: Sequence[tuple[str, ReturnDistribution]],
    logged: ReturnDistribution,
    risk: RiskResult | None = None,
) -> bytes:
    """Step plots of the estimated return CDFs (and the logged one); with `risk`, its CVaR and quartile marks."""
    fig = _figure(7, 4)
    ax = fig.subplots()
    ax.step(logged.support, logged.cdf, where="post", color="tab:gray", linestyle="--", label="logged policy")
    for k, (name, dist) in enumerate(policies):
        label = name if len(name) <= 40 else name[:37] + "..."
        ax.step(dist.support, dist.cdf, where="post", color=f"C{k}", label=label)
    if risk is not None:
        for m in risk.measures:
            if m.name.startswith("CVaR") or m.name == "lower quartile":
                ax.axvline(m.policy.value, color="C0", linestyle=":", alpha=0.7)
                ax.annotate(m.name, (m.policy.value, 0.02), rotation=90, fontsize=7, color="C0")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("session return")
    ax.set_ylabel("estimated P(return <= x)")
    ax.set_title("Distribution of the session return (SNTIS)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _ranking_png(ranking: Ranking) -> bytes:
    candidates = ranking.candidates
    fig = _figure(7, 0.5 * len(candidates) + 2)
    ax = fig.subplots()
    values = np.array([c.estimate.value for c in candidates])
    lower = values - np.array([c.estimate.lower for c in candidates])
    upper = np.array([c.estimate.upper for c in candidates]) - values
    y = np.arange(len(candidates))
    colors = ["tab:green" if c.name == ranking.recommended else "tab:blue" for c in candidates]
    for k in range(len(candidates)):
        ax.errorbar(values[k], y[k], xerr=[[lower[k]], [upper[k]]], fmt="o", capsize=4, color=colors[k])
    ax.axvline(ranking.logged.value, color="tab:gray", linestyle="--", label="logged policy")
    ax.set_yticks(y, [c.name if len(c.name) <= 30 else c.name[:27] + "..." for c in candidates])
    ax.invert_yaxis()
    ax.set_xlabel(f"{ranking.estimator} ({100 * (1 - ranking.logged.alpha):g}% interval)")
    ax.set_title("Candidates ranked by the lower bound")
    ax.legend(loc="best")
    fig.tight_layout()
    return _png(fig)


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
        reliability_issues=tuple(unreliable),
    )
