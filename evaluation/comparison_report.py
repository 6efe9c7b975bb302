"""`ComparisonReport`: several candidate policies' `OPEReport`s on one log with their ranking
(`evaluation.ranking`), rendered as one Markdown file, one HTML page and one folder of plots."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from evaluation.policy_report import OPEReport
from evaluation.ranking import Ranking
from evaluation.report_files import save_report
from evaluation.report_markup import html_images, html_page, html_rows, markdown_text
from evaluation.report_plots import ranking_png, risk_png


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
        out = {"ranking.png": ranking_png(self.ranking)}
        risks = [
            r.sequential.risk for r in ranked if r.sequential is not None and r.sequential.risk is not None
        ]
        if risks and len(risks) == len(ranked):
            out["risk.png"] = risk_png(
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
            f"<table>\n{header}\n{html_rows(self._ranking_rows())}\n</table>",
            html_images({k: v for k, v in plots.items() if k in ("ranking.png", "risk.png")}),
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
        return html_page(self.title, "\n".join(parts))

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write report.md, report.html and every plot into `out_dir` atomically (see `OPEReport.save`)."""
        return save_report(self, out_dir)
