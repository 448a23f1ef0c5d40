"""Pure builders of a SlurmJob's Kubernetes objects and of its status (no API calls here)."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sunkbridge.jobs.launcher import GROUP, VERSION, sanitise_name
from sunkbridge.runtime import runtime_files

LABEL_JOB = f"{GROUP}/slurmjob"
LABEL_RANK = f"{GROUP}/rank"
LABEL_JOB_ID = f"{GROUP}/job-id"
AGENT_PORT = 7777
RUNTIME_MOUNT = "/opt/sunk"
JOB_MOUNT = "/var/run/sunk"
# Waiting reasons that will not resolve by themselves: the job fails fast with the reason.
FATAL_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
                           "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


@dataclass(frozen=True)
class SharedVolume:
    """A cluster volume mounted at the same path in pods as on the login nodes."""

    name: str
    path: str
    host_path: str | None = None
    claim: str | None = None
    read_only: bool = False

    FORMAT = "NAME=/MOUNT/PATH[:hostPath=/HOST/PATH | :claim=CLAIM]"

    @classmethod
    def parse(cls, text: str) -> SharedVolume:
        """`NAME=/PATH` (the host folder at the same path), `...:hostPath=/SRC` or `...:claim=CLAIM`."""
        name, sep, rest = text.partition("=")
        path, _, source = rest.partition(":")
        kind, _, origin = source.partition("=")
        valid_source = not source or (bool(origin) and (kind == "claim" or (kind == "hostPath"
                                                                             and origin.startswith("/"))))
        if not sep or not name or not path.startswith("/") or not valid_source:
            raise ValueError(f"{text!r} is not {cls.FORMAT}, e.g. shared=/dev/shm/jobs")
        return cls(name, path, host_path=origin if kind == "hostPath" else None,
                   claim=origin if kind == "claim" else None)

    def argument(self) -> str:
        """The command-line form `parse` reads back."""
        if self.claim:
            return f"{self.name}={self.path}:claim={self.claim}"
        return f"{self.name}={self.path}" + (f":hostPath={self.host_path}" if self.host_path else "")

    def volume(self) -> dict[str, Any]:
        if self.claim:
            return {"name": self.name, "persistentVolumeClaim": {"claimName": self.claim}}
        return {"name": self.name, "hostPath": {"path": self.host_path or self.path, "type": "Directory"}}


@dataclass(frozen=True)
class BridgeSettings:
    """How the controller turns SlurmJobs into pods on this cluster."""

    namespace: str = "default"
    image_pull_policy: str = "IfNotPresent"
    shared_volumes: tuple[SharedVolume, ...] = ()
    termination_grace_seconds: int = 2
    gpu_resource: str = "nvidia.com/gpu"
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobView:
    """The fields of a SlurmJob the builders read."""

    name: str
    uid: str
    job_id: int
    nodes: tuple[Mapping[str, Any], ...]
    image: str
    user: Mapping[str, Any]
    working_dir: str
    env: Mapping[str, str]
    script: str
    args: tuple[str, ...]
    mounts: tuple[Mapping[str, Any], ...]

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> JobView:
        spec, meta = obj["spec"], obj["metadata"]
        return cls(name=meta["name"], uid=meta.get("uid", ""), job_id=int(spec["jobId"]),
                   nodes=tuple(spec["nodes"]), image=spec["image"], user=spec["user"],
                   working_dir=spec.get("workingDir") or "/", env=spec.get("env") or {},
                   script=spec.get("script") or "", args=tuple(spec.get("args") or ()),
                   mounts=tuple(spec.get("mounts") or ()))

    @property
    def service(self) -> str:
        return self.name

    def pod_name(self, rank: int) -> str:
        return f"{self.name}-{rank}"

    def secret_name(self) -> str:
        return f"{self.name}-auth"

    def host(self, rank: int, namespace: str) -> str:
        return f"{hostname(self.nodes[rank]['name'])}.{self.service}.{namespace}.svc.cluster.local"


def hostname(node: str) -> str:
    """The pod hostname for Slurm node `node` (its name, when it is a DNS label)."""
    return sanitise_name(node)


def owner_reference(job: JobView) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SlurmJob", "name": job.name, "uid": job.uid,
            "controller": True, "blockOwnerDeletion": True}


def _meta(job: JobView, name: str, settings: BridgeSettings, **labels: str) -> dict[str, Any]:
    return {"name": name, "namespace": settings.namespace,
            "labels": {LABEL_JOB: job.name, LABEL_JOB_ID: str(job.job_id), **settings.extra_labels, **labels},
            "ownerReferences": [owner_reference(job)]}


def runtime_configmap_name() -> str:
    """The runtime ConfigMap's name changes with its content, so pods never mix versions."""
    digest = hashlib.sha256(json.dumps(runtime_files(), sort_keys=True).encode()).hexdigest()[:10]
    return f"sunk-runtime-{digest}"


def build_runtime_configmap(settings: BridgeSettings) -> dict[str, Any]:
    """The ConfigMap carrying the in-pod agent and shims (shared by every job of the namespace)."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": runtime_configmap_name(), "namespace": settings.namespace,
                         "labels": {f"{GROUP}/component": "runtime"}},
            "data": runtime_files()}


def job_document(job: JobView, settings: BridgeSettings) -> dict[str, Any]:
    """``job.json`` for the agents: ranked nodes with their pod host names, environment, script."""
    nodes = [{"name": n["name"], "host": job.host(r, settings.namespace), "cpus": int(n.get("cpus") or 0),
              "gpus": int(n.get("gpus") or 0)} for r, n in enumerate(job.nodes)]
    return {"jobId": job.job_id, "nodes": nodes, "env": dict(job.env), "script": job.script,
            "args": list(job.args), "workingDir": job.working_dir}


def build_secret(job: JobView, settings: BridgeSettings, token: str | None = None) -> dict[str, Any]:
    """The per-job Secret: the agents' shared token and the job document (script included)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(job, job.secret_name(), settings),
            "stringData": {"token": token or secrets.token_hex(32),
                           "job.json": json.dumps(job_document(job, settings))}}


def build_service(job: JobView, settings: BridgeSettings) -> dict[str, Any]:
    """The headless Service that gives every pod of the group a stable DNS name."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(job, job.service, settings),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {LABEL_JOB: job.name},
                     "ports": [{"name": "agent", "port": AGENT_PORT, "targetPort": AGENT_PORT}]}}


def _quantity_mb(mb: int) -> str:
    return f"{mb}Mi"


_INIT = (
    'cp /sunk-runtime-src/agent.py /sunk-runtime-src/srun /sunk-runtime-src/scontrol {dst}/ && '
    'mkdir -p {dst}/bin {dst}/state && mv {dst}/srun {dst}/scontrol {dst}/bin/ && chmod 0755 {dst}/bin/* && '
    'if ! command -v python3 >/dev/null 2>&1; then '
    'echo "image {image} has no python3, which the pod-group runtime needs; '
    'add python3 (e.g. apt-get install python3-minimal)" | tee /dev/termination-log >&2; exit 1; fi'
)


def build_pod(job: JobView, rank: int, settings: BridgeSettings) -> dict[str, Any]:
    """Rank `rank`'s pod: pinned to its node, the job's image, resources and user, runtime and volumes."""
    node = job.nodes[rank]
    uid, gid = int(job.user["uid"]), int(job.user["gid"])
    cpus, gpus = int(node.get("cpus") or 0), int(node.get("gpus") or 0)
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if cpus:
        requests["cpu"] = str(cpus)
    if node.get("memoryMB"):
        requests["memory"] = limits["memory"] = _quantity_mb(int(node["memoryMB"]))
    if gpus:
        requests[settings.gpu_resource] = limits[settings.gpu_resource] = str(gpus)
    security: dict[str, Any] = {"runAsUser": uid, "runAsGroup": gid, "fsGroup": gid}
    if uid != 0:
        security["runAsNonRoot"] = True
    if job.user.get("supplementalGroups"):
        security["supplementalGroups"] = [int(g) for g in job.user["supplementalGroups"]]
    volumes: list[dict[str, Any]] = [
        {"name": "sunk-runtime", "emptyDir": {}},
        {"name": "sunk-runtime-src", "configMap": {"name": runtime_configmap_name()}},
        {"name": "sunk-job", "secret": {"secretName": job.secret_name(), "defaultMode": 0o440}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "sunk-runtime", "mountPath": RUNTIME_MOUNT},
        {"name": "sunk-job", "mountPath": JOB_MOUNT, "readOnly": True},
    ]
    for vol in settings.shared_volumes:
        volumes.append(vol.volume())
        mounts.append({"name": vol.name, "mountPath": vol.path, "readOnly": vol.read_only})
    for i, m in enumerate(job.mounts):
        name = f"mount-{i}"
        volumes.append({"name": name, "hostPath": {"path": m["source"]}})
        mounts.append({"name": name, "mountPath": m["target"], "readOnly": bool(m.get("readOnly"))})
    env = [{"name": "SUNK_RANK", "value": str(rank)}, {"name": "SUNK_JOB_DIR", "value": JOB_MOUNT},
           {"name": "SUNK_RUNTIME_DIR", "value": RUNTIME_MOUNT}, {"name": "SUNK_AGENT_PORT", "value": str(AGENT_PORT)},
           {"name": "PYTHONUNBUFFERED", "value": "1"}]
    pull = settings.image_pull_policy
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {**_meta(job, job.pod_name(rank), settings, **{LABEL_RANK: str(rank)}),
                     "annotations": {**settings.pod_annotations, f"{GROUP}/slurm-node": str(node["name"])}},
        "spec": {
            "nodeName": node.get("kubernetesNode") or node["name"],
            "hostname": hostname(node["name"]), "subdomain": job.service,
            "restartPolicy": "Never", "enableServiceLinks": False, "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": settings.termination_grace_seconds,
            "securityContext": security,
            "tolerations": [{"operator": "Exists"}],
            "volumes": volumes,
            "initContainers": [{
                "name": "sunk-runtime", "image": job.image, "imagePullPolicy": pull,
                "command": ["/bin/sh", "-c", _INIT.format(dst=RUNTIME_MOUNT, image=job.image.replace('"', ""))],
                "volumeMounts": [{"name": "sunk-runtime", "mountPath": RUNTIME_MOUNT},
                                 {"name": "sunk-runtime-src", "mountPath": "/sunk-runtime-src"}],
                "terminationMessagePolicy": "File",
            }],
            "containers": [{
                "name": "main", "image": job.image, "imagePullPolicy": pull,
                "command": ["python3", f"{RUNTIME_MOUNT}/agent.py", "run", "--rank", str(rank)],
                "workingDir": job.working_dir, "env": env, "volumeMounts": mounts,
                "resources": {"requests": requests, "limits": limits},
                "ports": [{"name": "agent", "containerPort": AGENT_PORT}],
            }],
        },
    }


_KUBELET_CHECKED = frozenset({"cpu", "memory", "ephemeral-storage", "pods"})


def _amount(quantity: str) -> float:
    """A Kubernetes quantity as a number, for the plain counts extended resources use (``8``, ``1k``)."""
    scale = {"k": 1e3, "M": 1e6, "G": 1e9, "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "m": 1e-3}
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(quantity).strip())
    if not match:
        raise ValueError(f"not a quantity: {quantity!r}")
    return float(match.group(1)) * scale.get(match.group(2), 1.0)


def node_unfit(pod: Mapping[str, Any], node: Mapping[str, Any] | None) -> str | None:
    """Why Kubernetes node `node` cannot run `pod`, for what the kubelet would not refuse itself, or None.

    A pod bound by ``nodeName`` skips the scheduler. The kubelet refuses too little CPU or memory, but it
    silently drops a request for an extended resource (a GPU) its node does not advertise, so such a job
    would run without its GPUs; and a pod bound to a node that does not exist waits forever.
    """
    target = pod["spec"]["nodeName"]
    if node is None:
        return f"Kubernetes node {target} does not exist; the Slurm node behind it must be removed or renamed"
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    for container in [*pod["spec"].get("initContainers", ()), *pod["spec"]["containers"]]:
        for name, wanted in ((container.get("resources") or {}).get("limits") or {}).items():
            if name in _KUBELET_CHECKED or name.startswith("hugepages-"):
                continue
            have = _amount(allocatable.get(name, "0"))
            if _amount(wanted) > have:
                return (f"Kubernetes node {target} has {allocatable.get(name, 'no')} {name}, the job asks for "
                        f"{wanted} per node; check the GPU type and count of the Slurm node against the "
                        f"Kubernetes node's allocatable")
    return None


# ---------------------------------------------------------------------------------------------------------
# Status


@dataclass(frozen=True)
class PodState:
    """What the status needs from one pod."""

    name: str
    rank: int
    node: str
    phase: str
    started: bool = False
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    message: str | None = None
    fatal: bool = False


def _parse_exit(message: str | None) -> tuple[int, int] | None:
    m = re.fullmatch(r"\s*(\d+):(\d+)\s*", message or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def pod_state(pod: Mapping[str, Any]) -> PodState:
    """Read one pod (as a dict from the API) into a PodState."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    rank = int(meta.get("labels", {}).get(LABEL_RANK, "0"))
    phase = status.get("phase") or "Pending"
    for cs in status.get("initContainerStatuses") or []:
        state = cs.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term and term.get("exitCode"):
            return PodState(meta["name"], rank, spec.get("nodeName", ""), "Failed",
                            reason="RuntimeSetupFailed", message=(term.get("message") or "").strip() or
                            f"init container exited {term.get('exitCode')}", fatal=True)
        if wait and wait.get("reason") in FATAL_WAITING:
            return PodState(meta["name"], rank, spec.get("nodeName", ""), "Failed", reason=wait["reason"],
                            message=wait.get("message") or wait["reason"], fatal=True)
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") != "main":
            continue
        state = cs.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term:
            parsed = _parse_exit(term.get("message"))
            code, sig = parsed if parsed else (int(term.get("exitCode") or 0), 0)
            return PodState(meta["name"], rank, spec.get("nodeName", ""), phase, started=True, exit_code=code,
                            signal=sig, reason=term.get("reason"), message=None if parsed else term.get("message"))
        if wait and wait.get("reason") in FATAL_WAITING:
            return PodState(meta["name"], rank, spec.get("nodeName", ""), "Failed", reason=wait["reason"],
                            message=wait.get("message") or wait["reason"], fatal=True)
        if state.get("running") is not None:
            return PodState(meta["name"], rank, spec.get("nodeName", ""), phase, started=True)
    if phase == "Failed":
        return PodState(meta["name"], rank, spec.get("nodeName", ""), phase, reason=status.get("reason"),
                        message=status.get("message") or status.get("reason"), fatal=True)
    return PodState(meta["name"], rank, spec.get("nodeName", ""), phase)


def job_status(pods: Sequence[PodState], expected: int, previous: Mapping[str, Any] | None = None,
               now: str | None = None) -> dict[str, Any]:
    """The SlurmJob's status from its pods: rank 0's exit decides; a fatal pod fails the job fast."""
    prev = dict(previous or {})
    if prev.get("phase") in ("Succeeded", "Failed", "Cancelled"):
        return prev
    by_rank = {p.rank: p for p in pods}
    status: dict[str, Any] = {"pods": [
        {k: v for k, v in {"name": p.name, "node": p.node, "rank": p.rank, "phase": p.phase,
                           "started": p.started, "exitCode": p.exit_code, "reason": p.reason}.items()
         if v is not None} for p in sorted(pods, key=lambda p: p.rank)]}
    fatal = next((p for p in sorted(pods, key=lambda p: p.rank) if p.fatal), None)
    rank0 = by_rank.get(0)
    if rank0 is not None and rank0.exit_code is not None:
        code, sig = rank0.exit_code, rank0.signal or 0
        status.update(phase="Succeeded" if code == 0 and sig == 0 else "Failed", exitCode=code, signal=sig,
                      exitStatus=f"{code}:{sig}", completionTime=now)
        if code or sig:
            status["message"] = f"the batch script ended with {code}:{sig}"
    elif fatal is not None:
        status.update(phase="Failed", exitCode=1, signal=0, exitStatus="1:0", completionTime=now,
                      message=f"pod {fatal.name} on {fatal.node}: {fatal.reason}: {fatal.message}",
                      reason=fatal.reason)
    elif len(pods) == expected and all(p.started for p in pods):
        status.update(phase="Running", startTime=prev.get("startTime") or now)
    else:
        status["phase"] = "Pending"
    return {k: v for k, v in status.items() if v is not None}
