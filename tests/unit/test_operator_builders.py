"""The operator's pure pieces: spec parsing, node → Slurm node mapping, manifests."""

from __future__ import annotations

from typing import Any

import pytest

from sunkbridge.operator import builders as b
from sunkbridge.operator.spec import SpecError, parse_cluster
from sunkbridge.slurm.conf import render_all


def _body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"pools": [{"name": "h100", "default": True, "nodeSelector": {"pool": "h100"},
                                       "featureLabels": ["nvidia.com/gpu.product"], "topologyLabel": "rack"},
                                      {"name": "pg", "mode": "podgroup", "nodeSelector": {"pool": "pg"}}]}
    base.update(spec)
    return {"metadata": {"name": "c1", "namespace": "hpc", "uid": "u-1"}, "spec": base}


def _node(name: str, pool: str, gpus: str | None = "8", **labels: str) -> dict[str, Any]:
    alloc = {"cpu": "96", "memory": "1024Gi"}
    if gpus:
        alloc["nvidia.com/gpu"] = gpus
    return {"metadata": {"name": name, "labels": {"pool": pool, "rack": "r1",
                                                  "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", **labels}},
            "status": {"allocatable": alloc}}


def test_spec_defaults_and_pools() -> None:
    spec = parse_cluster(_body())
    assert spec.cluster_name == "c1" and spec.namespace == "hpc"
    assert [p.mode for p in spec.pools] == ["slurmd", "podgroup"]
    assert spec.default_pool == "h100"
    assert spec.images["slurmctld"] == "local/sunk-slurmctld:22.05"
    assert spec.munge_secret_name == "c1-munge"


@pytest.mark.parametrize(("spec", "field"), [
    ({"slurmConf": {"overrides": {"NodeName": "x"}}}, "spec.slurmConf.overrides.NodeName"),
    ({"slurmConf": {"overrides": {"Max Jobs": "1"}}}, "spec.slurmConf.overrides.Max Jobs"),
    ({"pools": [{"name": "a", "nodeSelector": {"a": "1"}}, {"name": "b", "partition": "a",
                                                         "nodeSelector": {"a": "2"}}]}, "spec.pools[1].partition"),
    ({"pools": [{"name": "a", "nodeSelector": {}}]}, "spec.pools[0]"),
    ({"accounting": {"enabled": True}}, "spec.accounting.database"),
    ({"pools": [{"name": "a", "nodeSelector": {"a": "1"}, "slurmdResources": {"request": {"cpu": "1"}}}]},
     "spec.pools[0].slurmdResources"),
])
def test_bad_specs_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_cluster(_body(**spec))
    assert str(err.value).startswith(field)


def test_node_becomes_slurm_node_from_allocatable_and_labels() -> None:
    spec = parse_cluster(_body())
    m = b.member_of(spec, "h100", _node("gpu-node.example", "h100"))
    n = m.node
    assert (m.slurm_name, n.partition, n.cpus, n.memory_mb, n.gpus, n.gpu_type) == (
        "gpu-node-example", "h100", 96, 1_048_576, 8, "h100")
    assert n.features == ("NVIDIA-H100-80GB-HBM3",) and n.switch == "r1" and n.addr is None
    assert m.k8s_node == "gpu-node.example" and m.pool == "h100"
    cpu = b.member_of(spec, "pg", _node("c1", "pg", gpus=None))
    assert cpu.node.gpus == 0 and cpu.node.gpu_type is None and cpu.node.partition == "pg"


@pytest.mark.parametrize(("product", "expected"), [
    ("NVIDIA-H100-80GB-HBM3", "h100"), ("NVIDIA-A100-SXM4-80GB", "a100"), ("Tesla-T4", "t4"),
    ("NVIDIA-L40S", "l40s"), (None, None)])
def test_gpu_type_from_product_label(product: str | None, expected: str | None) -> None:
    assert b.gpu_type(product) == expected


def test_slurmd_pod_is_pinned_named_and_wired() -> None:
    spec = parse_cluster(_body())
    pod = b.slurmd_pod(spec, "u-1", b.member_of(spec, "h100", _node("n-1", "h100")))
    assert pod["metadata"]["name"] == "c1-slurmd-n-1"
    assert pod["spec"]["nodeName"] == "n-1" and pod["spec"]["hostname"] == "n-1"
    assert pod["spec"]["subdomain"] == "c1-slurmd"
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["SUNK_CONF_SERVER"] == "c1-slurmctld-0.c1-slurmctld.hpc.svc.cluster.local:6817"
    assert env["SUNK_GPUS"] == "8"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_controller_statefulset_persistence_and_conf_seed() -> None:
    sts = b.controller_statefulset(parse_cluster(_body()), "u-1")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert sts["spec"]["template"]["spec"]["initContainers"][0]["name"] == "conf"
    ephemeral = b.controller_statefulset(parse_cluster(_body(controller={"persistence": {"enabled": False}})), "u")
    assert "volumeClaimTemplates" not in ephemeral["spec"]
    assert {"name": "state", "emptyDir": {}} in ephemeral["spec"]["template"]["spec"]["volumes"]


def test_conf_inputs_render_pools_as_partitions() -> None:
    spec = parse_cluster(_body(podgroup={"launcherPath": "/opt/l"}))
    members = {m.slurm_name: (m, "10.0.0.1") for m in [b.member_of(spec, "h100", _node("n-1", "h100"))]}
    files = render_all(b.conf_inputs(spec, members))
    assert "SlurmctldHost=c1-slurmctld-0(c1-slurmctld-0.c1-slurmctld.hpc.svc.cluster.local)" in files["slurm.conf"]
    assert "PartitionName=h100 Nodes=n-1 Default=YES State=UP" in files["slurm.conf"]
    assert ('local launcher = "/opt/l --token-dir /var/run/secrets/sunkbridge/launcher --server '
            'https://kubernetes.default.svc --namespace hpc --cluster c1 --"') in files["job_submit.lua"]


def test_launcher_command_names_each_podgroup_pools_image() -> None:
    body = _body()
    body["spec"]["pools"][1]["image"] = "local/job:1"
    body["spec"]["pools"].append({"name": "pg2", "mode": "podgroup", "nodeSelector": {"pool": "pg2"},
                                  "image": "registry.example/ml@sha256:0a1b"})
    command = b.launcher_command(parse_cluster(body))
    assert command.endswith(" --partition-image pg=local/job:1"
                            " --partition-image pg2=registry.example/ml@sha256:0a1b --")


def test_podgroup_slurmd_pods_hold_the_launcher_token_for_root_only() -> None:
    spec = parse_cluster(_body())
    podgroup = b.slurmd_pod(spec, "u", b.member_of(spec, "pg", _node("pg-1", "pg")))["spec"]
    assert podgroup["serviceAccountName"] == "c1-launcher"
    assert podgroup["automountServiceAccountToken"] is False
    token = next(v for v in podgroup["volumes"] if v["name"] == "launcher-token")["projected"]
    assert token["defaultMode"] == 0o400
    assert [next(iter(source)) for source in token["sources"]] == ["serviceAccountToken", "configMap"]
    mounts = podgroup["containers"][0]["volumeMounts"]
    assert {"name": "launcher-token", "mountPath": b.LAUNCHER_TOKEN_DIR, "readOnly": True} in mounts
    plain = b.slurmd_pod(spec, "u", b.member_of(spec, "h100", _node("n-1", "h100")))["spec"]
    assert plain["automountServiceAccountToken"] is False and "serviceAccountName" not in plain
    assert all(v["name"] != "launcher-token" for v in plain["volumes"])


def test_bridge_objects_bind_the_packaged_roles_in_the_cluster_namespace() -> None:
    body = _body(sharedVolumes=[{"name": "home", "mountPath": "/home", "source": {"hostPath": {"path": "/srv/home"}}},
                                {"name": "data", "mountPath": "/data",
                                 "source": {"persistentVolumeClaim": {"claimName": "datasets"}}}])
    spec = parse_cluster(body)
    identities = b.bridge_identities(spec, "u")
    bindings = {m["metadata"]["name"]: m for m in identities if m["kind"] == "RoleBinding"}
    assert {n: m["roleRef"]["name"] for n, m in bindings.items()} == {
        "c1-launcher": b.LAUNCHER_CLUSTER_ROLE, "c1-jobs": b.JOBS_CLUSTER_ROLE}
    assert all(m["metadata"]["namespace"] == "hpc" for m in identities)
    nodes = b.jobs_nodes_binding(spec, "1f2e")
    assert nodes["metadata"]["name"] == "sunkbridge-jobs-nodes-1f2e" and "namespace" not in nodes["metadata"]
    assert nodes["subjects"] == [{"kind": "ServiceAccount", "name": "c1-jobs", "namespace": "hpc"}]
    deployment = b.jobs_controller_deployment(spec, "u")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "c1-jobs" and pod["securityContext"]["runAsNonRoot"] is True
    args = pod["containers"][0]["args"]
    assert args[:4] == ["bridge", "controller", "--in-cluster", "--namespace"]
    assert "shared-home=/home:hostPath=/srv/home" in args and "shared-data=/data:claim=datasets" in args
    assert pod["containers"][0]["image"] == "local/sunk-controller:22.05"
    assert "env" not in pod["containers"][0]  # the kubernetes Service, as every pod finds it


def test_another_api_address_reaches_launcher_and_controller() -> None:
    spec = parse_cluster(_body(podgroup={"apiServer": "https://10.250.2.253:6443"}))
    assert " --server https://10.250.2.253:6443 " in b.launcher_command(spec)
    env = b.jobs_controller_deployment(spec, "u")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "KUBERNETES_SERVICE_HOST", "value": "10.250.2.253"},
                   {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"}]


@pytest.mark.parametrize(("spec", "field"), [
    ({"sharedVolumes": [{"name": "n", "mountPath": "/n", "source": {"nfs": {"server": "s", "path": "/"}}}]},
     "spec.sharedVolumes[0].source"),
    ({"pools": [{"name": "pg", "mode": "podgroup", "nodeSelector": {"a": "1"}, "image": "img; rm -rf /"}]},
     "spec.pools[0].image"),
    ({"podgroup": {"launcherPath": "/opt/my launcher"}}, "spec.podgroup.launcherPath"),
])
def test_podgroup_clusters_refuse_what_job_pods_cannot_mount(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_cluster(_body(**spec))
    assert str(err.value).startswith(field)


def test_busy_pdb_selects_busy_slurmd_pods() -> None:
    pdb = b.busy_pdb(parse_cluster(_body()), "u", busy=3)
    assert pdb["spec"]["minAvailable"] == 3
    assert pdb["spec"]["selector"]["matchLabels"][b.BUSY_LABEL] == "true"


def test_accounting_adds_slurmdbd() -> None:
    spec = parse_cluster(_body(accounting={"enabled": True, "database": {
        "host": "mariadb", "passwordSecretRef": {"name": "db"}}}))
    files = render_all(b.conf_inputs(spec, {}))
    assert "AccountingStorageHost=c1-slurmdbd" in files["slurm.conf"]
    assert "StorageHost=mariadb" in b.slurmdbd_conf(spec)
    dep = b.slurmdbd_deployment(spec, "u")
    assert dep["spec"]["template"]["spec"]["volumes"][-1]["secret"]["secretName"] == "db"


def test_slurmd_pod_hash_follows_image_and_resources_only() -> None:
    node = _node("n-1", "h100")
    spec = parse_cluster(_body())
    pod = b.slurmd_pod(spec, "u-1", b.member_of(spec, "h100", node))
    same = b.slurmd_pod(parse_cluster(_body()), "u-2", b.member_of(spec, "h100", node))
    assert pod["metadata"]["annotations"][b.POD_HASH_ANNOTATION] == b.pod_hash(pod["spec"])
    assert b.pod_hash(same["spec"]) == b.pod_hash(pod["spec"]), "owner uid is not part of the pod spec"
    pools = _body()["spec"]["pools"]
    pools[0]["slurmdResources"] = {"requests": {"cpu": "50m"}, "limits": {"memory": "1Gi"}}
    sized = parse_cluster(_body(pools=pools))
    sized_pod = b.slurmd_pod(sized, "u-1", b.member_of(sized, "h100", node))
    assert sized_pod["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "50m"}, "limits": {"memory": "1Gi"}}
    assert b.pod_hash(sized_pod["spec"]) != b.pod_hash(pod["spec"])
    retagged = parse_cluster(_body(images={"slurmd": "local/sunk-slurmd:22.05-b"}))
    assert b.pod_hash(b.slurmd_pod(retagged, "u-1", b.member_of(retagged, "h100", node))["spec"]) != \
        b.pod_hash(pod["spec"])


def test_restapi_and_slurmdbd_services_are_headless() -> None:
    spec = parse_cluster(_body(restapi={"enabled": True}))
    svc = b.service(spec, "u", "restapi", b.RESTD_PORT)
    assert svc["metadata"]["name"] == "c1-restapi" and svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"][b.COMPONENT_LABEL] == "restapi"


def test_podgroup_nodes_leave_the_slurmd_agents_requests_out_of_what_jobs_get() -> None:
    body = _body()
    body["spec"]["pools"][1]["slurmdResources"] = {"requests": {"cpu": "500m", "memory": "512Mi"}}
    spec = parse_cluster(body)
    agent = b.member_of(spec, "pg", _node("pg-1", "pg")).node
    assert (agent.cpus, agent.memory_mb) == (95, 1024 * 1024 - 512)
    full = b.member_of(parse_cluster(_body()), "pg", _node("pg-1", "pg")).node
    assert (full.cpus, full.memory_mb) == (96, 1024 * 1024)
