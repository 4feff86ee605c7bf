"""Which Ray cluster a step joins: a private one on a laptop, the job's own inside a Ray job."""

from __future__ import annotations

import shlex

import pytest

from pipelines.orchestration import submit as jobs
from pipelines.runtime.ray_cluster import resolve_address

# what Ray puts in a job driver's environment (ray/dashboard/modules/job/job_supervisor.py)
JOB_ENV = {"RAY_JOB_ID": "02000000", "RAY_ADDRESS": "10.0.3.7:6379"}


def test_a_step_inside_a_ray_job_joins_the_jobs_cluster():
    assert resolve_address(None, JOB_ENV) == "auto"
    assert resolve_address("", JOB_ENV) == "auto"
    assert resolve_address(None, {"RAY_JOB_ID": "02000000"}) == "auto"
    assert resolve_address(None, {"RAY_ADDRESS": "10.0.3.7:6379"}) == "auto"  # `RAY_ADDRESS=... shg train`


def test_outside_a_job_a_step_starts_its_own_cluster_and_an_explicit_address_wins():
    assert resolve_address(None, {}) == "local"
    # the Jobs API URL that `shg submit` reads from RAY_ADDRESS is not a cluster to join
    assert resolve_address(None, {"RAY_ADDRESS": "http://127.0.0.1:8265"}) == "local"
    assert resolve_address("local", JOB_ENV) == "local"
    assert resolve_address("ray://head:10001", JOB_ENV) == "ray://head:10001"
    assert resolve_address("auto", {}) == "auto"


@pytest.mark.parametrize("step", ["run", "prepare", "train", "evaluate", "rerun", "schedule"])
def test_submit_sends_every_ray_step_to_the_jobs_cluster(step):
    cfg = jobs.SubmitConfig(address="http://x:8265", step=step, args=("--profile", "mpii"))
    assert shlex.split(jobs.entrypoint(cfg))[4:7] == ["--address", "auto", "--profile"]
    own = jobs.SubmitConfig(address="http://x:8265", step=step, args=("--address", "10.0.0.2:6379"))
    assert jobs.entrypoint(own).count("--address") == 1


def test_synth_runs_in_one_process_and_gets_no_address():
    assert "--address" not in jobs.entrypoint(jobs.SubmitConfig(step="synth", args=("--out", "x")))
