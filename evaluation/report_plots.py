"""The figures of an OPE report as PNG bytes: estimates with intervals, the importance-weight histogram,
return CDFs with their risk marks, and the candidates' ranking. matplotlib is imported when a figure is drawn."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from evaluation.ope.base import Estimate
from evaluation.ope.risk import ReturnDistribution, RiskResult
from evaluation.ranking import Ranking


def _figure(width: float, height: float):
    # Figures drawn on an Agg canvas directly (no pyplot): headless and no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def interval_png(estimates: Sequence[Estimate], logged: Estimate, *, title: str, xlabel: str) -> bytes:
    """Each estimate with its interval, against the logged value and its interval."""
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
    return figure_png(fig)


def weights_png(weights: np.ndarray, ess: float, n_rounds: int, share_zero: float) -> bytes:
    """Histogram of the positive importance weights (log axis when they spread), titled with the ESS."""
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
    return figure_png(fig)


def risk_png(
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
    return figure_png(fig)


def ranking_png(ranking: Ranking) -> bytes:
    """The ranked candidates' intervals, the recommended one in green, against the logged value."""
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
    return figure_png(fig)


def figure_png(fig: Any) -> bytes:
    """`fig` as PNG bytes, identical for identical figures."""
    buffer = io.BytesIO()
    # A fixed Software tag and no timestamp metadata keep the PNG bytes reproducible.
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()
