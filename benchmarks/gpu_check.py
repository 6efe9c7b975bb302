"""GPU check: the CUDA paths train as well as the CPU path does. One prepared run, under 8 minutes.

(a) SASRec on MovieLens 100K (`recsim_env.encoders.trainer.train`, the `encoders_ml100k.py` settings:
    d_model 64, 2 blocks, lr 2e-3, L = 50), under bf16 autocast on CUDA and in float32 on the CPU, with
    the same seed and the same fixed number of epochs (no early stop: patience = epochs; both restore
    their best validation epoch). Check: test NDCG@10 and HR@10 (history items excluded) agree within
    `NDCG_TOLERANCE` / `HR_TOLERANCE`, about 2.5 standard errors of a difference over 943 test users.
(b) The default agent (`seqrec train`: SB3 PPO with a SASRec policy, `agents.training.train`) on the
    GPU for a short time budget, then 300 episodes of its most probable item in `SeqRec-v0` against the
    uniform policy. Check: mean return at least `LEARNING_RATIO` x uniform's (the bar of the CPU
    learning test `tests/agents/test_sb3_training.py::test_ppo_beats_uniform_on_the_world`).
(c) The supervised click model (`agents.supervised`) on uniform world logs under bf16 autocast on CUDA.
    Check: held-out click AUC at least `SUPERVISED_AUC` and the policy acts (mean return reported).

    python benchmarks/gpu_check.py            # about 6 minutes on one GPU and a few CPU cores
    python benchmarks/gpu_check.py --quick    # about 2 minutes: fewer epochs, a shorter PPO budget
    python benchmarks/gpu_check.py --device cpu --quick   # the same checks on the CPU (tries the script)

Prints ONE JSON line: figures, wall times and pass / fail per check; exits 1 if a check fails. Without
CUDA (and `--device cuda`, the default) it prints `{"skipped": "no CUDA"}` and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

DEFAULT_DATA = REPO / "../shared/data/ml-100k"
MAX_LEN = 50
SASREC = {"d_model": 64, "n_layers": 2, "n_heads": 1, "dropout": 0.2}
"""`benchmarks/encoders_ml100k.py`'s SASRec settings."""
NDCG_TOLERANCE = 0.02
HR_TOLERANCE = 0.04
LEARNING_RATIO = 1.2
SUPERVISED_AUC = 0.62
"""On 20,000 uniform-logged steps the CPU run reaches about 0.65 (docs/supervised.md has 0.67-0.69 on 50,000)."""
RECORDED_CPU = {"test_ndcg@10": 0.1142, "test_hr@10": 0.2131}
"""SASRec seed 0 on the CPU with early stopping (best epoch of up to 200), test, history excluded:
benchmarks/RESULTS.md, "encoders_ml100k" section, per-seed figures. Context only: this check runs a
fixed, smaller number of epochs, so its figures sit a little below."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_sasrec(logs, *, device: str, epochs: int, seed: int, threads: int | None) -> dict:
    """Train SASRec on `logs` on `device` for exactly `epochs` epochs; its test metrics and wall time."""
    from recsim_env import encoders
    from recsim_env.encoders.trainer import TrainerConfig, seed_everything, train

    seed_everything(seed)
    encoder = encoders.build("sasrec", {"n_items": logs.n_items, "max_len": MAX_LEN, **SASREC})
    config = TrainerConfig(
        epochs=epochs,
        patience=epochs,
        lr=type(encoder).learning_rate,
        seed=seed,
        device=device,
        num_threads=threads,
        progress=False,
    )
    start = time.perf_counter()
    result = train(encoder, logs.sequences(), config)
    test = result.test["seen_excluded"]
    return {
        "device": result.device,
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "test_ndcg@10": round(test["ndcg@10"], 4),
        "test_hr@10": round(test["hr@10"], 4),
        "seconds_per_epoch": round(result.seconds_per_epoch, 3),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def check_sasrec(data: Path, *, device: str, epochs: int, seed: int, threads: int) -> dict:
    """(a): the same SASRec run on `device` (bf16 autocast on CUDA) and on the CPU."""
    from recsim_env.data import load

    logs = load(data)
    log(f"(a) SASRec on {logs.name}, {epochs} epochs on {device} ...")
    accelerated = train_sasrec(logs, device=device, epochs=epochs, seed=seed, threads=threads)
    log(f"(a) {accelerated}; the same on the CPU ...")
    cpu = train_sasrec(logs, device="cpu", epochs=epochs, seed=seed, threads=threads)
    log(f"(a) {cpu}")
    ndcg_gap = abs(accelerated["test_ndcg@10"] - cpu["test_ndcg@10"])
    hr_gap = abs(accelerated["test_hr@10"] - cpu["test_hr@10"])
    return {
        "accelerated": accelerated,
        "cpu": cpu,
        "ndcg@10_gap": round(ndcg_gap, 4),
        "hr@10_gap": round(hr_gap, 4),
        "tolerance": {"ndcg@10": NDCG_TOLERANCE, "hr@10": HR_TOLERANCE},
        "recorded_cpu_early_stopped": RECORDED_CPU,
        "pass": ndcg_gap <= NDCG_TOLERANCE and hr_gap <= HR_TOLERANCE,
    }


def check_agent(*, device: str, budget_s: float, steps: int, episodes: int, seed: int) -> dict:
    """(b): the default agent (SB3 PPO, SASRec policy) trained on `device`, against uniform."""
    from agents import load_policy
    from agents.training import TrainConfig, train
    from recsim_env.policies import UniformPolicy
    from recsim_env.rollout import rollout

    config = TrainConfig(
        stop_timesteps=steps,
        time_budget_s=budget_s,
        eval_interval=10 * steps,  # no evaluation during training: the check rolls out afterwards
        encoder_config={"d_model": 32, "n_layers": 1, "dropout": 0.0},
        seed=seed,
        device=device,
    )
    log(f"(b) PPO on {device}: up to {steps} steps or {budget_s:.0f} s ...")
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = train(config, Path(out) / "run", progress=False)
        train_s = time.perf_counter() - start
        policy = load_policy(Path(out) / "run")
    start = time.perf_counter()
    trained = rollout(policy, n_episodes=episodes, seed=seed + 1, deterministic=True)
    uniform = rollout(UniformPolicy(policy.n_items), n_episodes=episodes, seed=seed + 1)
    ratio = trained.mean_return / uniform.mean_return
    figures = {
        "device": device,
        "timesteps": result.timesteps,
        "train_s": round(train_s, 1),
        "eval_s": round(time.perf_counter() - start, 1),
        "mean_return": round(trained.mean_return, 3),
        "mean_return_ci95": [round(x, 3) for x in trained.return_ci95],
        "uniform_mean_return": round(uniform.mean_return, 3),
        "ratio": round(ratio, 3),
        "bar": LEARNING_RATIO,
        "pass": ratio >= LEARNING_RATIO,
    }
    log(f"(b) {figures}")
    return figures


def check_supervised(*, device: str, steps: int, episodes: int, seed: int) -> dict:
    """(c): the supervised click model trained on `device` (bf16 autocast on CUDA) from uniform world logs."""
    from agents.supervised import SupervisedConfig, train
    from recsim_env.rollout import rollout
    from recsim_env.world.logging import log_world

    log(f"(c) supervised click model on {device}, {steps} uniform-logged steps ...")
    logs = log_world("uniform", steps=steps, seed=seed, progress=False)
    start = time.perf_counter()
    policy, info = train(SupervisedConfig(device=device, epochs=10, seed=seed), logs, progress=False)
    train_s = time.perf_counter() - start
    returns = rollout(policy, n_episodes=episodes, seed=seed)
    figures = {
        "device": info["device"],
        "train_s": round(train_s, 1),
        "best_epoch": info["best_epoch"],
        "valid_auc": round(info["valid_auc"], 4),
        "mean_return": round(returns.mean_return, 3),
        "bar_auc": SUPERVISED_AUC,
        "pass": info["valid_auc"] >= SUPERVISED_AUC,
    }
    log(f"(c) {figures}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer epochs and a shorter PPO budget (about 2 minutes)"
    )
    parser.add_argument(
        "--device",
        default="cuda",
        choices=("cuda", "cpu"),
        help="cuda (default; skipped without CUDA) or cpu (tries the script)",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the ml-100k directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: up to 8)")
    parser.add_argument(
        "--skip", choices=("sasrec", "agent"), action="append", default=[], help="leave out a check"
    )
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        log("gpu_check: no CUDA device here; nothing to check (run it on a machine with a GPU)")
        print(json.dumps({"skipped": "no CUDA"}))
        return 0
    threads = args.threads or min(8, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    epochs, budget_s, steps = (8, 60.0, 10_000) if args.quick else (20, 150.0, 30_000)
    started = time.perf_counter()
    report: dict = {
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "quick": args.quick,
        "threads": threads,
    }
    if "sasrec" not in args.skip:
        report["sasrec_ml100k"] = check_sasrec(
            args.data, device=args.device, epochs=epochs, seed=args.seed, threads=threads
        )
    if "agent" not in args.skip:
        report["default_agent"] = check_agent(
            device=args.device,
            budget_s=budget_s,
            steps=steps,
            episodes=100 if args.quick else 300,
            seed=args.seed,
        )
    if "supervised" not in args.skip:
        report["supervised"] = check_supervised(
            device=args.device,
            steps=20_000,
            episodes=100 if args.quick else 300,
            seed=args.seed,
        )
    checks = [
        report[name]["pass"] for name in ("sasrec_ml100k", "default_agent", "supervised") if name in report
    ]
    report["pass"] = all(checks)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report))
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
