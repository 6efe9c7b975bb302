"""Settings every test shares."""

import pytest


@pytest.fixture(autouse=True)
def _sb3_logs_in_tmp(tmp_path_factory, monkeypatch):
    """SB3 models built directly in tests log under pytest's temp dir, not in a new /tmp/SB3-<date> each."""
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path_factory.getbasetemp() / "sb3-logs"))
