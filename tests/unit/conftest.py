"""The unit tier: pure parts and local files only. A unit test that starts Ray fails with a
message that says where it belongs (tests/integration), so the tier stays fast."""

from __future__ import annotations

import pytest


def _refuse(*args, **kwargs):
    raise RuntimeError("a unit test may not start or join Ray: move it to tests/integration/")


@pytest.fixture(autouse=True)
def _no_ray_in_unit_tests(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "init", _refuse)
