"""Behaviour fingerprint of learned simulators: SHA-256 prefixes of seeded fits' weights and of 25-step
rollouts (single model, 2-member ensemble, simulator set, disagreement signal, positive-only data with
gap sessions, no filter / pooling; and the default simulator of `simulator_throughput.py` at N = 1024 and
1000 users, stepped on one thread and in blocks on two, and with torch's 2 threads). Run it at two commits
(`PYTHONPATH=TREE python benchmarks/simulator_behaviour_hash.py`) and compare the JSON: a refactor that
keeps behaviour gives the same hashes on CPU (code without step threads ignores `threads`, so its
two-thread rollouts are its one-thread ones, and its `torch2` rollout what torch's 2 threads give: since
the step threads, steps run on one torch thread, so that rollout is the one-thread one). Prints one JSON
object.
"""

import hashlib
import json
import time

import numpy as np
import torch

import simulators
from recsim_env.data import LoggedInteractions
from recsim_env.envs.seqrec import SeqRecVectorEnv
from recsim_env.world.logging import log_world

torch.set_num_threads(1)

out = {}


def h(*arrays):
    d = hashlib.sha256()
    for a in arrays:
        d.update(np.ascontiguousarray(a).tobytes())
    return d.hexdigest()[:16]


def log_digest(log):
    """`h` of an exposure log's arrays, an unknown return gap hashed as NaN: the same digest whether the log
    marks unknown gaps with NaN or with a `return_gap_known` mask (the field is then left out)."""
    arrays = log._asdict()
    known = arrays.pop("return_gap_known", None)
    if known is not None:
        arrays["return_gap"] = np.where(known, arrays["return_gap"], np.nan).astype(np.float32)
    return h(*arrays.values())


logs = log_world("uniform", steps=3000, seed=0, progress=False, num_envs=64)
# positive-only, no session_id variant: sessions from gaps
f = logs.frame
pos = f[f["click"] > 0].drop(
    columns=[c for c in ("session_id", "position", "slate_id", "propensity", "click") if c in f.columns]
)
pos_logs = LoggedInteractions(
    pos.reset_index(drop=True),
    user_ids=logs.user_ids,
    item_ids=logs.item_ids,
    feedback_columns=[c for c in logs.feedback_columns if c != "click"],
    items=logs.items,
    users=logs.users,
    name="pos",
)
TINY = dict(d_model=16, history_len=8, epochs=2, batch_size=128, dropout=0.0, seed=0)
saved = {}
for name, data, cfg in [
    ("ens2", logs, dict(TINY, ensemble_size=2)),
    ("single", logs, dict(TINY)),
    ("pos", pos_logs, dict(TINY, session_gap_hours=0.5)),
    ("nofilter", logs, dict(TINY, interest_filter=False, click_pooling=False)),
]:
    t = time.time()
    r = simulators.fit(data, simulators.SimulatorConfig(**cfg))
    sim = r.simulator
    w = [v.numpy() for m in sim.members for v in m.state_dict().values()]
    out[f"{name}.weights"] = h(*w)
    out[f"{name}.log"] = log_digest(r.log)
    views = {"plain": sim}
    if len(sim.members) > 1:
        views["simset"] = simulators.SimulatorSet.of(sim, simulators.SimSetConfig().ranges())
        views["disagree"] = sim.with_disagreement()
    for vname, model in views.items():
        env = SeqRecVectorEnv(
            num_envs=32,
            user_model=model,
            history_len=model.history_len,
            slate_size=2 if vname == "simset" else 1,
        )
        obs, _ = env.reset(seed=1)
        rng = np.random.default_rng(0)
        acc = []
        for _ in range(25):
            a = (
                np.argsort(rng.random((32, model.n_items)), axis=1)[:, :2]
                if vname == "simset"
                else rng.integers(0, model.n_items, size=32)
            )
            obs, rew, term, trunc, info = env.step(a)
            acc += [np.asarray(rew, np.float64), np.asarray(term), np.asarray(trunc)] + [
                np.asarray(v) for k, v in sorted(obs.items())
            ]
        out[f"{name}.{vname}.rollout"] = h(*acc)
    out[f"{name}.secs"] = round(time.time() - t, 1)

# The default simulator at the sizes where a step runs in blocks (N >= 512).
t = time.time()
default_logs = log_world("uniform", steps=20_000, seed=0, progress=False)
sim = simulators.fit(default_logs, simulators.SimulatorConfig(epochs=1)).simulator
out["default.weights"] = h(*[v.numpy() for v in sim.model.state_dict().values()])
# Last, torch's own 2 threads with the default step threads: code without step threads splits torch's
# loops between its threads and rounds a few rows otherwise than one thread does.
for n, threads, torch_threads in ((1024, 1, 1), (1024, 2, 1), (1000, 2, 1), (1024, None, 2)):
    sim.threads = threads
    torch.set_num_threads(torch_threads)
    env = SeqRecVectorEnv(num_envs=n, user_model=sim, history_len=sim.history_len)
    obs, _ = env.reset(seed=1)
    rng = np.random.default_rng(0)
    acc = []
    for _ in range(25):
        obs, rew, term, trunc, info = env.step(rng.integers(0, sim.n_items, size=n))
        acc += [np.asarray(rew, np.float64), term, trunc, info["chosen_position"]]
        acc += [np.asarray(v) for k, v in sorted(obs.items())]
    out[f"default.n{n}.threads{threads or 'default'}.torch{torch_threads}.rollout"] = h(*acc)
torch.set_num_threads(1)
out["default.secs"] = round(time.time() - t, 1)
print(json.dumps(out, indent=1))
