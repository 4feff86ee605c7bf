"""infra/ and ray_cluster.yaml: they parse, pass Ray's own schema, and agree with the project.

Agreement means: every manifest runs the one documented image (tagged with the project version),
the Dockerfile's entrypoint is the `shg` script of pyproject.toml, and every `shg ...` command in
a manifest parses with the real CLI (so a renamed option breaks this test, not a deployment).
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import click
import pytest
import typer.main
import yaml

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"


def _yaml_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _documented_image() -> str:
    """The project image as infra/README.md's table names it."""
    match = re.search(r"\| `(\S+/shg:[^`]+)` \| `infra/Dockerfile`", (INFRA / "README.md").read_text())
    assert match, "infra/README.md must document the project image in its table"
    return match.group(1)


def _walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _containers(doc: dict) -> list[dict]:
    return [c for node in _walk(doc) for c in node.get("containers", []) if isinstance(c, dict)]


def _rayjob_specs(path: Path) -> list[dict]:
    """Every RayJob spec in a file: RayJobs, RayCronJob templates, RayJobs embedded in ConfigMaps."""
    specs = []
    for doc in _yaml_docs(path):
        if doc["kind"] == "RayJob":
            specs.append(doc["spec"])
        elif doc["kind"] == "RayCronJob":
            specs.append(doc["spec"]["jobTemplate"])
        elif doc["kind"] == "ConfigMap":
            for text in doc["data"].values():
                specs.extend(d["spec"] for d in yaml.safe_load_all(text) if d and d.get("kind") == "RayJob")
    return specs


def _parse_with_cli(command_line: str) -> click.Context:
    """Parses `shg SUBCOMMAND ARGS` with the real typer app without running it."""
    argv = shlex.split(command_line)
    assert argv[0] == "shg", f"entrypoint {command_line!r} should start with the `shg` script"
    from pipelines.cli.app import build_app

    group = typer.main.get_command(build_app())
    name, *args = argv[1:]
    command = group.get_command(click.Context(group), name)
    assert command is not None, f"`shg {name}` is not a command of the CLI"
    return command.make_context(f"shg {name}", args)


MANIFESTS = sorted(K8S.glob("*.yaml")) + [INFRA / "mlflow" / "docker-compose.yml", ROOT / "ray_cluster.yaml"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_manifest_parses(path):
    docs = _yaml_docs(path)
    assert docs and all(isinstance(d, dict) for d in docs)
    if path.parent == K8S:
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{path.name}: {doc.get('kind')}"
            assert doc["kind"] == "Namespace" or doc["metadata"].get("namespace") == "shg"


def test_dockerfile_installs_with_constraints_and_runs_shg():
    text = (INFRA / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, re.M)
    assert re.search(r"pip install [^\n]*-c constraints\.txt \.", text)
    assert 'ENTRYPOINT ["shg"]' in text
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["shg"] == "pipelines.cli.app:main"
    # Every package pyproject installs is copied into the image before `pip install .`.
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        assert f"COPY {pattern.rstrip('*')} " in text, f"Dockerfile does not copy {pattern}"


def test_project_image_is_documented_and_versioned():
    image = _documented_image()
    assert image.endswith(":" + _project_version())
    assert image in (INFRA / "Dockerfile").read_text()  # the build command in its header


def test_kubernetes_workloads_all_run_the_documented_image():
    image = _documented_image()
    seen = 0
    for path in ("rayjob-retrain.yaml", "raycronjob-retrain.yaml", "cronjob-retrain.yaml"):
        for spec in _rayjob_specs(K8S / path):
            cluster = spec["rayClusterSpec"]
            assert cluster["rayVersion"] == "2.60.0"
            pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
            for group in pods:
                for container in group["template"]["spec"]["containers"]:
                    assert container["image"] == image, f"{path}: {container['name']}"
                    seen += 1
    assert seen >= 9  # head + CPU workers + GPU workers, in three files


def test_worker_groups_cover_preprocessing_and_gpu_training():
    (spec,) = _rayjob_specs(K8S / "rayjob-retrain.yaml")
    groups = {g["groupName"]: g for g in spec["rayClusterSpec"]["workerGroupSpecs"]}
    gpu = [g for g in groups.values() if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    cpu = [g for g in groups.values() if g not in gpu]
    assert gpu and cpu
    for group in groups.values():
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_rayjob_entrypoints_parse_with_the_real_cli():
    entrypoints = {
        path.name: spec["entrypoint"]
        for path in K8S.glob("*.yaml")
        for spec in _rayjob_specs(path)
    }
    assert set(entrypoints) == {"rayjob-retrain.yaml", "raycronjob-retrain.yaml", "cronjob-retrain.yaml"}
    one_off = _parse_with_cli(entrypoints["rayjob-retrain.yaml"])
    assert one_off.command.name == "run" and one_off.params["address"] == "auto"
    for name in ("raycronjob-retrain.yaml", "cronjob-retrain.yaml"):
        scheduled = _parse_with_cli(entrypoints[name])
        assert scheduled.command.name == "schedule" and scheduled.params["once"] is True
        assert scheduled.params["workdir"] == one_off.params["workdir"]
        assert scheduled.params["tracking_uri"] == one_off.params["tracking_uri"]


def test_cron_fallback_submits_the_same_rayjob_as_the_raycronjob():
    (cron_template,) = _rayjob_specs(K8S / "raycronjob-retrain.yaml")
    (fallback,) = _rayjob_specs(K8S / "cronjob-retrain.yaml")
    assert fallback == cron_template
    (cron,) = [d for d in _yaml_docs(K8S / "raycronjob-retrain.yaml")]
    (k8s_cron,) = [d for d in _yaml_docs(K8S / "cronjob-retrain.yaml") if d["kind"] == "CronJob"]
    assert cron["spec"]["schedule"] == k8s_cron["spec"]["schedule"]
    assert k8s_cron["spec"]["concurrencyPolicy"] == "Forbid"
    from croniter import croniter

    assert croniter.is_valid(cron["spec"]["schedule"])


def test_tracking_server_uses_postgres_and_s3_and_training_points_at_it():
    docs = _yaml_docs(K8S / "mlflow.yaml")
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = _containers(deployment)
    command = " ".join(container["args"])
    assert "mlflow server" in command
    assert "--backend-store-uri \"postgresql://" in command
    assert "--artifacts-destination s3://mlflow/" in command
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"].startswith("http://minio.")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert {"mlflow", "postgres", "minio"} <= set(services)
    uri = f"http://mlflow.shg.svc.cluster.local:{services['mlflow']['spec']['ports'][0]['port']}"
    for path in ("rayjob-retrain.yaml", "raycronjob-retrain.yaml"):
        for spec in _rayjob_specs(K8S / path):
            assert _parse_with_cli(spec["entrypoint"]).params["tracking_uri"] == uri

    compose = _yaml_docs(INFRA / "mlflow" / "docker-compose.yml")[0]["services"]
    server = " ".join(compose["mlflow"]["command"])
    assert "--backend-store-uri=postgresql://" in server and "--artifacts-destination=s3://" in server
    assert compose["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert {"postgres", "minio", "create-bucket"} <= set(compose)


def test_ray_cluster_yaml_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    validate_config(raw)
    validate_config(prepare_config(raw))  # after Ray fills in its provider defaults, as `ray up` does

    types = raw["available_node_types"]
    head = types[raw["head_node_type"]]
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))  # a CPU head
    gpu = {n: t for n, t in types.items() if t["node_config"]["InstanceType"].split(".")[0] in ("g5", "p4d")}
    cpu = {n: t for n, t in types.items() if n != raw["head_node_type"] and n not in gpu}
    assert gpu and cpu
    for node_type in list(gpu.values()) + list(cpu.values()):
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= raw["max_workers"]
    setup = " ".join(raw["setup_commands"])
    assert "-c ~/shg/constraints.txt ~/shg" in setup
    assert raw["file_mounts"] == {"~/shg": "."}
    assert {".venv", ".git", "runs"} <= set(raw["rsync_exclude"])


def test_ray_cluster_yaml_validation_rejects_a_broken_config():
    """The validation above can fail: a wrong type is caught."""
    import jsonschema
    from ray.autoscaler._private.util import validate_config

    raw = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    raw["available_node_types"]["worker.gpu-train"]["max_workers"] = "four"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(raw)
