"""Cost of one vector-env step on a saved learned simulator, each measurement in a fresh process with a fixed
number of threads from its start (torch's and the simulator's step threads): user-steps per wall and per
CPU second, and the minor page faults and system CPU time per step (the cost of memory a step allocates
afresh and touches).
Prints one JSON line.

    python benchmarks/simulator_step_cost.py --simulator DIR [--quick] [--num-envs N] [--steps S]
        [--threads T] [--baseline-pythonpath DIR] [--repeats R]

`--baseline-pythonpath DIR` measures the code under DIR too (another checkout), alternating with this
code `--repeats` times so that both see the same load; the line holds every run and each side's median.
Unlike `simulator_throughput.py` (default threads, then one, in one process), every run starts a process,
so that what earlier measurements left in the allocator does not carry over.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[4]))
import simulators
from recsim_env.envs.seqrec import SeqRecVectorEnv

simulator = simulators.load(sys.argv[1])
simulator.threads = int(sys.argv[4])  # its step threads too (code without them ignores the attribute)
n, steps = int(sys.argv[2]), int(sys.argv[3])
env = SeqRecVectorEnv(num_envs=n, user_model=simulator, history_len=simulator.history_len)
actions = np.random.default_rng(0).integers(0, simulator.n_items, size=(64, n))
env.reset(seed=0)
for t in range(10):  # warm-up
    env.step(actions[t % 64])
before = resource.getrusage(resource.RUSAGE_SELF)
start, cpu = time.perf_counter(), time.process_time()
for t in range(steps):
    env.step(actions[t % 64])
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "user_steps_per_s": round(steps * n / wall),
    "user_steps_per_cpu_s": round(steps * n / cpu),
    "minor_faults_per_step": round((after.ru_minflt - before.ru_minflt) / steps, 1),
    "system_ms_per_step": round(1000 * (after.ru_stime - before.ru_stime) / steps, 3),
}))
"""


def run(pythonpath: str | None, directory: str, num_envs: int, steps: int, threads: int) -> dict:
    """One measurement in a fresh process, with `pythonpath` (None: this checkout) first on the path (and
    as its working directory, which `python -c` puts ahead of PYTHONPATH)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": pythonpath or here}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, os.path.abspath(directory), str(num_envs), str(steps), str(threads)],
        env=env,
        cwd=pythonpath or here,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the run with PYTHONPATH={env['PYTHONPATH']} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--simulator", required=True, help="a saved simulator's directory")
    parser.add_argument("--quick", action="store_true", help="50 steps per run instead of --steps")
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--baseline-pythonpath", default=None, help="measure the code under DIR too")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for name in ("num_envs", "steps", "threads", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"argument --{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    steps = 50 if args.quick else args.steps
    load_at_start = round(os.getloadavg()[0], 2)
    sides = {"current": None} | ({"baseline": args.baseline_pythonpath} if args.baseline_pythonpath else {})
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for _ in range(args.repeats):
        for side, path in sides.items():
            runs[side].append(run(path, args.simulator, args.num_envs, steps, args.threads))
    result = {
        "benchmark": "simulator_step_cost",
        "num_envs": args.num_envs,
        "steps": steps,
        "threads": args.threads,
        "baseline_pythonpath": args.baseline_pythonpath,
        "load_average_1min_at_start": load_at_start,
    }
    for side, found in runs.items():
        result[side] = {key: statistics.median(r[key] for r in found) for key in found[0]}
        result[side]["all_runs"] = found
    if args.baseline_pythonpath:
        for key in ("user_steps_per_s", "user_steps_per_cpu_s"):
            result[f"speedup_{key}"] = round(result["current"][key] / max(result["baseline"][key], 1), 2)
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    result["cpus"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
