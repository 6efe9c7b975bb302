"""Step throughput of `SeqRec-v0` on a learned transformer simulator (the default config: SASRec backbone,
D = 32, L = 20, an interest filter): user-steps/s of the native vector env at N users (`--num-envs`, by
default 256 and 1024), with the default threads (torch's, and the simulator's step threads,
`simulators.stepping.default_threads`) and with one of each.
Prints one JSON line.

    python benchmarks/simulator_throughput.py [--quick] [--simulator DIR] [--seconds S]
        [--num-envs N [N ...]] [--baseline-pythonpath DIR] [--repeats R]

Without `--simulator` it first trains a simulator on 20,000 logged world steps (one epoch: the
weights' values do not change the cost of a step) and saves it to a temporary directory.
`--baseline-pythonpath DIR` also measures the same saved simulator with the code under DIR (another
checkout, e.g. the commit before a change), in a subprocess, alternating with this code's measurement
at each N, so that both see the same load; the line then holds both and their ratio. On a shared machine
`--repeats R` alternates the two R times per N and reports each one's best run (the one least slowed by
other processes) next to every run's figure; each run also reports user-steps per second of the
process's CPU time, which waiting for a core does not count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np


def user_steps_per_second(
    simulator, num_envs: int, seconds: float, threads: int | None
) -> tuple[float, float]:
    """User-steps per second of wall time and per second of this process's CPU time (all its threads):
    on a shared machine the second is the one other processes disturb less."""
    import torch

    from recsim_env.envs.seqrec import SeqRecVectorEnv

    previous, previous_step = torch.get_num_threads(), getattr(simulator, "threads", None)
    if threads is not None:
        torch.set_num_threads(threads)
        simulator.threads = threads  # step threads (code without them ignores the attribute)
    try:
        env = SeqRecVectorEnv(num_envs=num_envs, user_model=simulator, history_len=simulator.history_len)
        actions = np.random.default_rng(0).integers(0, simulator.n_items, size=(64, num_envs))
        env.reset(seed=0)
        for t in range(10):  # warm-up
            env.step(actions[t % 64])
        steps, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            env.step(actions[steps % 64])
            steps += 1
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        return steps * num_envs / wall, steps * num_envs / max(cpu, 1e-9)
    finally:
        torch.set_num_threads(previous)
        simulator.threads = previous_step


KEYS = (
    "user_steps_per_s",
    "user_steps_per_cpu_s",
    "user_steps_per_s_1_thread",
    "user_steps_per_cpu_s_1_thread",
)


def measure(directory: str, num_envs: int, seconds: float) -> dict:
    """User-steps per wall and per CPU second of the simulator saved in `directory` at N = `num_envs`, with
    the default threads and with one."""
    import torch

    import simulators

    simulator = simulators.load(directory)
    default = user_steps_per_second(simulator, num_envs, seconds, None)
    one = user_steps_per_second(simulator, num_envs, seconds, 1)
    return {
        **{key: round(value) for key, value in zip(KEYS, default + one, strict=True)},
        "torch_threads": torch.get_num_threads(),
        "step_threads": getattr(simulator, "step_threads", None),  # None: code without step threads
        "simulator": repr(simulator),
    }


def measure_with(pythonpath: str, directory: str, num_envs: int, seconds: float) -> dict:
    """`measure` run by the code under `pythonpath`, in a subprocess started there (`python -c` puts its
    working directory first on the path, ahead of PYTHONPATH)."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from simulator_throughput import measure; "
        "print(json.dumps(measure(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))"
    )
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    done = subprocess.run(
        [sys.executable, "-c", code, here, os.path.abspath(directory), str(num_envs), str(seconds)],
        env=env,
        cwd=pythonpath,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the baseline under {pythonpath} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 s per measurement instead of 10 s")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--simulator", default=None, help="a saved simulator's directory")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--baseline-pythonpath", default=None, help="measure the code under DIR too")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs per N (best reported)")
    args = parser.parse_args()
    if any(n < 1 for n in args.num_envs):
        parser.error(f"argument --num-envs: every N must be >= 1, got {args.num_envs}")
    if args.repeats < 1:
        parser.error(f"argument --repeats: must be >= 1, got {args.repeats}")
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    load_at_start = round(os.getloadavg()[0], 2)

    import torch

    import simulators

    with tempfile.TemporaryDirectory(prefix="simulator-throughput-") as scratch:
        directory = args.simulator
        if directory is None:
            from recsim_env.world.logging import log_world

            default_threads = torch.get_num_threads()
            torch.set_num_threads(1)  # a reproducible fit; the measurements start from torch's default
            logs = log_world("uniform", steps=20_000, seed=0, progress=False)
            simulator = simulators.fit(logs, simulators.SimulatorConfig(epochs=1)).simulator
            directory = str(simulators.save(simulator, os.path.join(scratch, "simulator")))
            torch.set_num_threads(default_threads)
        runs = []
        keys = KEYS
        for n in args.num_envs:
            trials: dict[str, list[dict]] = {"baseline": [], "current": []}
            for _ in range(args.repeats):
                if args.baseline_pythonpath:
                    trials["baseline"].append(measure_with(args.baseline_pythonpath, directory, n, seconds))
                trials["current"].append(measure(directory, n, seconds))
            run = {"num_envs": n}
            for side, found in trials.items():
                if found:
                    run[side] = {key: max(t[key] for t in found) for key in keys}
                    run[side]["all_runs"] = {key: [t[key] for t in found] for key in keys}
                    run[side]["torch_threads"] = found[0]["torch_threads"]
                    run[side]["step_threads"] = found[0].get("step_threads")
                    run["simulator"] = found[0]["simulator"]
            if args.baseline_pythonpath:
                for key in keys:
                    run[f"speedup_{key}"] = round(run["current"][key] / max(run["baseline"][key], 1), 2)
            runs.append(run)
    result = {
        "benchmark": "simulator_throughput",
        "seconds_per_measurement": seconds,
        "baseline_pythonpath": args.baseline_pythonpath,
        "repeats": args.repeats,
        "load_average_1min_at_start": load_at_start,
        "runs": runs,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
