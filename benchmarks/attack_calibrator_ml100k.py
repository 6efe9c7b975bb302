"""LoRec's calibrator alone on poisoned MovieLens 100K: detection AUC and who one weight update flags.

Poisons ML-100k as `attack_poison_ml100k.py` does (`--kind`, `--fraction`, `--target-share`, `--targets`
drawn from the unpopular half with the seed), fits the defence's calibrator once on the sequence features
(no recommender is trained, so no item-embedding coherence), and prints one JSON line per `--defence`
setting: the detection AUC, the fake users' probabilities, the held-out simulated fakes' quantiles and
medians per simulated target share and kind, the rule's threshold, and how many fake and real users one update would flag under the setting's rule. A probe of calibrator settings in seconds, not the acceptance run.

    python benchmarks/attack_calibrator_ml100k.py --defence '{}' --defence '{"hidden": 32}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DATA = Path("/work/shared/data/ml-100k")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--kind", default="insertion")
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--target-share", type=float, default=0.25)
    parser.add_argument("--targets", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-events", type=int, default=None, help="most events per fake user")
    parser.add_argument(
        "--defence", action="append", default=None, help="DefenceConfig overrides as JSON (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="accepted for uniformity; the probe is quick")
    args = parser.parse_args(argv)

    import torch
    from attack_poison_ml100k import poison_unpopular

    from evaluation.attacks.defence import Calibrator, DefenceConfig, flag_threshold, flagged_users
    from evaluation.attacks.measure import detection_auc
    from recsim_env import data as data_module

    torch.set_num_threads(1)
    logs = data_module.load(args.data)
    _, poisoned = poison_unpopular(logs, args, args.max_events)
    lines = []
    for overrides in args.defence or ["{}"]:
        start = time.perf_counter()
        config = DefenceConfig(**{"seed": args.seed, **json.loads(overrides)})
        calibrator = Calibrator(poisoned.data, config)
        fit = calibrator.score()
        scores = fit.logged
        fake = poisoned.fake_users[calibrator.users]
        flagged = flagged_users(fit, calibrator.users, config)
        threshold = flag_threshold(fit, config)
        # Simulation g is kind g // len(shares), share g % len(shares) (`simulate_fakes`' order).
        n_shares = len(config.simulated_target_shares)
        shares = np.asarray(config.simulated_target_shares)[calibrator.fakes.groups % n_shares]
        kinds = np.asarray(config.simulated_kinds)[calibrator.fakes.groups // n_shares]
        line = {
            "benchmark": "attack_calibrator_ml100k",
            "kind": args.kind,
            "target_share": args.target_share,
            "seed": args.seed,
            "defence": json.loads(overrides),
            "detection_auc": round(detection_auc(scores, fake), 4),
            "fake_probabilities": np.round(np.sort(scores[fake]), 3).tolist(),
            "real_above_0.5": int((scores[~fake] > 0.5).sum()),
            "threshold": None if threshold is None else round(threshold, 4),
            "simulated_quantiles": {
                str(q): round(float(np.quantile(fit.simulated, q)), 4) for q in (0.1, 0.25, 0.5)
            },
            "simulated_median_by_share": {
                str(share): round(float(np.median(fit.simulated[shares == share])), 4)
                for share in config.simulated_target_shares
            },
            "simulated_median_by_kind": {
                kind: round(float(np.median(fit.simulated[kinds == kind])), 4)
                for kind in config.simulated_kinds
            },
            "flagged_fake": int(poisoned.fake_users[flagged].sum()),
            "flagged_real": int((~poisoned.fake_users[flagged]).sum()),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(json.dumps(line), flush=True)
        lines.append(line)
    return lines


if __name__ == "__main__":
    main()
