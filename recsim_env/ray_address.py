"""The check of a `RAY_ADDRESS` before `ray.init` connects to it (shared by every Ray entry point).

Importing this module does not import ray.
"""

from __future__ import annotations

import socket

from recsim_env.errors import ArgumentError


def check_ray_address(address: str, *, timeout_s: float = 5.0) -> None:
    """Refuse a `RAY_ADDRESS` of the form `host:port` at which nothing accepts a connection.

    `ray.init` would retry such an address for minutes; `auto`, `local` and `ray://` addresses are left
    to Ray. Raises an `ArgumentError` naming the address.
    """
    if address in ("auto", "local") or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ArgumentError(f"RAY_ADDRESS={address!r}: expected HOST:PORT (the head node's GCS address)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise ArgumentError(
            f"RAY_ADDRESS={address!r}: no Ray cluster answers there ({error}); start one with "
            "`ray start --head` or unset RAY_ADDRESS to train on a local Ray"
        ) from None


def ray_train_choice(num_workers: int | None) -> tuple[bool, str | None]:
    """What a `--num-workers` option asks for: `(train on Ray Train?, the RAY_ADDRESS or None)`.

    Absent (None), or 1 without `RAY_ADDRESS`, is one process without Ray; more workers, or a
    `RAY_ADDRESS`, is Ray Train. Raises a ValueError for fewer than 1 worker, or when Ray Train is asked
    for and ray is not installed.
    """
    import importlib.util
    import os

    if num_workers is not None and num_workers < 1:
        raise ValueError(f"--num-workers must be >= 1, got {num_workers}")
    ray_address = os.environ.get("RAY_ADDRESS") or None
    on_ray = num_workers is not None and (num_workers > 1 or ray_address is not None)
    if on_ray and importlib.util.find_spec("ray") is None:
        raise ValueError(
            "--num-workers trains on Ray Train, which needs ray: pip install 'recsim-env[rllib]'"
        )
    return on_ray, ray_address
