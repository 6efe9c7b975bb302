"""The command-line options of the commands that train on Ray Train (`--num-workers`, `--ray-storage-path`).

Importing this module does not import ray or torch.
"""

from __future__ import annotations

from typing import Annotated

import typer

NumWorkersOption = Annotated[
    int | None,
    typer.Option(
        help="Train data-parallel on N Ray Train workers (needs ray, the rllib extra), on the cluster at "
        "RAY_ADDRESS when set, else on a local Ray; --batch-size is the global batch. Absent, or 1 without "
        "RAY_ADDRESS: one process."
    ),
]
"""`--num-workers N` (`recsim_env.ray_address.ray_train_choice` reads it)."""
RayStoragePathOption = Annotated[
    str | None,
    typer.Option(
        help="Where Ray Train keeps the workers' checkpoint (default: a temporary directory); on a "
        "cluster of several machines, a path or bucket every node reaches."
    ),
]
"""`--ray-storage-path PATH`."""
