"""Small synthetic logs shared by the encoder tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ML100K = Path(__file__).resolve().parents[3] / "../shared/data/ml-100k"


N_ITEMS = 30
"""Catalogue size of the encoders' unit tests (ids 0..29; 30 is padding)."""
MAX_LEN = 12
"""History length of the encoders' unit tests."""


def left_padded(rows: list[list[int]], length: int = MAX_LEN):
    """`[len(rows), length]` int64 item ids, each row's items at the end, padding (`N_ITEMS`) before them."""
    import torch

    out = torch.full((len(rows), length), N_ITEMS, dtype=torch.long)
    for r, row in enumerate(rows):
        out[r, length - len(row) :] = torch.tensor(row)
    return out


def tiny_encoder(name: str, **overrides):
    """Registered encoder `name` with D = 16 on the unit-test catalogue, weights seeded 0, in eval mode."""
    import torch

    from recsim_env import encoders

    torch.manual_seed(0)
    return encoders.build(name, {"n_items": N_ITEMS, "max_len": MAX_LEN, "d_model": 16, **overrides}).eval()


def fake_text(n_items: int, width: int, seed: int = 0):
    """`[n_items, width]` unit-norm random item "text" embeddings (seeded)."""
    import torch

    return torch.nn.functional.normalize(
        torch.randn(n_items, width, generator=torch.Generator().manual_seed(seed)), dim=-1
    )


def text_encoder(name: str, *, width: int, cold, **fields):
    """Registered encoder `name` with config `fields` (D = 16 unless given, weights seeded 0, eval mode),
    `fake_text` item text of `width` attached and the items `cold` marked unseen."""
    import torch

    from recsim_env import encoders

    torch.manual_seed(0)
    config = {"d_model": 16, "item_text_dim": width, **fields}
    if name == "hstu":
        config.update(attention_dim=8, linear_dim=8)
    enc = encoders.build(name, config)
    n_items = config["n_items"]
    enc.set_item_text(fake_text(n_items, width))
    seen = torch.ones(n_items, dtype=torch.bool)
    seen[cold] = False
    enc.set_seen_items(seen)
    return enc.eval()


def cyclic_frame(n_users: int = 60, n_items: int = 20, length: int = 14, seed: int = 0) -> pd.DataFrame:
    """Users walk the catalogue in a fixed cycle (item i is always followed by item i + 1 mod N) from a random
    start: the next item is fully predictable from the last one, so a working encoder learns it."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for t in range(length):
            rows.append(
                (f"u{u}", 100 + (start + t) % n_items, 1_000_000 + 3600 * t + u, float(rng.integers(1, 6)))
            )
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])


def write_titled_recbole(folder: Path, title) -> Path:
    """`cyclic_frame`'s events as RecBole atomic files in `folder` (`toy.inter`), with an item table
    (`toy.item`) whose `title:token_seq` column is `title(item_id)`; returns `folder`."""
    folder.mkdir()
    events = cyclic_frame().rename(
        columns={"user_id": "user_id:token", "item_id": "item_id:token", "timestamp": "timestamp:float"}
    )
    events[["user_id:token", "item_id:token", "timestamp:float"]].to_csv(
        folder / "toy.inter", sep="\t", index=False
    )
    items = pd.DataFrame({"item_id:token": sorted(events["item_id:token"].unique())})
    items["title:token_seq"] = [title(i) for i in items["item_id:token"]]
    items.to_csv(folder / "toy.item", sep="\t", index=False)
    return folder


@pytest.fixture(autouse=True)
def single_torch_thread():
    """The models here are tiny: one thread is as fast, and does not thrash on a shared, busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cyclic_logs():
    from recsim_env.data import LoggedInteractions

    return LoggedInteractions.from_frame(cyclic_frame(), feedback_cols=["rating"])


@pytest.fixture
def cyclic_csv(tmp_path) -> Path:
    path = tmp_path / "cyclic.csv"
    cyclic_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def ml100k() -> Path:
    if not (ML100K / "ml-100k.inter").is_file():
        pytest.skip(f"MovieLens 100K not found at {ML100K.resolve()} (shared data folder absent)")
    return ML100K
