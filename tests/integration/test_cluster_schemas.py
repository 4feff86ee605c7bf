"""The cluster files against the schemas of what runs them, and the job they run.

- `ray_cluster.yaml` against Ray's own cluster-launcher schema (`ray/autoscaler/ray-schema.json`
  of the installed ray, the file `ray up` validates with).
- Every KubeRay RayJob / RayCronJob of `infra/k8s/` (RayJobs embedded in ConfigMaps included)
  against the `openAPIV3Schema` of KubeRay's CRD for its apiVersion (tests/data/kuberay_crds/,
  vendored from kuberay). OpenAPI v3 as Kubernetes reads it is turned into JSON Schema by
  `kube_schema`: `nullable` becomes a null type, and an object with `properties` is closed
  (unknown fields rejected, as `kubectl apply`'s strict field validation does) unless it carries
  `x-kubernetes-preserve-unknown-fields`. Other `x-kubernetes-*` keys are annotations and are
  ignored; the CEL rules (`x-kubernetes-validations`, 5 in the RayJob CRD) are not evaluated.
- The pod templates of the plain Kubernetes workloads (Deployment, StatefulSet, Job, CronJob)
  against the PodTemplateSpec schema embedded in that CRD (Kubernetes 1.36's, see the data
  README), and the workloads themselves structurally: apiVersion per kind, selectors matching
  pod labels, Services selecting pods that expose their target ports.
- Each validation is shown to fail on a deliberately broken copy.
- The job they run: the real MPII data on the shared volume, the `mpii` profile, GPU training
  that fits the GPU worker group (so that group actually starts).
"""

from __future__ import annotations

import copy
import functools
import gzip
import hashlib
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml
from test_infra import K8S, ROOT, _parse_with_cli, _yaml_docs

CRD_DIR = Path(__file__).resolve().parents[1] / "data" / "kuberay_crds"
SHARED_MOUNT = "/mnt/shg"


# --- schemas ----------------------------------------------------------------------------------


def kube_schema(node):
    """A Kubernetes structural OpenAPI v3 schema as a JSON Schema (draft 7) with the API server's
    reading: nullable -> null allowed; objects with properties closed unless they preserve
    unknown fields."""
    if isinstance(node, list):
        return [kube_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: kube_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            out[key] = kube_schema(value)
        else:
            out[key] = value
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if ("properties" in out and "additionalProperties" not in out
            and not node.get("x-kubernetes-preserve-unknown-fields")):  # fmt: skip
        out["additionalProperties"] = False
    return out


def _load_yaml(stream):
    return yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.lru_cache(maxsize=None)
def crd(plural: str) -> dict:
    with gzip.open(CRD_DIR / f"ray.io_{plural}.yaml.gz", "rt") as stream:
        return _load_yaml(stream)


@functools.lru_cache(maxsize=None)
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    """The validator for `kind` at `api_version` (e.g. ray.io/v1, RayJob) from the vendored CRDs."""
    group, version = api_version.split("/")
    definition = crd(kind.lower() + "s")
    assert definition["spec"]["group"] == group and definition["spec"]["names"]["kind"] == kind
    (served,) = [v for v in definition["spec"]["versions"] if v["name"] == version]
    assert served["served"], f"{api_version} {kind} is not served by this KubeRay"
    schema = kube_schema(served["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@functools.lru_cache(maxsize=None)
def pod_template_validator() -> jsonschema.Draft7Validator:
    """Kubernetes' PodTemplateSpec, as embedded in the RayJob CRD (a RayCluster's head template)."""
    root = crd("rayjobs")
    (v1,) = [v for v in root["spec"]["versions"] if v["name"] == "v1"]
    spec = v1["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    template = spec["rayClusterSpec"]["properties"]["headGroupSpec"]["properties"]["template"]
    return jsonschema.Draft7Validator(kube_schema(template))


def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _errors(validator: jsonschema.Draft7Validator, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(doc)]


# --- manifests --------------------------------------------------------------------------------


def kuberay_docs() -> list[tuple[str, dict]]:
    """(where, document) for every RayJob / RayCronJob in infra/k8s, embedded RayJobs included."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _yaml_docs(path):
            if doc["apiVersion"].startswith("ray.io/"):
                found.append((f"{path.name}:{doc['kind']}", doc))
            elif doc["kind"] == "ConfigMap":
                for key, text in doc["data"].items():
                    if not key.endswith((".yaml", ".yml")):  # e.g. MLflow's basic_auth.ini
                        continue
                    for inner in (d for d in yaml.safe_load_all(text) if d):
                        if str(inner.get("apiVersion", "")).startswith("ray.io/"):
                            found.append((f"{path.name}:{doc['metadata']['name']}/{key}:{inner['kind']}", inner))
    return found


KUBERAY = kuberay_docs()
POD_TEMPLATE_PATHS = {  # kind -> keys from the document to its PodTemplateSpec
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
API_VERSIONS = {
    "Namespace": "v1", "Service": "v1", "ConfigMap": "v1", "PersistentVolumeClaim": "v1",
    "ServiceAccount": "v1", "Deployment": "apps/v1", "StatefulSet": "apps/v1", "Job": "batch/v1",
    "CronJob": "batch/v1", "NetworkPolicy": "networking.k8s.io/v1", "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1", "RayJob": "ray.io/v1", "RayCronJob": "ray.io/v1",
}  # fmt: skip
_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def plain_docs() -> list[tuple[str, dict]]:
    return [(f"{p.name}:{d['kind']}:{d['metadata'].get('name')}", d)
            for p in sorted(K8S.glob("*.yaml")) for d in _yaml_docs(p) if not d["apiVersion"].startswith("ray.io/")]  # fmt: skip


def _dig(doc: dict, keys: tuple[str, ...]):
    for key in keys:
        doc = doc[key]
    return doc


# --- tests: vendored data ---------------------------------------------------------------------


def test_vendored_crds_are_the_upstream_files():
    table = dict(re.findall(r"\| `(ray\.io_\w+\.yaml\.gz)` \| `[^`]+` \| `([0-9a-f]{64})` \|",
                            (CRD_DIR / "README.md").read_text()))  # fmt: skip
    assert set(table) == {p.name for p in CRD_DIR.glob("*.gz")}
    for name, digest in table.items():
        assert hashlib.sha256(gzip.decompress((CRD_DIR / name).read_bytes())).hexdigest() == digest, name


# --- tests: KubeRay ---------------------------------------------------------------------------


def test_every_kuberay_kind_of_infra_is_found():
    kinds = sorted(doc["kind"] for _, doc in KUBERAY)
    assert kinds == ["RayCronJob", "RayJob", "RayJob"], [where for where, _ in KUBERAY]


@pytest.mark.parametrize("where,doc", KUBERAY, ids=[w for w, _ in KUBERAY])
def test_kuberay_manifest_passes_its_crd_schema(where, doc):
    assert doc["apiVersion"] == API_VERSIONS[doc["kind"]]
    assert not _errors(crd_validator(doc["apiVersion"], doc["kind"]), doc)
    name = doc["metadata"].get("name") or doc["metadata"]["generateName"].rstrip("-")
    assert _DNS_NAME.fullmatch(name) and len(name) <= 63 - 10, name  # room for KubeRay's suffixes


def _rayjob_spec(doc: dict) -> dict:
    return doc["spec"]["jobTemplate"] if doc["kind"] == "RayCronJob" else doc["spec"]


BREAKAGES = {
    "misspelled field": lambda d: _rayjob_spec(d).update(entrypiont=_rayjob_spec(d).pop("entrypoint")),
    "string for an integer": lambda d: _rayjob_spec(d).update(backoffLimit="none"),
    "container without a name": lambda d: _rayjob_spec(d)["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0].pop("name"),
    "named port as containerPort": lambda d: _rayjob_spec(d)["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"].append({"containerPort": "dashboard"}),
    "misspelled GPU group field": lambda d: _rayjob_spec(d)["rayClusterSpec"]["workerGroupSpecs"][1].update(maxReplica=4),
}  # fmt: skip


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
@pytest.mark.parametrize("kind", ["RayJob", "RayCronJob"])
def test_a_broken_kuberay_manifest_is_rejected(kind, breakage):
    (doc,) = [copy.deepcopy(d) for w, d in KUBERAY if d["kind"] == kind and ":ConfigMap" not in w and "/" not in w]
    BREAKAGES[breakage](doc)
    assert _errors(crd_validator(doc["apiVersion"], doc["kind"]), doc), f"{breakage} was accepted"


def test_raycronjob_without_a_schedule_is_rejected():
    (doc,) = [copy.deepcopy(d) for _, d in KUBERAY if d["kind"] == "RayCronJob"]
    del doc["spec"]["schedule"]
    assert any("schedule" in e for e in _errors(crd_validator("ray.io/v1", "RayCronJob"), doc))


# --- tests: plain Kubernetes workloads --------------------------------------------------------


PLAIN = plain_docs()


@pytest.mark.parametrize("where,doc", PLAIN, ids=[w for w, _ in PLAIN])
def test_plain_kubernetes_manifest_is_well_formed(where, doc):
    assert doc["apiVersion"] == API_VERSIONS[doc["kind"]], f"{where}: unexpected apiVersion"
    assert _DNS_NAME.fullmatch(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63
    if doc["kind"] in POD_TEMPLATE_PATHS:
        template = _dig(doc, POD_TEMPLATE_PATHS[doc["kind"]])
        assert not _errors(pod_template_validator(), template)
        if doc["kind"] in ("Deployment", "StatefulSet"):  # the API server refuses a selector that misses its pods
            labels = template["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
        if doc["kind"] in ("Job", "CronJob"):
            assert template["spec"]["restartPolicy"] in ("OnFailure", "Never")
    if doc["kind"] == "CronJob":
        from croniter import croniter

        assert croniter.is_valid(doc["spec"]["schedule"])


def test_every_service_selects_pods_that_listen_on_its_target_ports():
    pods = [_dig(d, POD_TEMPLATE_PATHS[d["kind"]]) for _, d in PLAIN if d["kind"] in POD_TEMPLATE_PATHS]
    services = [d for _, d in PLAIN if d["kind"] == "Service"]
    assert services
    for service in services:
        selected = [p for p in pods if service["spec"]["selector"].items() <= p.get("metadata", {}).get("labels", {}).items()]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        listening = {port["containerPort"] for p in selected for c in p["spec"]["containers"] for port in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in listening, f"{service['metadata']['name']}: nothing listens on {port['targetPort']}"


def test_a_broken_pod_template_is_rejected():
    (deployment,) = [copy.deepcopy(d) for _, d in PLAIN if d["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    template["spec"]["containers"][0]["resources"]["limits"]["memory"] = ["2Gi"]
    template["spec"]["containres"] = template["spec"].pop("containers")
    errors = _errors(pod_template_validator(), template)
    assert any("containres" in e for e in errors) and any("containers" in e for e in errors), errors


# --- tests: ray_cluster.yaml ------------------------------------------------------------------


def test_ray_cluster_yaml_passes_ray_schema_json():
    raw = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    assert not _errors(jsonschema.Draft7Validator(ray_schema()), raw)


@pytest.mark.parametrize("breakage", ["misspelled top-level key", "string for max_workers", "node type without resources"])
def test_a_broken_ray_cluster_yaml_is_rejected(breakage):
    raw = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    if breakage == "misspelled top-level key":
        raw["head_node"] = raw.pop("head_node_type")
    elif breakage == "string for max_workers":
        raw["available_node_types"]["worker.gpu-train"]["max_workers"] = "four"
    else:
        del raw["available_node_types"]["worker.gpu-train"]["resources"]
    assert _errors(jsonschema.Draft7Validator(ray_schema()), raw), f"{breakage} was accepted"


# --- tests: the job the cluster files run -----------------------------------------------------


def _resolved(command_line: str):
    """The run config a `shg run` / `shg schedule` command line resolves to (nothing runs)."""
    from pipelines.config.run import resolve_run_config

    params = _parse_with_cli(command_line).params
    return params, resolve_run_config(params["profile"], params.get("config") or None, params["overrides"] or [])


def _ray_cluster_submit_line() -> str:
    """The `shg submit … -- RUN ARGS` line of ray_cluster.yaml's header, as `shg run RUN ARGS`."""
    (line,) = [l for l in (ROOT / "ray_cluster.yaml").read_text().splitlines() if "shg submit" in l]
    argv = shlex.split(line.split("shg submit", 1)[1])
    return "shg run " + shlex.join(argv[argv.index("--") + 1:])


@pytest.mark.parametrize("where", [w for w, _ in KUBERAY] + ["ray_cluster.yaml"])
def test_cluster_files_run_the_real_data_gpu_profile_on_the_shared_volume(where):
    if where == "ray_cluster.yaml":
        params, config = _resolved(_ray_cluster_submit_line())
        raw = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
        assert any(f"mkdir -p {SHARED_MOUNT}/runs" in c for c in raw["setup_commands"])
        gpu_slots = max(t["max_workers"] for n, t in raw["available_node_types"].items() if "gpu" in n)
    else:
        (doc,) = [d for w, d in KUBERAY if w == where]
        spec = _rayjob_spec(doc)
        params, config = _resolved(spec["entrypoint"])
        groups = spec["rayClusterSpec"]["workerGroupSpecs"]
        gpu_groups = [g for g in groups if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
        gpu_slots = sum(g["maxReplicas"] * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
                        for g in gpu_groups)  # fmt: skip
        for group in [spec["rayClusterSpec"]["headGroupSpec"], *groups]:  # every pod mounts the shared volume
            mounts = {m["mountPath"] for c in group["template"]["spec"]["containers"] for m in c.get("volumeMounts", [])}
            assert SHARED_MOUNT in mounts, group.get("groupName", "head")
    assert params["profile"] == "mpii" and config.uses_real_data
    for field in ("annotations", "images", "head_sizes"):
        assert getattr(config.prepare, field).startswith(SHARED_MOUNT + "/"), field
    assert params["workdir"].startswith(SHARED_MOUNT + "/")
    train = config.experiment().train
    assert train.use_gpu and 1 <= train.workers <= gpu_slots
