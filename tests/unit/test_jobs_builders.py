"""SlurmJob → pods, Service, Secret and status, built without a cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sunkbridge.jobs.builders import (
    LABEL_JOB,
    BridgeSettings,
    JobView,
    SharedVolume,
    build_pod,
    build_secret,
    build_service,
    job_status,
    node_unfit,
    pod_state,
)


def _job(uid: int = 1000, **spec: Any) -> JobView:
    return JobView.of({
        "metadata": {"name": "sunk-12", "uid": "u-1"},
        "spec": {"jobId": 12, "cluster": "sunk", "image": "local/app:1", "nodeList": "Node_[1-2]",
                 "nodes": [{"name": "Node_1", "kubernetesNode": "k8s-a", "cpus": 4, "gpus": 2, "memoryMB": 4000},
                           {"name": "Node_2", "kubernetesNode": "k8s-b", "cpus": 4, "gpus": 2, "memoryMB": 4000}],
                 "user": {"name": "alice", "uid": uid, "gid": 100, "supplementalGroups": [5]},
                 "workingDir": "/home/alice", "env": {"SLURM_JOB_ID": "12"}, "script": "#!/bin/sh\n",
                 "mounts": [{"source": "/data", "target": "/data", "readOnly": True}], **spec}})


SETTINGS = BridgeSettings(namespace="jobs", shared_volumes=(SharedVolume("home", "/home"),))


def test_pod_is_pinned_sized_and_runs_as_the_user() -> None:
    pod = build_pod(_job(), 1, SETTINGS)
    spec = pod["spec"]
    assert pod["metadata"]["name"] == "sunk-12-1"
    assert pod["metadata"]["ownerReferences"][0] == {"apiVersion": "sunkbridge.io/v1alpha1", "kind": "SlurmJob",
                                                     "name": "sunk-12", "uid": "u-1", "controller": True,
                                                     "blockOwnerDeletion": True}
    assert spec["nodeName"] == "k8s-b" and spec["hostname"] == "node-2" and spec["subdomain"] == "sunk-12"
    assert spec["securityContext"]["runAsUser"] == 1000 and spec["securityContext"]["runAsNonRoot"]
    assert spec["securityContext"]["supplementalGroups"] == [5]
    main = spec["containers"][0]
    assert main["resources"] == {"requests": {"cpu": "4", "memory": "4000Mi", "nvidia.com/gpu": "2"},
                                 "limits": {"memory": "4000Mi", "nvidia.com/gpu": "2"}}
    assert main["image"] == spec["initContainers"][0]["image"] == "local/app:1"
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert mounts["/home"]["name"] == "home" and mounts["/data"]["readOnly"] is True
    assert not any("token" in str(e) for e in main["env"])  # the secret is mounted, never in the environment
    assert "python3" in spec["initContainers"][0]["command"][-1]


def test_root_only_for_root() -> None:
    assert "runAsNonRoot" not in build_pod(_job(uid=0), 0, SETTINGS)["spec"]["securityContext"]


def test_service_and_secret() -> None:
    svc = build_service(_job(), SETTINGS)
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
    assert svc["spec"]["selector"] == {LABEL_JOB: "sunk-12"}
    secret = build_secret(_job(), SETTINGS, token="t")
    doc = json.loads(secret["stringData"]["job.json"])
    assert [n["host"] for n in doc["nodes"]] == ["node-1.sunk-12.jobs.svc.cluster.local",
                                                 "node-2.sunk-12.jobs.svc.cluster.local"]
    assert secret["stringData"]["token"] == "t"


def _pod(rank: int, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": f"p{rank}", "labels": {"sunkbridge.io/rank": str(rank)}},
            "spec": {"nodeName": f"n{rank}"}, "status": status}


def _main(**state: Any) -> list[dict[str, Any]]:
    return [{"name": "main", "state": state}]


def test_status_follows_rank0() -> None:
    running = [pod_state(_pod(r, phase="Running", containerStatuses=_main(running={}))) for r in (0, 1)]
    assert job_status(running, 2)["phase"] == "Running"
    done = [pod_state(_pod(0, phase="Failed", containerStatuses=_main(terminated={"exitCode": 3, "message": "3:0"}))),
            running[1]]
    st = job_status(done, 2)
    assert (st["phase"], st["exitCode"], st["signal"], st["exitStatus"]) == ("Failed", 3, 0, "3:0")
    killed = [pod_state(_pod(0, phase="Failed", containerStatuses=_main(terminated={"exitCode": 137,
                                                                                     "message": "0:9"})))]
    assert job_status(killed, 1)["exitStatus"] == "0:9"
    assert job_status([], 2, {"phase": "Succeeded"}) == {"phase": "Succeeded"}


def test_bad_images_fail_fast_with_the_reason() -> None:
    pulling = pod_state(_pod(1, phase="Pending", initContainerStatuses=[
        {"name": "sunk-runtime", "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "no image x"}}}]))
    st = job_status([pod_state(_pod(0, phase="Pending")), pulling], 2)
    assert st["phase"] == "Failed" and "ErrImageNeverPull" in st["message"] and "n1" in st["message"]
    nopy = pod_state(_pod(0, phase="Failed", initContainerStatuses=[
        {"name": "sunk-runtime", "state": {"terminated": {"exitCode": 1, "message": "image x has no python3"}}}]))
    assert "no python3" in job_status([nopy], 1)["message"]


def _node(allocatable: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "k8s-b"}, "status": {"allocatable": {"cpu": "1", "memory": "1Gi", **allocatable}}}


def test_a_node_fits_when_it_advertises_the_gpus() -> None:
    pod = build_pod(_job(), 1, SETTINGS)
    assert node_unfit(pod, _node({"nvidia.com/gpu": "8"})) is None
    assert node_unfit(pod, _node({"nvidia.com/gpu": "2"})) is None


def test_gpus_the_node_lacks_or_has_too_few_of_are_named() -> None:
    """The kubelet leaves these to the scheduler, which a pod bound by nodeName skips."""
    pod = build_pod(_job(), 1, SETTINGS)
    assert node_unfit(pod, _node({})) == (
        "Kubernetes node k8s-b has no nvidia.com/gpu, the job asks for 2 per node; check the GPU type and count "
        "of the Slurm node against the Kubernetes node's allocatable")
    assert "has 1 nvidia.com/gpu, the job asks for 2" in str(node_unfit(pod, _node({"nvidia.com/gpu": "1"})))


def test_cpu_and_memory_are_left_to_the_kubelet() -> None:
    """The kubelet refuses those itself (OutOfcpu, OutOfmemory), with its own reason on the pod."""
    pod = build_pod(_job(), 0, SETTINGS)
    pod["spec"]["containers"][0]["resources"]["limits"].pop("nvidia.com/gpu")
    assert node_unfit(pod, _node({})) is None


def test_a_node_that_does_not_exist_is_named() -> None:
    pod = build_pod(_job(), 0, SETTINGS)
    assert node_unfit(pod, None) == ("Kubernetes node k8s-a does not exist; the Slurm node behind it must be "
                                     "removed or renamed")


@pytest.mark.parametrize(("text", "volume"), [
    ("shared=/dev/shm/jobs", SharedVolume("shared", "/dev/shm/jobs")),
    ("home=/home:hostPath=/srv/home", SharedVolume("home", "/home", host_path="/srv/home")),
    ("data=/data:claim=datasets", SharedVolume("data", "/data", claim="datasets")),
])
def test_shared_volume_parses_its_command_line_form(text: str, volume: SharedVolume) -> None:
    assert SharedVolume.parse(text) == volume
    assert volume.argument() == text


@pytest.mark.parametrize("text", ["shared", "shared=relative", "x=/a:hostPath=rel", "x=/a:nfs=srv", "x=/a:claim="])
def test_shared_volume_refuses_other_forms_naming_the_format(text: str) -> None:
    with pytest.raises(ValueError, match="NAME=/MOUNT/PATH"):
        SharedVolume.parse(text)
