"""deploy/kubernetes/, checked offline: schemas of a pinned Kubernetes and what the
schemas cannot know — images that are Dockerfile stages, probes, GPU limits, drain grace, and
KEDA objects that point at real Deployments and at the API's scaling route. checkov, a program
of its own, runs in the e2e tier (tests/e2e/test_checkov.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import pytest
import yaml

from emp_queue.machine.mapping import load_mapping
from emp_queue.machine.plan import parse_workers
from tests.unit.test_containers import stages

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes" / "base"
KUBERNETES_VERSION = "1.31.0"
"""The Kubernetes release the manifests are validated against (a widely run one)."""
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication"}  # KEDA's; checked below


def documents() -> list[dict[str, Any]]:
    listed = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    return [doc for name in listed for doc in yaml.safe_load_all((BASE / name).read_text()) if doc]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in documents() if doc["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return {
        item["name"]: item.get("value", item.get("valueFrom"))
        for item in container(deployment)["env"]
    }


def test_the_kustomization_lists_every_manifest_of_the_folder() -> None:
    listed = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    on_disk = {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(listed) == sorted(on_disk)


@pytest.mark.parametrize(
    "document",
    [doc for doc in documents() if doc["kind"] not in CUSTOM_KINDS],
    ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}",
)
def test_each_resource_is_valid_for_the_pinned_kubernetes(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_every_image_is_a_stage_of_the_dockerfile() -> None:
    defined = set(stages())
    for deployment in of_kind("Deployment").values():
        repository, _, stage = container(deployment)["image"].partition(":")
        assert (repository, stage in defined) == ("emp-job-queue", True), container(deployment)


def test_the_api_is_probed_served_and_scaled() -> None:
    api = of_kind("Deployment")["emp-api"]
    probes = container(api)
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert probes["ports"][0]["containerPort"] == int(stages()["api"].env()["EMP_API_PORT"])
    service = of_kind("Service")["emp-api"]
    assert (
        service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    )
    assert (
        of_kind("HorizontalPodAutoscaler")["emp-api"]["spec"]["scaleTargetRef"]["name"] == "emp-api"
    )
    [rule] = of_kind("Ingress")["emp"]["spec"]["rules"]
    [path] = rule["http"]["paths"]
    assert (path["path"], path["backend"]["service"]["name"]) == ("/", "emp-api")  # and /monitor
    assert env_of(api)["EMP_REDIS_URL"] == {
        "secretKeyRef": {"name": "emp-broker", "key": "redis-url"}
    }


MACHINES = {
    name: doc for name, doc in of_kind("Deployment").items() if name.startswith("emp-machines-")
}


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_a_machine_pool_runs_on_a_gpu_and_drains_before_it_is_killed(name: str) -> None:
    deployment = MACHINES[name]
    pod = deployment["spec"]["template"]["spec"]
    env = env_of(deployment)
    assert container(deployment)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["terminationGracePeriodSeconds"] > float(env["EMP_DRAIN_GRACE_S"]) + 30
    assert parse_workers(env["WORKERS"], load_mapping())
    assert env["EMP_REDIS_URL"]["secretKeyRef"]["name"] == "emp-broker"
    assert env["EMP_ENV_KEY"]["secretKeyRef"]["optional"] is True
    [bundle] = [v for v in pod["volumes"] if v["name"] == "env-bundle"]
    [mount] = [m for m in container(deployment)["volumeMounts"] if m["name"] == "env-bundle"]
    assert f"{mount['mountPath']}/{bundle['secret']['items'][0]['path']}" == "/etc/emp/env.enc"


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_keda_scales_each_pool_on_the_brokers_own_signal(name: str) -> None:
    deployment = MACHINES[name]
    env = env_of(deployment)
    scaled = of_kind("ScaledObject")[name]
    assert scaled["spec"]["scaleTargetRef"]["name"] == name
    assert scaled["spec"]["minReplicaCount"] == 0
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "metrics-api"
    assert trigger["authenticationRef"]["name"] in of_kind("TriggerAuthentication")
    url = urlsplit(trigger["metadata"]["url"])
    assert url.hostname == "emp-api.emp.svc.cluster.local"
    assert url.path == "/api/scaling"
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert query["pool"] == env["EMP_WORKER_POOL"]
    assert query["service"] == env["WORKERS"].partition(":")[0]
    # One entry per (pool, service): the filtered answer's first entry is this pool's.
    assert trigger["metadata"]["valueLocation"] == "entries.0.machines_wanted"
