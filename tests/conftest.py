"""Shared fixtures. Environment for a local, private Ray: no token auth, no usage stats."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
MPII_DIR = SHARED_DATA / "mpii"


_TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config, items):
    """Each test carries the marker of its folder: `pytest -m unit` runs the pure tier alone."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in _TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def mpii_dir() -> Path:
    if not MPII_DIR.exists():
        pytest.skip(f"real MPII annotation files not found at {MPII_DIR}")
    return MPII_DIR


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray cluster (2 CPUs) shared by the tests of a session.

    No dashboard: nothing here needs one (tests that find Ray Train workers ask the GCS), and a
    test must not depend on whether an earlier one already connected this process to a cluster
    started without it.
    """
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID",
               "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")


@pytest.fixture(autouse=True)
def _isolated_mlflow_env():
    """Each test starts with no MLflow tracking/registry URI or run in the environment (a shell
    that exported one must not point the suite at its store), and the environment is put back
    after. The project passes its store explicitly; nothing sets MLflow's process-wide state."""
    saved = {name: os.environ.pop(name, None) for name in _MLFLOW_ENV}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
