"""Markdown and HTML pieces of an OPE report: literal text, the page around a body, table rows, embedded
images, and the sentences that introduce the sequential and risk sections."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence

from evaluation.ope.base import Estimate
from evaluation.ope.risk import RiskResult
from evaluation.session_ope import SequentialResult


def markdown_text(text: str) -> str:
    """`text` shown literally in Markdown: one line, with Markdown's and HTML's special characters escaped
    (a file name in a report must not become a link, an image or markup)."""
    text = " ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join("\\" + c if c in "\\`*_[]()#!|" else c for c in text)


HTML_STYLE = """body { font-family: sans-serif; max-width: 60em; margin: 2em auto; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: right; }
td:first-child { text-align: left; }
.warning { color: #a40000; }
.verdict { font-size: 1.2em; }
section.candidate { border-top: 2px solid #888; margin-top: 2em; }
img { max-width: 100%; }"""


def html_page(title: str, body: str) -> str:
    """A whole HTML document titled `title` around `body`, styled by `HTML_STYLE`."""
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


def html_rows(rows: Sequence[Sequence[str]]) -> str:
    """Table rows (`<tr>` of escaped `<td>` cells), one a line."""
    return "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)


def html_images(plots: dict[str, bytes]) -> str:
    """One `<figure>` per PNG, embedded as a `data:image/png;base64,` URI and captioned by its name."""
    esc = html.escape
    return "\n".join(
        f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        f"<figcaption>{esc(name)}</figcaption></figure>"
        for name, png in plots.items()
    )


def estimate_rows(estimates: Sequence[Estimate], logged: float) -> list[tuple[str, str, str, str, str]]:
    """Table cells per estimate: name, value, lower, upper and the change relative to `logged`."""
    rows = []
    for e in estimates:
        relative = (e.value - logged) / abs(logged) if logged else math.nan
        rows.append((e.name, f"{e.value:.4f}", f"{e.lower:.4f}", f"{e.upper:.4f}", f"{relative:+.1%}"))
    return rows


def sequential_intro(seq: SequentialResult) -> str:
    """The sentence that opens the sequential section: what the value is and the logged session return."""
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


def sequential_notes(seq: SequentialResult) -> list[str]:
    """The sequential section's notes: its verdict line, what each estimator is, ESS and truncation."""
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


def risk_intro(risk: RiskResult) -> str:
    """The paragraph that opens the risk section: how the return distribution is estimated."""
    return (
        "The evaluation policy's distribution of the session return, estimated by self-normalised "
        "trajectory-wise importance sampling (SCOPE-RL's CumulativeDistributionSNTIS): F(m) = sum_i w_i "
        "1{G_i <= m} / sum_i w_i over the logged returns G_i with trajectory weights w_i. CVaR a% is the mean "
        "of the worst a% of returns; the lower quartile is the 25% quantile. The logged columns are the log's "
        f"own distribution. Effective sample size of the weights: {risk.ess:,.1f} of {risk.n_trajectories:,} "
        f"sessions; the largest weight is {risk.max_weight_share:.1%} of the total."
    )


def risk_rows(risk: RiskResult) -> list[tuple[str, ...]]:
    """Table cells per risk measure: the policy's value and interval, then the logged ones."""
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
