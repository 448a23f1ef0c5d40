"""One level-triggered pass over a SlurmCluster: Kubernetes objects, configuration rollout, drains, status.

`reconcile(kube, body)` reads the world (the object, the pools' nodes, the cluster's pods, Slurm's view
through the slurmctld pod), moves it one step towards the spec, and returns the status to write plus how
soon to look again. Running it twice in a row is harmless.

Rollout of configuration changes (Slurm 22.05):
  * The ConfigMap always holds the rendered files; slurmctld's /etc/slurm is a copy made at pod start.
  * A new configuration is first parsed by Slurm's own parser inside the slurmctld pod; if Slurm refuses it,
    nothing is rolled out and ConfigRendered turns False with Slurm's message.
  * Otherwise the files are replaced in place; partition and option changes apply with `scontrol
    reconfigure`. Node set, node hardware, gres, topology and plugin changes restart slurmctld
    (`scontrol shutdown slurmctld`: it saves state and the image's entrypoint starts it again in the same
    container, so queued and running jobs survive and the kubelet's restart back-off never applies), then
    `scontrol reconfigure` hands the configless slurmd pods the new files.

Node removal: a slurmd pod whose Kubernetes node left the pool is drained in Slurm (reason `sunk: ...`),
deleted only once its node runs no job, and its node leaves slurm.conf after that.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import gzip
import io
import logging
import os
import shlex
import subprocess
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from sunkbridge.cluster import REASON_PREFIX
from sunkbridge.jobs.launcher import sanitise_name
from sunkbridge.operator import builders as b
from sunkbridge.operator.kube import Kube
from sunkbridge.operator.spec import GROUP, JOB_PLURAL, PLURAL, VERSION, ClusterSpec, SpecError, parse_cluster
from sunkbridge.operator.validate import check_command_result, parse_check
from sunkbridge.slurm.conf import conf_hash, needs_restart, render_all

log = logging.getLogger("sunkbridge.operator")

IMAGE_ERRORS = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
CONFIG_ERRORS = {"CreateContainerConfigError", "CreateContainerError"}
CONF_DIR = "/etc/slurm"
CANDIDATE_DIR = "/tmp/sunk-candidate"
_ALLOCATED = {"alloc", "mix", "comp", "completing"}
_DRAINED = {"drain", "drng", "drained", "draining"}


# slurmctld pods whose exec failed recently (pod uid → monotonic time to try again), and why.
_exec_backoff: dict[str, float] = {}
_exec_errors: dict[str, str] = {}


@dataclass
class Result:
    """The status to write and when to reconcile again (seconds)."""

    status: dict[str, Any]
    requeue: float = 30.0
    events: list[str] = field(default_factory=list)


class Conditions:
    """Status conditions; the transition time moves only when a condition's status changes."""

    def __init__(self, previous: list[Mapping[str, Any]] | None) -> None:
        self._previous = {c.get("type"): c for c in previous or ()}
        self.items: dict[str, dict[str, Any]] = {}

    def set(self, kind: str, ok: bool | None, reason: str, message: str = "") -> None:
        status = "Unknown" if ok is None else ("True" if ok else "False")
        old = self._previous.get(kind)
        when = old.get("lastTransitionTime") if old and old.get("status") == status else None
        self.items[kind] = {"type": kind, "status": status, "reason": reason, "message": message[:1000],
                            "lastTransitionTime": when or _now()}

    def is_true(self, kind: str) -> bool:
        return self.items.get(kind, {}).get("status") == "True"

    def as_list(self) -> list[dict[str, Any]]:
        return list(self.items.values())


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready(pod: Mapping[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _waiting_problems(pods: list[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    images: list[str] = []
    configs: list[str] = []
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        statuses += (pod.get("status") or {}).get("initContainerStatuses") or []
        for cs in statuses:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            where = f"pod {pod['metadata']['name']} container {cs.get('name')}"
            if reason in IMAGE_ERRORS:
                images.append(f"{where}: image {cs.get('image')}: {reason}: {waiting.get('message', '')}".strip())
            elif reason in CONFIG_ERRORS:
                configs.append(f"{where}: {reason}: {waiting.get('message', '')}")
    return images, configs


class Slurm:
    """Slurm commands run inside the slurmctld pod."""

    def __init__(self, kube: Kube, namespace: str, pod: str) -> None:
        self.kube, self.namespace, self.pod = kube, namespace, pod

    def run(self, script: str, timeout: float = 60.0) -> tuple[int, str, str]:
        return self.kube.exec(self.namespace, self.pod, "slurmctld", ["sh", "-c", script], timeout=timeout)

    def ok(self, script: str, timeout: float = 60.0) -> str:
        code, out, err = self.run(script, timeout)
        if code != 0:
            raise RuntimeError(f"`{script[:80]}` exited {code}: {(err or out).strip()[-300:]}")
        return out

    def node_states(self) -> dict[str, tuple[str, str]]:
        """Slurm node name → (partition, compact state) from sinfo."""
        out = self.ok("sinfo -h -N -o '%N|%P|%t'")
        states: dict[str, tuple[str, str]] = {}
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3:
                states[parts[0]] = (parts[1].rstrip("*"), parts[2].rstrip("*~#!%$@^-"))
        return states

    def reasons(self) -> dict[str, str]:
        """Slurm node name → the reason it is drained or down ("" when none)."""
        out = self.ok("sinfo -h -N -o '%N|%E'")
        found: dict[str, str] = {}
        for line in out.splitlines():
            name, _, reason = line.strip().partition("|")
            found[name] = "" if reason == "none" else reason
        return found

    def resume(self, node: str) -> None:
        self.ok(f"scontrol update nodename={shlex.quote(node)} state=resume")

    def jobs_on(self, node: str) -> list[str]:
        return self.ok(f"squeue -h -w {shlex.quote(node)} -o %A").split()

    def drain(self, node: str, reason: str) -> None:
        self.ok(f"scontrol update nodename={shlex.quote(node)} state=drain reason={shlex.quote(reason)}")

    def read_files(self) -> dict[str, str]:
        out = self.ok(f"cd {CONF_DIR} && for f in *; do printf '\\n===SUNK-FILE %s\\n' \"$f\"; cat \"$f\"; done")
        files: dict[str, str] = {}
        for chunk in out.split("\n===SUNK-FILE ")[1:]:
            name, _, text = chunk.partition("\n")
            files[name] = text
        return files

    def stage(self, files: Mapping[str, str]) -> str | None:
        """Copy `files` to the candidate directory and parse them there; Slurm's complaint or None."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        payload = base64.b64encode(gzip.compress(buf.getvalue())).decode()
        self.ok(f"rm -rf {CANDIDATE_DIR} && mkdir -p {CANDIDATE_DIR} && echo {payload} | base64 -d | "
                f"tar -xz -C {CANDIDATE_DIR}")
        code, out, err = self.run(f"SLURM_CONF={CANDIDATE_DIR}/slurm.conf scontrol show hostnames check")
        return check_command_result(subprocess.CompletedProcess([], code, out, err))

    def install(self, names: list[str]) -> None:
        keep = " ".join(shlex.quote(n) for n in names)
        self.ok(f"cd {CONF_DIR} && for f in *; do case \" {keep} \" in *\" $f \"*) ;; *) rm -f \"$f\";; esac; "
                f"done && cp {CANDIDATE_DIR}/* {CONF_DIR}/")


def _pool_of(spec: ClusterSpec, node: Mapping[str, Any]) -> str | None:
    labels = (node.get("metadata") or {}).get("labels") or {}
    for pool in spec.pools:
        if pool.matches(labels):
            return pool.name
    return None


def _create_all(kube: Kube, manifests: list[dict[str, Any]]) -> int:
    if not manifests:
        return 0
    workers = min(16, len(manifests))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(kube.create, manifests))


def reconcile(kube: Kube, body: Mapping[str, Any], *, local_check: bool = True) -> Result:
    """One pass over the SlurmCluster `body` (as the API returned it)."""
    started = time.monotonic()
    meta = body["metadata"]
    previous = (body.get("status") or {}).get("conditions")
    conds = Conditions(previous)
    status: dict[str, Any] = {"observedGeneration": meta.get("generation")}
    result = Result(status)
    uid = str(meta["uid"])
    try:
        spec = parse_cluster(body)
    except SpecError as exc:
        conds.set("ConfigRendered", False, "InvalidSpec", str(exc))
        conds.set("Ready", False, "InvalidSpec", str(exc))
        status["conditions"] = conds.as_list()
        return result
    ns = spec.namespace

    # Keys: the munge key is made here unless the spec names a Secret, which must then exist.
    if spec.munge_secret:
        if kube.get_or_none(f"/api/v1/namespaces/{ns}/secrets/{spec.munge_secret}") is None:
            msg = (f"spec.munge.secretName: Secret {spec.munge_secret!r} not found in namespace {ns}; create it "
                   "with a key munge.key (at least 32 random bytes) or drop the field to let the operator make one")
            conds.set("AuthReady", False, "MungeSecretMissing", msg)
            conds.set("Ready", False, "MungeSecretMissing", msg)
            status["conditions"] = conds.as_list()
            result.requeue = 15
            return result
    else:
        kube.create(b.munge_secret(spec, uid, os.urandom(1024)))
    kube.create(b.jwt_secret(spec, uid, os.urandom(32)))
    conds.set("AuthReady", True, "KeysPresent")
    if spec.accounting.enabled and kube.get_or_none(
            f"/api/v1/namespaces/{ns}/secrets/{spec.accounting.password_secret}") is None:
        conds.set("AccountingReady", False, "PasswordSecretMissing",
                  f"spec.accounting.database.passwordSecretRef: Secret {spec.accounting.password_secret!r} not "
                  f"found in namespace {ns}")

    conflict = _bridge_identities(kube, spec, uid, meta, status)
    if conflict:
        conds.set("ConfigRendered", False, "BridgeConflict", conflict)
        conds.set("Ready", False, "BridgeConflict", conflict)
        status["conditions"] = conds.as_list()
        result.requeue = 30
        return result

    # Pool membership from live nodes.
    nodes = kube.get_json("/api/v1/nodes")["items"]
    members: dict[str, b.Member] = {}
    k8s_nodes = {n["metadata"]["name"] for n in nodes}
    for node in nodes:
        pool_name = _pool_of(spec, node)
        if pool_name is None or node["metadata"].get("deletionTimestamp"):
            continue
        found = b.member_of(spec, pool_name, node)
        members[found.slurm_name] = found
    selector = f"{b.CLUSTER_LABEL}={spec.name}"
    pods = kube.get_json(f"/api/v1/namespaces/{ns}/pods", {"labelSelector": selector})["items"]
    slurmd_pods = {p["metadata"]["labels"].get(b.NODE_LABEL, ""): p for p in pods
                   if p["metadata"]["labels"].get(b.COMPONENT_LABEL) == "slurmd"}

    created = _create_all(kube, [b.slurmd_pod(spec, uid, m) for name, m in sorted(members.items())
                                 if name not in slurmd_pods])
    if created:
        result.events.append(f"created {created} slurmd pods")
        result.requeue = 2

    # Pods of nodes that left the pool (or the cluster); drained below before they go.
    leaving = {name: pod for name, pod in slurmd_pods.items() if name not in members}
    for name, pod in list(leaving.items()):
        if pod["spec"].get("nodeName") not in k8s_nodes or pod["metadata"].get("deletionTimestamp"):
            kube.delete(f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}")
            del leaving[name]

    # What Slurm is told about: nodes whose slurmd pod has an address.
    known: dict[str, tuple[b.Member, str]] = {}
    for name, pod in slurmd_pods.items():
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or pod["metadata"].get("deletionTimestamp"):
            continue
        member = members.get(name)
        if member is None and name in leaving:
            node = next((n for n in nodes if n["metadata"]["name"] == pod["spec"]["nodeName"]), None)
            pool_name = pod["metadata"]["labels"].get(b.POOL_LABEL, "")
            if node is None or pool_name not in {p.name for p in spec.pools}:
                continue
            member = b.member_of(spec, pool_name, node)
        if member is not None:
            known[name] = (member, ip)
    if len(known) < len(members):
        result.requeue = min(result.requeue, 3)

    files = render_all(b.conf_inputs(spec, known))
    if spec.accounting.enabled:
        files["slurmdbd.conf"] = b.slurmdbd_conf(spec)
    digest = conf_hash(files)
    problem = parse_check(files) if local_check else None
    conf_path = f"/api/v1/namespaces/{ns}/configmaps/{b.conf_map_name(spec)}"
    current_map = kube.get_or_none(conf_path)
    map_hash = (current_map or {}).get("metadata", {}).get("annotations", {}).get(b.CONF_HASH_ANNOTATION)
    ctl_pod = next((p for p in pods if p["metadata"]["name"] == b.controller_host(spec)), None)
    ctl_usable = (ctl_pod is not None and _ready(ctl_pod)
                  and _exec_backoff.get(ctl_pod["metadata"]["uid"], 0.0) <= time.monotonic())
    if not problem and map_hash != digest and ctl_usable and ctl_pod is not None:
        # Slurm's own parser in the slurmctld image judges the candidate before any pod can see it.
        try:
            problem = Slurm(kube, ns, ctl_pod["metadata"]["name"]).stage(files)
        except RuntimeError:
            problem = None  # not answering: the rollout step reports it
    if problem:
        conds.set("ConfigRendered", False, "SlurmRejected",
                  f"slurm.conf refused by Slurm's parser, not rolled out: {problem}")
    else:
        if current_map is None or current_map["metadata"].get("annotations", {}).get(b.CONF_HASH_ANNOTATION) != digest:
            kube.apply(b.conf_map(spec, uid, files, digest))
        conds.set("ConfigRendered", True, "Rendered", f"{len(known)} nodes, hash {digest}")
        status["configHash"] = digest

    kube.apply(b.headless_service(spec, uid, "slurmctld", b.SLURMCTLD_PORT))
    kube.apply(b.headless_service(spec, uid, "slurmd", b.SLURMD_PORT))
    kube.apply(b.controller_statefulset(spec, uid))
    kube.apply(b.login_deployment(spec, uid))
    if spec.restapi_replicas:
        kube.apply(b.restapi_deployment(spec, uid))
        kube.apply(b.service(spec, uid, "restapi", b.RESTD_PORT))
    if spec.accounting.enabled:
        kube.apply(b.slurmdbd_deployment(spec, uid))
        kube.apply(b.service(spec, uid, "slurmdbd", b.SLURMDBD_PORT))
    if not spec.podgroup_pools:
        if (body.get("status") or {}).get("bridge"):
            _retire_bridge(kube, spec, uid, pods, status, conds, result)
    else:
        kube.apply(b.jobs_controller_deployment(spec, uid))
        ready = any(_ready(p) for p in pods if p["metadata"]["labels"].get(b.COMPONENT_LABEL) == "jobs")
        conds.set("BridgeReady", ready, "Running" if ready else "NotReady",
                  f"SlurmJob controller {b.jobs_name(spec)} {'ready' if ready else 'not ready yet'}")

    images, configs = _waiting_problems(pods)
    if images:
        conds.set("ImagesAvailable", False, "ImagePullFailed", "; ".join(images[:5]))
    else:
        conds.set("ImagesAvailable", True, "ImagesPresent")
    if configs:
        conds.set("PodsConfigured", False, "MissingReference", "; ".join(configs[:5]))

    states: dict[str, tuple[str, str]] | None = None
    draining: dict[str, list[str]] = {}
    rolling: list[str] = []
    busy = sum(p["metadata"]["labels"].get(b.BUSY_LABEL) == "true" for p in slurmd_pods.values())
    if ctl_pod is None or not _ready(ctl_pod):
        conds.set("ControllerReady", False, "NotReady", "slurmctld pod is not ready yet")
        result.requeue = min(result.requeue, 5)
    elif _exec_backoff.get(ctl_pod["metadata"]["uid"], 0.0) > time.monotonic():
        conds.set("ControllerReady", False, "NotAnswering", _exec_errors.get(ctl_pod["metadata"]["uid"], ""))
    else:
        slurm = Slurm(kube, ns, ctl_pod["metadata"]["name"])
        try:
            if not problem:
                _rollout(kube, slurm, ctl_pod, files, digest, conds, result)
            states = slurm.node_states()
            draining = _remove_leaving(kube, slurm, spec, leaving, states, result)
            rolling = _roll_stale(kube, slurm, spec, uid, members, slurmd_pods, states, result)
            busy = _label_busy(kube, ns, slurmd_pods, states)
            conds.set("ControllerReady", True, "Answering", "slurmctld answers")
        except (RuntimeError, ApiException, OSError) as exc:
            message = f"slurmctld does not answer: {exc}"
            conds.set("ControllerReady", False, "NotAnswering", message)
            _exec_backoff[ctl_pod["metadata"]["uid"]] = time.monotonic() + 30
            _exec_errors[ctl_pod["metadata"]["uid"]] = message
            result.requeue = min(result.requeue, 5)
    kube.apply(b.busy_pdb(spec, uid, busy))
    if states is None and leaving:
        for name, pod in leaving.items():
            draining.setdefault(pod["metadata"]["labels"].get(b.POOL_LABEL, ""), []).append(name)

    _pool_status(spec, status, conds, members, slurmd_pods, states, draining)
    for entry in status["pools"]:
        mine = [n for n in rolling if members[n].pool == entry["name"]]
        if mine:
            entry["rolling"] = mine
    _service_conditions(spec, conds, pods)
    wanted = ["ConfigRendered", "ControllerReady", "ImagesAvailable"]
    wanted += ["RestApiReady"] if spec.restapi_replicas else []
    wanted += ["AccountingReady"] if spec.accounting.enabled else []
    wanted += ["BridgeReady"] if spec.podgroup_pools else []
    all_ok = all(conds.is_true(k) for k in wanted) and all(
        p["ready"] == "True" for p in status["pools"]) and "PodsConfigured" not in conds.items
    conds.set("Ready", all_ok, "Ready" if all_ok else "Progressing",
              "" if all_ok else "; ".join(f"{c['type']}: {c['message'] or c['reason']}"
                                          for c in conds.as_list() if c["status"] != "True")[:1000])
    status["conditions"] = conds.as_list()
    status["reconcileSeconds"] = round(time.monotonic() - started, 3)
    return result


def _bridge_identities(kube: Kube, spec: ClusterSpec, uid: str, meta: Mapping[str, Any],
                       status: dict[str, Any]) -> str | None:
    """The job bridge's ServiceAccounts and bindings, before any pod names them, while the cluster has a
    podgroup pool and is not being deleted. Returns why it cannot have them, if so."""
    if not spec.podgroup_pools or meta.get("deletionTimestamp"):
        return None
    clusters = kube.get_json(f"/apis/{GROUP}/{VERSION}/namespaces/{spec.namespace}/{PLURAL}")["items"]
    for other in clusters:
        other_meta = other["metadata"]
        if other_meta["uid"] != uid and any(pool.get("mode") == "podgroup" for pool in other["spec"].get(
                "pools") or []) and (other_meta["creationTimestamp"], other_meta["name"]) < (
                meta["creationTimestamp"], meta["name"]):
            return (f"spec.pools: SlurmCluster {other_meta['name']!r} already runs the job bridge in namespace "
                    f"{spec.namespace} (its SlurmJob controller acts on every SlurmJob there); give this cluster "
                    "its own namespace")
    for manifest in [*b.bridge_identities(spec, uid), b.jobs_nodes_binding(spec, uid)]:
        kube.apply(manifest)
    status["bridge"] = True
    return None


def _retire_bridge(kube: Kube, spec: ClusterSpec, uid: str, pods: list[Mapping[str, Any]],
                   status: dict[str, Any], conds: Conditions, result: Result) -> None:
    """Remove the bridge of a cluster that no longer has a podgroup pool, once nothing uses it: no slurmd pod
    with the launcher's token (they are replaced one at a time) and no SlurmJob of the cluster is left."""
    launcher = b.launcher_name(spec)
    agents = [p for p in pods if p["spec"].get("serviceAccountName") == launcher]
    jobs = kube.get_json(f"/apis/{GROUP}/{VERSION}/namespaces/{spec.namespace}/{JOB_PLURAL}",
                         {"labelSelector": f"{GROUP}/cluster={sanitise_name(spec.cluster_name)}"})["items"]
    if agents or jobs:
        status["bridge"] = True
        conds.set("BridgeReady", False, "Retiring",
                  f"kept until {len(agents)} podgroup slurmd pods and {len(jobs)} SlurmJobs are gone")
        result.requeue = min(result.requeue, 10)
        return
    _remove_bridge(kube, spec, uid)
    status["bridge"] = False


def _remove_bridge(kube: Kube, spec: ClusterSpec, uid: str) -> None:
    """Delete the bridge's objects by name (the ClusterRoleBinding has no owner to be collected with)."""
    ns, rbac = spec.namespace, "/apis/rbac.authorization.k8s.io/v1"
    for path in (f"/apis/apps/v1/namespaces/{ns}/deployments/{b.jobs_name(spec)}",
                 *(f"{rbac}/namespaces/{ns}/rolebindings/{n}" for n in (b.launcher_name(spec), b.jobs_name(spec))),
                 *(f"/api/v1/namespaces/{ns}/serviceaccounts/{n}" for n in (b.launcher_name(spec), b.jobs_name(spec))),
                 f"{rbac}/clusterrolebindings/{b.jobs_nodes_binding_name(uid)}"):
        kube.delete(path)


def _service_conditions(spec: ClusterSpec, conds: Conditions, pods: list[Mapping[str, Any]]) -> None:
    """RestApiReady and AccountingReady from their pods (a missing password Secret was reported already)."""
    def ready_count(component: str) -> int:
        return sum(1 for p in pods if p["metadata"]["labels"].get(b.COMPONENT_LABEL) == component and _ready(p)
                   and not p["metadata"].get("deletionTimestamp"))

    if spec.restapi_replicas:
        n = ready_count("restapi")
        conds.set("RestApiReady", n > 0, "Answering" if n else "NotReady",
                  f"{n}/{spec.restapi_replicas} slurmrestd pods ready at {spec.name}-restapi:{b.RESTD_PORT}")
    if spec.accounting.enabled and "AccountingReady" not in conds.items:
        n = ready_count("slurmdbd")
        conds.set("AccountingReady", n > 0, "Answering" if n else "NotReady",
                  f"slurmdbd {'ready' if n else 'not ready'} at {spec.name}-slurmdbd:{b.SLURMDBD_PORT}, "
                  f"database {spec.accounting.db_host}:{spec.accounting.db_port}")


def _rollout(kube: Kube, slurm: Slurm, ctl_pod: Mapping[str, Any], files: Mapping[str, str], digest: str,
             conds: Conditions, result: Result) -> None:
    applied = (ctl_pod["metadata"].get("annotations") or {}).get(b.CONF_HASH_ANNOTATION)
    if applied == digest:
        return
    pod_path = f"/api/v1/namespaces/{slurm.namespace}/pods/{slurm.pod}"
    current = slurm.read_files()
    if conf_hash(current) == digest:
        # The pod already has these files (it started from the current ConfigMap, or restarted with them):
        # tell the slurmd pods, then remember.
        slurm.ok("scontrol reconfigure")
        kube.merge_patch(pod_path, {"metadata": {"annotations": {b.CONF_HASH_ANNOTATION: digest}}})
        result.events.append(f"configuration {digest} active")
        return
    problem = slurm.stage(files)
    if problem:
        conds.set("ConfigRendered", False, "SlurmRejected",
                  f"slurm.conf refused by slurmctld's Slurm, not rolled out: {problem}")
        return
    slurm.install(sorted(files))
    if needs_restart(current, files):
        log.info("restarting slurmctld with saved state for configuration %s", digest)
        slurm.run("scontrol shutdown slurmctld")
        result.events.append(f"slurmctld restarting for configuration {digest}")
        result.requeue = 2
    else:
        slurm.ok("scontrol reconfigure")
        kube.merge_patch(pod_path, {"metadata": {"annotations": {b.CONF_HASH_ANNOTATION: digest}}})
        result.events.append(f"configuration {digest} applied with scontrol reconfigure")


def _remove_leaving(kube: Kube, slurm: Slurm, spec: ClusterSpec, leaving: Mapping[str, Mapping[str, Any]],
                    states: Mapping[str, tuple[str, str]], result: Result) -> dict[str, list[str]]:
    draining: dict[str, list[str]] = {}
    for name, pod in sorted(leaving.items()):
        pool = pod["metadata"]["labels"].get(b.POOL_LABEL, "")
        pod_path = f"/api/v1/namespaces/{spec.namespace}/pods/{pod['metadata']['name']}"
        if name not in states:
            kube.delete(pod_path)
            continue
        state = states[name][1]
        if state not in _DRAINED:
            slurm.drain(name, f"{REASON_PREFIX} node left pool {pool}")
            result.events.append(f"draining {name}: it left pool {pool}")
        if slurm.jobs_on(name):
            draining.setdefault(pool, []).append(name)
            result.requeue = min(result.requeue, 5)
            continue
        log.info("deleting slurmd pod of drained node %s", name)
        kube.delete(pod_path)
        result.events.append(f"deleted slurmd pod of drained node {name}")
        result.requeue = 2
    return draining


ROLL_REASON = f"{REASON_PREFIX} replacing slurmd pod (its spec changed)"


def _roll_stale(kube: Kube, slurm: Slurm, spec: ClusterSpec, uid: str, members: Mapping[str, b.Member],
                slurmd_pods: Mapping[str, Mapping[str, Any]], states: Mapping[str, tuple[str, str]],
                result: Result) -> list[str]:
    """Replace slurmd pods whose spec is not the one the cluster asks for, one node at a time.

    The node is drained (reason ROLL_REASON), its pod deleted once no job runs there, and the next pass
    creates the pod anew; a node that comes back still drained for this reason is resumed. A roll starts
    only while every other pool node has a ready pod. Returns the nodes being replaced now.
    """
    def ann(pod: Mapping[str, Any]) -> str | None:
        return (pod["metadata"].get("annotations") or {}).get(b.POD_HASH_ANNOTATION)

    want = {name: b.pod_hash(b.slurmd_pod(spec, uid, m)["spec"]) for name, m in members.items()}
    current = {name for name, pod in slurmd_pods.items() if name in want and ann(pod) == want[name]}
    stale = sorted(name for name, pod in slurmd_pods.items()
                   if name in want and name not in current and not pod["metadata"].get("deletionTimestamp"))
    drained = [n for n, (_, s) in states.items() if s in _DRAINED]
    reasons = slurm.reasons() if drained else {}
    for name in sorted(current):
        if reasons.get(name) == ROLL_REASON and _ready(slurmd_pods[name]):
            slurm.resume(name)
            result.events.append(f"resumed {name}: its slurmd pod was replaced")
    rolling = [n for n in stale if reasons.get(n) == ROLL_REASON]
    if not rolling and stale:
        settled = all(n in slurmd_pods and _ready(slurmd_pods[n]) and not slurmd_pods[n]["metadata"].get(
            "deletionTimestamp") for n in members)
        if not settled or any(r == ROLL_REASON for r in reasons.values()):
            result.requeue = min(result.requeue, 5)
            return [n for n, r in reasons.items() if r == ROLL_REASON]
        rolling = stale[:1]
        if rolling[0] in states:
            slurm.drain(rolling[0], ROLL_REASON)
        result.events.append(f"draining {rolling[0]} to replace its slurmd pod")
    for name in rolling:
        result.requeue = min(result.requeue, 5)
        if name in states and slurm.jobs_on(name):
            continue
        log.info("replacing slurmd pod of %s", name)
        kube.delete(f"/api/v1/namespaces/{spec.namespace}/pods/{slurmd_pods[name]['metadata']['name']}")
        result.events.append(f"deleted stale slurmd pod of {name}")
    return rolling


def _label_busy(kube: Kube, ns: str, slurmd_pods: Mapping[str, Mapping[str, Any]],
                states: Mapping[str, tuple[str, str]]) -> int:
    """Label slurmd pods of nodes with jobs as busy (and unlabel the others); returns how many are busy."""
    count = 0
    for name, pod in slurmd_pods.items():
        busy = name in states and states[name][1] in _ALLOCATED | {"drng"}
        count += busy
        has = pod["metadata"]["labels"].get(b.BUSY_LABEL) == "true"
        if busy != has:
            kube.merge_patch(f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}",
                             {"metadata": {"labels": {b.BUSY_LABEL: "true" if busy else None}}})
    return count


def _pool_status(spec: ClusterSpec, status: dict[str, Any], conds: Conditions, members: Mapping[str, b.Member],
                 slurmd_pods: Mapping[str, Mapping[str, Any]], states: Mapping[str, tuple[str, str]] | None,
                 draining: Mapping[str, list[str]]) -> None:
    pools = []
    totals = {"nodes": 0, "idle": 0, "allocated": 0, "drained": 0}
    for pool in spec.pools:
        names = [n for n, m in members.items() if m.pool == pool.name]
        ready_pods = sum(1 for n in names if n in slurmd_pods and _ready(slurmd_pods[n]))
        entry: dict[str, Any] = {"name": pool.name, "partition": pool.partition_name, "kubernetesNodes": len(names)}
        if states is not None:
            mine = [s for _, (part, s) in states.items() if part == pool.partition_name]
            entry.update(nodes=len(mine), idle=sum(s == "idle" for s in mine),
                         allocated=sum(s in _ALLOCATED for s in mine), drained=sum(s in _DRAINED for s in mine))
            for key in totals:
                totals[key] += entry[key]
        if draining.get(pool.name):
            entry["draining"] = sorted(draining[pool.name])
        ok = ready_pods == len(names) and not draining.get(pool.name)
        entry["ready"] = "True" if ok else "False"
        kind = "Pool" + "".join(part.capitalize() for part in pool.name.split("-")) + "Ready"
        conds.set(kind, ok, "SlurmdReady" if ok else ("Draining" if draining.get(pool.name) else "Progressing"),
                  f"{ready_pods}/{len(names)} slurmd pods ready"
                  + (f"; draining {','.join(sorted(draining[pool.name]))}" if draining.get(pool.name) else ""))
        pools.append(entry)
    status["pools"] = pools
    if states is not None:
        status.update(totals)


def write_status(kube: Kube, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Merge `status` into the SlurmCluster's status subresource."""
    kube.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})
