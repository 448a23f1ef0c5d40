"""The packaged manifests: kustomize builds, the Helm chart lints and renders, the CRDs validate input."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sunkbridge.jobs.identity import CONTROLLER_RULES, LAUNCHER_RULES, NODE_READER_RULES
from sunkbridge.lanes.k8s import KubeLane
from sunkbridge.operator.builders import JOBS_CLUSTER_ROLE, JOBS_NODES_CLUSTER_ROLE, LAUNCHER_CLUSTER_ROLE
from sunkbridge.operator.tools import helm, kubectl

pytestmark = pytest.mark.k8s

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
CHART = MANIFESTS / "helm" / "sunkbridge"


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _run(*argv: str | Path) -> str:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_kustomize_base_and_sandbox_overlay_build() -> None:
    kinds = sorted(d["kind"] for d in _docs(_run(kubectl(), "kustomize", MANIFESTS)))
    assert kinds == ["ClusterRole"] * 4 + ["ClusterRoleBinding", "CustomResourceDefinition",
                                           "CustomResourceDefinition", "Deployment", "Namespace", "ServiceAccount"]
    sandbox = _docs(_run(kubectl(), "kustomize", MANIFESTS / "overlays" / "sandbox"))
    deployment = next(d for d in sandbox if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Never"
    assert any(d["kind"] == "SlurmCluster" for d in sandbox)


def test_rbac_has_no_wildcards() -> None:
    roles = [yaml.safe_load((MANIFESTS / "base" / "rbac" / "role.yaml").read_text()),
             *_docs((MANIFESTS / "base" / "rbac" / "bridge_roles.yaml").read_text())]
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule


def test_bridge_roles_are_the_job_bridge_rules() -> None:
    roles = {d["metadata"]["name"]: d["rules"] for d in _docs((MANIFESTS / "base" / "rbac" / "bridge_roles.yaml")
                                                                .read_text())}
    assert roles == {LAUNCHER_CLUSTER_ROLE: list(LAUNCHER_RULES), JOBS_CLUSTER_ROLE: list(CONTROLLER_RULES),
                     JOBS_NODES_CLUSTER_ROLE: list(NODE_READER_RULES)}


def test_helm_chart_lints_and_matches_the_base() -> None:
    _run(helm(), "lint", "--strict", CHART)
    rendered = _docs(_run(helm(), "template", "rel", CHART, "--namespace", "ops", "--set", "cluster.enabled=true"))
    by_kind = {d["kind"]: d for d in rendered}
    roles = {d["metadata"]["name"]: d["rules"] for d in rendered if d["kind"] == "ClusterRole"}
    base_role = yaml.safe_load((MANIFESTS / "base" / "rbac" / "role.yaml").read_text())
    assert roles.pop("rel-operator") == base_role["rules"]
    assert roles == {d["metadata"]["name"]: d["rules"]
                     for d in _docs((MANIFESTS / "base" / "rbac" / "bridge_roles.yaml").read_text())}
    assert by_kind["Deployment"]["metadata"]["namespace"] == "ops"
    assert by_kind["SlurmCluster"]["spec"]["pools"][0]["name"] == "gpu"
    for crd in (MANIFESTS / "base" / "crds").iterdir():
        assert (CHART / "crds" / crd.name).read_text() == crd.read_text(), f"chart CRD {crd.name} differs"
    scoped = _docs(_run(helm(), "template", "rel", CHART, "--set", "watchAllNamespaces=false"))
    args = next(d for d in scoped if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=default" in args


@pytest.fixture(scope="module")
def crds(kube_lane: KubeLane, kube_client: client.ApiClient) -> client.CustomObjectsApi:
    _run(kubectl(), "--kubeconfig", kube_lane.kubeconfig, "apply", "--server-side", "-f", MANIFESTS / "base" / "crds")
    ext = client.ApiextensionsV1Api(kube_client)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        conds = ext.read_custom_resource_definition("slurmclusters.sunkbridge.io").status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conds):
            break
        time.sleep(0.3)
    return client.CustomObjectsApi(kube_client)


def _cluster(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"pools": [{"name": "h100", "nodeSelector": {"sunkbridge.io/pool": "h100"}}]}
    body.update(spec)
    return {"apiVersion": "sunkbridge.io/v1alpha1", "kind": "SlurmCluster", "metadata": {"name": name},
            "spec": body}


def _reject(api: client.CustomObjectsApi, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as err:
        api.create_namespaced_custom_object("sunkbridge.io", "v1alpha1", "default", "slurmclusters", body)
    assert err.value.status == 422
    return str(err.value.body)


def test_valid_cluster_gets_defaults(crds: client.CustomObjectsApi) -> None:
    made = crds.create_namespaced_custom_object("sunkbridge.io", "v1alpha1", "default", "slurmclusters",
                                                _cluster("valid"))
    try:
        pool = made["spec"]["pools"][0]
        assert pool["mode"] == "slurmd" and pool["gpuResource"] == "nvidia.com/gpu"
        assert made["spec"]["slurmVersion"] == "22.05"
    finally:
        crds.delete_namespaced_custom_object("sunkbridge.io", "v1alpha1", "default", "slurmclusters", "valid")


@pytest.mark.parametrize(("spec", "field"), [
    ({"pools": [{"name": "h100", "nodeSelector": {"a": "b"}, "mode": "batch"}]}, "spec.pools[0].mode"),
    ({"pools": [{"name": "H100", "nodeSelector": {"a": "b"}}]}, "spec.pools[0].name"),
    ({"pools": [{"name": "h100", "nodeSelector": {}}]}, "spec.pools[0].nodeSelector"),
    ({"pools": []}, "spec.pools"),
    ({"pools": [{"name": "a", "nodeSelector": {"a": "b"}}, {"name": "a", "nodeSelector": {"a": "c"}}]},
     "spec.pools[1]: Duplicate value"),
    ({"login": {"replicas": -1}}, "spec.login.replicas"),
    ({"accounting": {"enabled": True}}, "spec.accounting.database"),
    ({"imagePullPolicy": "Sometimes"}, "spec.imagePullPolicy"),
])
def test_invalid_cluster_is_rejected_naming_the_field(crds: client.CustomObjectsApi, spec: dict[str, Any],
                                                       field: str) -> None:
    assert field in _reject(crds, _cluster("bad", **spec))


def test_slurmjob_requires_its_allocation(crds: client.CustomObjectsApi) -> None:
    body = {"apiVersion": "sunkbridge.io/v1alpha1", "kind": "SlurmJob", "metadata": {"name": "j1"},
            "spec": {"jobId": 7, "cluster": "c", "nodes": [], "image": "x", "user": {"uid": 1000, "gid": 1000}}}
    with pytest.raises(ApiException) as err:
        crds.create_namespaced_custom_object("sunkbridge.io", "v1alpha1", "default", "slurmjobs", body)
    assert "spec.nodes" in str(err.value.body)
