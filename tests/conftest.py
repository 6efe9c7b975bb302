"""Settings every test shares."""

import pytest


@pytest.fixture(autouse=True)
def _sb3_logs_in_tmp(tmp_path_factory, monkeypatch):
    """SB3 models built directly in tests log under pytest's temp dir, not in a new /tmp/SB3-<date> each."""
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path_factory.getbasetemp() / "sb3-logs"))


def rewrite_manifest(directory) -> None:
    """Re-hash every file of an artifact into its manifest, as a user editing files by hand (and
    fixing the hashes) would: what is then refused is refused for what the files say."""
    import json
    from pathlib import Path

    from recsim_env.checkpoint import MANIFEST_FILE, write_manifest

    manifest = json.loads((Path(directory) / MANIFEST_FILE).read_text())
    write_manifest(Path(directory), manifest["kind"], manifest.get("metadata", {}))


@pytest.fixture
def rehash():
    """`rehash(dir)`: rewrite an artifact's manifest over its files as they are now."""
    return rewrite_manifest


@pytest.fixture
def one_worker_group(tmp_path):
    """A gloo process group of one worker (this process), as Ray Train sets up for `num_workers=1`."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()
