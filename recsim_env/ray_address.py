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
