"""infra/ and ray_cluster.yaml: they parse, pass Ray's own schema, and agree with the project.

Agreement means: every manifest runs the one documented image (tagged with the project version),
the Dockerfile's entrypoint is the `shg` script of pyproject.toml, and every `shg ...` command in
a manifest parses with the real CLI (so a renamed option breaks this test, not a deployment).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import click
import pytest
import typer.main
import yaml

ROOT = Path(__file__).resolve().parents[2]
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
            for key, text in doc["data"].items():
                if not key.endswith((".yaml", ".yml")):  # e.g. MLflow's basic_auth.ini
                    continue
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
    # The torch build is pinned too: the CUDA set by default (GPU workers), the CPU set on request.
    assert re.search(r"^ARG TORCH=cuda\s*$", text, re.M)
    assert "COPY constraints ./constraints" in text
    assert re.search(r'pip install [^\n]*-c "constraints/\$TORCH\.txt" -c constraints\.txt "\$PROJECT"', text)
    # The project is what gets installed: with the gpu extra on the CUDA image, bare on the CPU one.
    assert re.search(r'cuda\)[^\n]*PROJECT="\.\[gpu\]"', text)
    assert re.search(r"cpu\)[^\n]*PROJECT=\. ", text)
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
    assert "mlflow server --app-name basic-auth" in command
    assert "--artifacts-destination s3://mlflow/" in command
    env = {e["name"]: e.get("value") for e in container["env"]}
    # the URI tests/integration/test_team_tracking.py serves, by environment (issue 23: no password in argv)
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@")
    assert "--backend-store-uri" not in command
    assert env["MLFLOW_S3_ENDPOINT_URL"].startswith("http://minio.")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert {"mlflow", "postgres", "minio"} <= set(services)
    uri = f"http://mlflow.shg.svc.cluster.local:{services['mlflow']['spec']['ports'][0]['port']}"
    for path in ("rayjob-retrain.yaml", "raycronjob-retrain.yaml"):
        for spec in _rayjob_specs(K8S / path):
            assert _parse_with_cli(spec["entrypoint"]).params["tracking_uri"] == uri

    compose = _yaml_docs(INFRA / "mlflow" / "docker-compose.yml")[0]["services"]
    server = " ".join(compose["mlflow"]["command"])
    assert "--app-name=basic-auth" in server and "--artifacts-destination=s3://" in server
    assert compose["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")
    assert "--backend-store-uri" not in server
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
    assert "-c ~/shg/constraints/cuda.txt" in setup  # the GPU workers' torch build, pinned
    assert re.search(r"astral\.sh/uv/\d+\.\d+\.\d+/install\.sh", setup)  # uv itself pinned
    assert raw["file_mounts"]["~/shg"] == "."
    assert {".env*", ".venv", ".git", "runs"} <= set(raw["rsync_exclude"])


def test_ray_cluster_yaml_validation_rejects_a_broken_config():
    """The validation above can fail: a wrong type is caught."""
    import jsonschema
    from ray.autoscaler._private.util import validate_config

    raw = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    raw["available_node_types"]["worker.gpu-train"]["max_workers"] = "four"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(raw)


# --- secrets and exposure (issue 13, point 11) ------------------------------------------------

INFRA_TEXT_FILES = sorted(p for p in INFRA.rglob("*") if p.is_file()) + [ROOT / "ray_cluster.yaml"]
_SECRET_NAME = r"[A-Z0-9_]*(?:PASSWORD|SECRET|TOKEN|ACCESS_KEY)[A-Z0-9_]*"


@pytest.mark.parametrize("path", INFRA_TEXT_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_default_or_placeholder_credentials(path):
    text = path.read_text()
    # ${VAR:-fallback} / ${VAR-fallback} for a secret is a password anyone can read here.
    defaults = re.findall(r"\$\{(" + _SECRET_NAME + r"):?-", text)
    assert not defaults, f"{path.name}: default values for {defaults}; use ${{VAR:?message}}"
    assert not re.search(r"change[-_]?me|dev-password|password123", text, re.I), path.name
    if path.suffix in (".yaml", ".yml"):
        for doc in _yaml_docs(path):
            assert doc.get("kind") != "Secret", f"{path.name}: a Secret with literal values; reference one instead"
            for node in _walk(doc):  # no literal value for a secret-named env var either
                if re.fullmatch(_SECRET_NAME, str(node.get("name", ""))) and "value" in node:
                    pytest.fail(f"{path.name}: {node['name']} has a literal value")


def test_compose_requires_its_passwords_and_publishes_on_loopback_only():
    compose = _yaml_docs(INFRA / "mlflow" / "docker-compose.yml")[0]["services"]
    text = (INFRA / "mlflow" / "docker-compose.yml").read_text()
    for name in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD"):
        assert "${" + name + ":?" in text  # compose stops with this message when it is unset
    published = [port for service in compose.values() for port in service.get("ports", [])]
    assert published, "the compose file publishes the tracking server"
    for port in published:
        assert str(port).startswith("127.0.0.1:"), f"{port} is published on every interface"


def test_kubernetes_store_references_its_secret_and_stays_in_the_namespace():
    docs = _yaml_docs(K8S / "mlflow.yaml")
    for doc in docs:
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", doc["metadata"]["name"]
    referenced = {
        ref["name"] for doc in docs for c in _containers(doc) for ref in
        [e["secretRef"] for e in c.get("envFrom", []) if "secretRef" in e]
    }
    # the stores' root keys, MLflow's own S3 keys, the server's auth secrets, the gate's login (issue 23)
    assert referenced == {"mlflow-store", "mlflow-s3", "mlflow-auth", "mlflow-gate"}
    for secret in referenced:
        assert f"kubectl -n shg create secret generic {secret}" in (INFRA / "README.md").read_text(), secret
    fenced = set()
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
        selector = policy["spec"]["podSelector"]
        apps = set(selector.get("matchLabels", {}).values())
        for expression in selector.get("matchExpressions", []):
            apps |= set(expression["values"])
        for rule in policy["spec"]["ingress"]:
            for source in rule["from"]:
                assert set(source) == {"podSelector"}, "ingress only from pods of this namespace"
        fenced |= apps
    assert {"mlflow", "minio", "postgres"} <= fenced
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = _containers(deployment)
    assert "--host 0.0.0.0" in " ".join(container["args"])  # the pod IP, behind the policies above


def test_ray_listens_on_all_interfaces_only_with_token_auth():
    for path in ("rayjob-retrain.yaml", "raycronjob-retrain.yaml", "cronjob-retrain.yaml"):
        for spec in _rayjob_specs(K8S / path):
            cluster = spec["rayClusterSpec"]
            host = cluster["headGroupSpec"]["rayStartParams"].get("dashboard-host", "127.0.0.1")
            if host in ("0.0.0.0", "::"):
                assert cluster.get("authOptions", {}).get("mode") == "token", path

    raw = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    (head_start,) = [c for c in raw["head_start_ray_commands"] if "ray start" in c]
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start
    for command in [c for c in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"] if "ray start" in c]:
        assert "RAY_AUTH_MODE=token" in command
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_env_files_never_reach_a_job_or_an_image(tmp_path):
    """Packs a project folder with Ray's own working_dir packer and the excludes of `shg submit`."""
    from ray._private.runtime_env.packaging import create_package

    from pipelines.orchestration.submit import WORKING_DIR_EXCLUDES

    project = tmp_path / "project"
    for name in ("pipelines/cli/app.py", ".env", ".env.production", "infra/mlflow/.env", "deploy.pem", "keep.py"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("x")
    package = tmp_path / "package.zip"
    create_package(str(project), package, include_gitignore=True, excludes=list(WORKING_DIR_EXCLUDES))
    import zipfile

    shipped = set(zipfile.ZipFile(package).namelist())
    assert {"pipelines/cli/app.py", "keep.py"} <= shipped
    assert not {n for n in shipped if ".env" in n or n.endswith(".pem")}, shipped
    assert ".env*" in (INFRA / "Dockerfile.dockerignore").read_text().split()


def test_submit_forwards_no_credentials(monkeypatch):
    from pipelines.orchestration import submit

    secrets = {name: "s3cr3t" for name in submit.NEVER_FORWARDED}
    for name, value in {**secrets, "MLFLOW_TRACKING_URI": "http://mlflow:5000", "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    env = submit.runtime_env(submit.SubmitConfig())["env_vars"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert not set(secrets) & set(env)
    assert "s3cr3t" not in json.dumps(env)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://admin:s3cr3t@mlflow:5000")
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_URI carries a password"):
        submit.runtime_env(submit.SubmitConfig())


PAPER_RUN_S = 3 * 86400  # "about 3 days" on one Titan X for the `mpii` recipe (Newell et al. 2016, sec. 5)


@pytest.mark.parametrize("path", [K8S / "rayjob-retrain.yaml", K8S / "raycronjob-retrain.yaml",
                                  K8S / "cronjob-retrain.yaml"], ids=lambda p: p.name)
def test_a_rayjobs_deadline_allows_the_papers_multi_day_run(path):
    for spec in _rayjob_specs(path):
        assert spec["activeDeadlineSeconds"] >= 2 * PAPER_RUN_S, f"{path.name}: deadline shorter than 2x the paper's run"
    for doc in _yaml_docs(path):  # a weekly firing ends before the next one starts
        if doc["kind"] in ("RayCronJob", "CronJob"):
            assert doc["spec"]["schedule"].split()[2:] == ["*", "*", "1"]  # weekly, Mondays
            assert all(s["activeDeadlineSeconds"] < 7 * 86400 for s in _rayjob_specs(path))


# --- no secret in argv, least privilege, authentication (issue 23, points 3 and 4) -------------

_SECRET_REF = re.compile(r"(\$\$?)(\(|\{)?(" + _SECRET_NAME + r")")


def _k8s_containers() -> list[tuple[str, dict]]:
    """(where, container) for every container of infra/k8s, RayJobs inside ConfigMaps included."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _yaml_docs(path):
            found += [(f"{path.name}:{doc['metadata'].get('name') or doc['metadata'].get('generateName')}:{c['name']}", c)
                      for c in _containers(doc)]  # fmt: skip
            if doc["kind"] == "ConfigMap":
                for key, text in doc["data"].items():
                    if key.endswith((".yaml", ".yml")):
                        found += [(f"{path.name}:{key}:{c['name']}", c)
                                  for d in yaml.safe_load_all(text) if d for c in _containers(d)]  # fmt: skip
    return found


def _secret_refs_on_argv(text: str, *, compose: bool) -> list[str]:
    """Secret-named variables that a command line hands to a process as an argument: Kubernetes'
    $(VAR) and compose's ${VAR} are expanded into argv before anything runs; a shell's "$VAR"
    is allowed only as an argument of the builtin printf (which starts no process), piped or
    written to where the secret is read from."""
    bad = []
    for segment in re.split(r"&&|\|\||;|\||\n", text):
        for dollars, bracket, name in _SECRET_REF.findall(segment):
            if name.endswith("_ID"):  # AWS_ACCESS_KEY_ID: a user name, not a secret
                continue
            interpolated = (bracket == "(" and dollars == "$") or (compose and dollars == "$" and bracket == "{")
            if interpolated or not segment.strip().startswith("printf "):
                bad.append(f"{name} in: {segment.strip()[:120]}")
    return bad


CONTAINERS = _k8s_containers()


@pytest.mark.parametrize("where,container", CONTAINERS, ids=[w for w, _ in CONTAINERS])
def test_no_secret_reaches_a_kubernetes_containers_argv(where, container):
    argv = " ".join(container.get("command", []) + container.get("args", []))
    assert not _secret_refs_on_argv(argv, compose=False), where
    assert "mc alias set" not in argv and "--backend-store-uri" not in argv, where
    assert not re.search(r"://[^\s/@]*:\$", argv), f"{where}: a URI with a password on the command line"


def test_no_secret_reaches_a_compose_services_argv():
    compose = _yaml_docs(INFRA / "mlflow" / "docker-compose.yml")[0]["services"]
    for name, service in compose.items():
        command = service.get("command", [])
        argv = " ".join(command if isinstance(command, list) else [command])
        assert not _secret_refs_on_argv(argv, compose=True), name
        assert "mc alias set" not in argv and "--backend-store-uri" not in argv, name


def test_the_argv_rule_can_fail():
    assert _secret_refs_on_argv('mc alias set s http://m "$MINIO_ROOT_PASSWORD"', compose=False)
    assert _secret_refs_on_argv("--backend-store-uri=postgresql://u:${POSTGRES_PASSWORD}@db/m", compose=True)
    assert _secret_refs_on_argv("server --password $(MLFLOW_AUTH_ADMIN_PASSWORD)", compose=False)
    assert not _secret_refs_on_argv("printf '%s' \"$AWS_SECRET_ACCESS_KEY\" | mc admin user add store", compose=False)


@pytest.mark.parametrize("where,container", CONTAINERS, ids=[w for w, _ in CONTAINERS])
def test_every_kubernetes_container_runs_unprivileged(where, container):
    context = container.get("securityContext")
    assert context, f"{where}: no securityContext"
    assert context.get("allowPrivilegeEscalation") is False, where
    assert "ALL" in context.get("capabilities", {}).get("drop", []), where
    assert context.get("runAsNonRoot") is True or _pod_runs_as_non_root(where), where


def _pod_runs_as_non_root(where: str) -> bool:
    path, name = where.split(":")[:2]
    return any(node.get("securityContext", {}).get("runAsNonRoot") is True
               for doc in _yaml_docs(K8S / path) if doc["metadata"].get("name") == name for node in _walk(doc))


def test_the_store_and_server_containers_have_read_only_root_filesystems():
    docs = _yaml_docs(K8S / "mlflow.yaml")
    for doc in docs:
        for container in _containers(doc):
            assert container["securityContext"].get("readOnlyRootFilesystem") is True, container["name"]


def test_the_mlflow_image_runs_as_a_non_root_user():
    users = re.findall(r"^USER\s+(\S+)", (INFRA / "mlflow" / "Dockerfile").read_text(), re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert '"mlflow[auth]==' in (INFRA / "mlflow" / "Dockerfile").read_text()  # the basic-auth app's Flask-WTF


def test_mlflows_s3_keys_are_not_minios_root_keys():
    (deployment,) = [d for d in _yaml_docs(K8S / "mlflow.yaml") if d["kind"] == "Deployment"]
    (container,) = _containers(deployment)
    refs = {e["secretRef"]["name"] for e in container.get("envFrom", [])}
    refs |= {e["valueFrom"]["secretKeyRef"]["name"] + "/" + e["valueFrom"]["secretKeyRef"]["key"]
             for e in container.get("env", []) if "valueFrom" in e}  # fmt: skip
    assert "mlflow-s3" in refs and not any("MINIO_ROOT" in r for r in refs) and "mlflow-store" not in refs, refs
    compose = _yaml_docs(INFRA / "mlflow" / "docker-compose.yml")[0]["services"]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "MINIO_ROOT" not in compose["mlflow"]["environment"][key], key


def test_the_tracking_servers_log_users_in_and_the_ray_pods_log_in_as_the_gate():
    (deployment,) = [d for d in _yaml_docs(K8S / "mlflow.yaml") if d["kind"] == "Deployment"]
    (container,) = _containers(deployment)
    assert container["args"][:4] == ["mlflow", "server", "--app-name", "basic-auth"]
    ini = (INFRA / "mlflow" / "basic_auth.ini").read_text()
    (configmap,) = [d for d in _yaml_docs(K8S / "mlflow.yaml") if d["kind"] == "ConfigMap"]
    assert [l for l in ini.splitlines() if l and not l.startswith("#")] == configmap["data"]["basic_auth.ini"].splitlines()
    assert "default_permission = READ" in ini and "password" not in ini.split("[mlflow]")[1]
    for path in ("rayjob-retrain.yaml", "raycronjob-retrain.yaml", "cronjob-retrain.yaml"):
        for spec in _rayjob_specs(K8S / path):
            for container in _containers(spec["rayClusterSpec"]):
                assert {"secretRef": {"name": "mlflow-gate"}} in container.get("envFrom", []), path


def test_authoptions_are_documented_with_the_kuberay_release_that_has_them():
    for path in ("rayjob-retrain.yaml", "raycronjob-retrain.yaml", "cronjob-retrain.yaml"):
        text = (K8S / path).read_text()
        assert "authOptions" in text and "KubeRay >= 1.5.1" in text, path
        assert ">= 1.1," not in text, path


def test_a_network_policy_fences_the_ray_pods():
    (policy,) = [d for d in _yaml_docs(K8S / "networkpolicy-ray.yaml") if d["kind"] == "NetworkPolicy"]
    ray_pods = {"key": "ray.io/node-type", "operator": "Exists"}
    assert ray_pods in policy["spec"]["podSelector"]["matchExpressions"] and policy["spec"]["policyTypes"] == ["Ingress"]
    for rule in policy["spec"]["ingress"]:
        for source in rule["from"]:  # Ray pods, or the operator's namespace on the listed ports only
            assert "podSelector" in source or ("namespaceSelector" in source and rule.get("ports")), rule
