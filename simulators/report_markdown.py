"""The fidelity report's markdown and plots (`simulators.report.write_report` writes them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsim_env.io import atomic_write

N_BINS = 15
"""Equal-width probability bins of the calibration plot (the report's ECE bins)."""


def markdown(metrics: dict, plots: list[str]) -> str:
    """The report's markdown: held-out log metrics, sessions, the world section and policy values."""
    lines = ["# Simulator fidelity report", ""]
    info = metrics["simulator"]
    lines += [
        f"Simulator: `{info['repr']}`  ",
        f"Held-out users: {info['test_users']}, exposures: {info['test_exposures']}",
        "",
    ]
    lines += ["## Held-out logs (teacher-forced)", "", "| signal | AUC | log-loss | ECE | mean predicted | mean observed | n |",
              "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, m in metrics["logs"].items():
        if "auc" in m:
            lines.append(
                f"| {name} | {m['auc']:.4f} | {m['log_loss']:.4f} | {m['ece']:.4f} | {m['mean_predicted']:.4f} "
                f"| {m['mean_observed']:.4f} | {m['n']} |"
            )
    lines += ["", "| continuous signal | RMSE | RMSE of the mean | n |", "| --- | --- | --- | --- |"]
    for name, m in metrics["logs"].items():
        if "rmse" in m:
            lines.append(
                f"| {name} | {m['rmse']:.4f} | {m.get('rmse_of_mean_baseline', float('nan')):.4f} | {m['n']} |"
            )
    lines += ["", "## Sessions (simulated vs logged)", "", "| quantity | KS distance | simulated mean | logged mean |",
              "| --- | --- | --- | --- |"]  # fmt: skip
    for name, m in metrics["sessions"].items():
        lines.append(f"| {name} | {m['ks']:.4f} | {m['simulated_mean']:.3f} | {m['logged_mean']:.3f} |")
    if "world" in metrics:
        w = metrics["world"]
        lines += [
            "",
            "## Ground-truth world (uniform policy, click)",
            "",
            "| | AUC | log-loss | ECE |",
            "| --- | --- | --- | --- |",
        ]
        rows = {
            "learned, observed history (warm start included)": w,
            "learned, logged history (as world logs hold it)": w["logged_history"],
        }
        for name, part in rows.items():
            m = part["learned"]
            lines.append(f"| {name} | {m['auc']:.4f} | {m['log_loss']:.4f} | {m['ece']:.4f} |")
        m = w["world_truth"]
        lines.append(f"| world's true probability | {m['auc']:.4f} | {m['log_loss']:.4f} | {m['ece']:.4f} |")
        lines.append("")
        for name, part in rows.items():
            lines.append(
                f"- {name}: RMSE to the true click probability {part['rmse_to_true_probability']:.4f}, "
                f"ECE against it {part['ece_against_true_probability']:.4f}, AUC gap {part['auc_gap']:.4f}."
            )
    if "policy_values" in metrics:
        lines += ["", *policy_values_markdown(metrics["policy_values"])]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def plots(directory: Path, metrics: dict, samples: dict) -> list[str]:
    """Session-length / return-gap histograms, calibration and (with a panel) policy values, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    s = samples["sessions"]
    top = max(int(np.max(s["sim_lengths"], initial=1)), int(np.max(s["logged_lengths"], initial=1)))
    bins = np.arange(1, top + 2) - 0.5
    axes[0].hist(
        [s["logged_lengths"], s["sim_lengths"]], bins=bins, density=True, label=["logged", "simulated"]
    )
    axes[0].set(xlabel="session length (steps)", ylabel="density")
    axes[0].legend()
    if len(s["logged_gaps"]) and len(s["sim_gaps"]):
        edges = np.quantile(np.concatenate([s["logged_gaps"], s["sim_gaps"]]), np.linspace(0, 0.99, 30))
        axes[1].hist(
            [s["logged_gaps"], s["sim_gaps"]],
            bins=np.unique(edges),
            density=True,
            label=["logged", "simulated"],
        )
    axes[1].set(xlabel="return gap (days)")
    fig.tight_layout()
    names.append(save_figure(fig, directory / "sessions.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4, 4))
    for label, (p, y) in samples["calibration"].items():
        bins = np.minimum((p * N_BINS).astype(int), N_BINS - 1)
        count = np.bincount(bins, minlength=N_BINS)
        keep = count > 0
        ax.plot((np.bincount(bins, p, N_BINS) / np.maximum(count, 1))[keep],
                (np.bincount(bins, y, N_BINS) / np.maximum(count, 1))[keep], "o-", label=label)  # fmt: skip
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set(xlabel="predicted click probability", ylabel="observed (or true) rate", title="calibration")
    ax.legend()
    fig.tight_layout()
    names.append(save_figure(fig, directory / "calibration.png"))
    plt.close(fig)
    if "policy_values" in metrics:
        names.append(_policy_values_plot(plt, directory, metrics["policy_values"]))
    return names


def _policy_values_plot(plt, directory: Path, values: dict) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    compared = values["compared"]
    world = [values["policies"][n]["world"]["mean_return"] for n in compared]
    simulated = [values["policies"][n]["simulator"]["mean_return"] for n in compared]
    ax.plot(world, simulated, "o")
    for name, x, y in zip(compared, world, simulated, strict=True):
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    top = max([*world, *simulated, 1.0]) * 1.05
    ax.plot([0, top], [0, top], "k--", lw=1)
    ax.fill_between([0, top], [0, 0.95 * top], [0, 1.05 * top], color="grey", alpha=0.2, lw=0)
    ax.set(xlabel="world mean return", ylabel="simulated mean return", title="policy values (band: 5%)")
    fig.tight_layout()
    name = save_figure(fig, directory / "policy_values.png")
    plt.close(fig)
    return name


def _number(x, digits: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def policy_values_markdown(values: dict) -> list[str]:
    """The policy-value section (`simulators.policy_values.policy_values`'s result) as markdown lines."""
    lines = [
        "## Policy values (world vs simulator)",
        "",
        f"{values['episodes']} episodes per policy and environment, seed {values['seed']}, env settings "
        f"`{values['env_kwargs']}`. Relative error: (simulated - world) / world. KS: distance between the "
        "simulated and the world's session lengths and return gaps. Distance from the logs: KL of the items "
        "the policy shows in the world from the logged items, and its share of steps repeating the previous "
        "item's category.",
        "",
        "| policy | world | simulator | relative error | session-length KS | return-gap KS "
        "| item KL to logs | category repeats |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes = {}
    for name, entry in values["policies"].items():
        world, sim = entry["world"], entry["simulator"]
        error = entry["relative_error"]
        lines.append(
            f"| {name} | {world['mean_return']:.2f} | {_number(sim and sim['mean_return'])} "
            f"| {'n/a' if error is None else f'{error:+.1%}'} | {_number(entry['session_length_ks'], 3)} "
            f"| {_number(entry['return_gap_ks'], 3)} | {_number(entry['item_kl_to_logs'], 3)} "
            f"| {_number(entry['category_repeat_rate'], 3)} |"
        )
        if "note" in entry:
            notes[name] = entry["note"]
    lines += [
        "",
        f"Spearman rank correlation over the {len(values['compared'])} compared policies: "
        f"**{_number(values['spearman'], 3)}**; largest absolute relative error: "
        f"**{_number(100 * values['max_abs_relative_error'], 1)}%**.",
    ]
    for name, note in notes.items():
        lines.append(f"- {name}: no simulated value, it {note}.")
    return lines


def save_figure(fig, path: Path) -> str:
    """Write `fig` to `path` (atomically) as a PNG; returns the file name."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return path.name
