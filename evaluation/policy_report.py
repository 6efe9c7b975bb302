"""`OPEReport`: one policy evaluated on one log, rendered as Markdown, a self-contained HTML page (plots
embedded as base64 PNGs) and a folder (`save`: report.md, report.html, estimates.png, weights.png and, with
sessions, sequential.png and risk.png, written atomically). `evaluation.report.build_report` makes one."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evaluation.ope.base import Estimate
from evaluation.report_files import save_report
from evaluation.report_markup import (
    estimate_rows,
    html_images,
    html_page,
    html_rows,
    markdown_text,
    risk_intro,
    risk_rows,
    sequential_intro,
    sequential_notes,
)
from evaluation.report_plots import interval_png, risk_png, weights_png
from evaluation.session_ope import SequentialResult
from recsim_env.errors import ArgumentError

VERDICTS = ("better", "worse", "undecided")
PLOT_FILES = ("estimates.png", "weights.png")


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
            "estimates.png": interval_png(
                self.estimates,
                self.behaviour,
                title=f"Estimated value of {self.policy_name}",
                xlabel=f"policy value per decision ({self.behaviour_confidence_pct}% bootstrap interval)",
            ),
            "weights.png": weights_png(
                self.weights, self.ess, self.n_rounds, self.weight_stats["share_zero"]
            ),
        }
        seq = self.sequential
        if seq is not None:
            out["sequential.png"] = interval_png(
                seq.estimates,
                seq.behaviour,
                title=f"Session return of {self.policy_name} (first {seq.horizon} steps)",
                xlabel=f"expected session return ({self.behaviour_confidence_pct}% bootstrap interval)",
            )
            if seq.risk is not None:
                out["risk.png"] = risk_png([(self.policy_name, seq.risk.policy)], seq.risk.logged, seq.risk)
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
        lines += [f"| {' | '.join(row)} |" for row in estimate_rows(self.estimates, self.behaviour.value)]
        seq = self.sequential
        if seq is not None:
            lines += ["", f"{h}# Sequential estimators (per session)", "", sequential_intro(seq), ""]
            lines += [
                f"| estimator | value | {pct}% lower | {pct}% upper | vs logged |",
                "|---|---:|---:|---:|---:|",
            ]
            lines += [f"| {' | '.join(row)} |" for row in estimate_rows(seq.estimates, seq.behaviour.value)]
            lines += ["", *[f"- {note}" for note in sequential_notes(seq)]]
            lines += ["", f"{h}# Risk: the distribution of the session return", ""]
            if seq.risk is None:
                lines += ["Not estimated (see the warnings)."]
            else:
                lines += [risk_intro(seq.risk), ""]
                lines += [
                    f"| measure | policy | {pct}% lower | {pct}% upper | logged | {pct}% lower | {pct}% upper |",
                    "|---|---:|---:|---:|---:|---:|---:|",
                ]
                lines += [f"| {' | '.join(row)} |" for row in risk_rows(seq.risk)]
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
        return html_page(title, self.html_body(level=1, plots=plots, title=title))

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
            f'<table id="{anchor}bandit">\n{header}\n{html_rows(estimate_rows(self.estimates, self.behaviour.value))}\n</table>',
        ]
        seq = self.sequential
        if seq is not None:
            parts += [
                f'<section id="{anchor}sequential">',
                f"<{h2}>Sequential estimators (per session)</{h2}>",
                f"<p>{esc(sequential_intro(seq))}</p>",
                f"<table>\n{header}\n{html_rows(estimate_rows(seq.estimates, seq.behaviour.value))}\n</table>",
                "<ul>" + "".join(f"<li>{esc(note)}</li>" for note in sequential_notes(seq)) + "</ul>",
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
                    f"<p>{esc(risk_intro(seq.risk))}</p>",
                    f"<table>\n{risk_header}\n{html_rows(risk_rows(seq.risk))}\n</table>",
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
            html_images(plots),
        ]
        return "\n".join(parts)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write report.md, report.html and the PNG plots into `out_dir`; return the paths.

        Everything is rendered in memory first, then every file is written to a temporary file beside its
        target and only then are all renamed into place: an interrupted or failed save leaves whole files
        (old or new), never a half-written one, and no temporaries; a directory it created is removed again.
        """
        return save_report(self, out_dir)
