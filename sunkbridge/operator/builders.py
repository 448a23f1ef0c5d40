"""Pure builders: Kubernetes manifests of one SlurmCluster as functions of typed data.

Nothing here talks to the API. `handlers`/`reconcile` decide what to create, patch or delete; these
functions only say what each object looks like. Names: `<cluster>-slurmctld` (StatefulSet and headless
Service; its pod `<cluster>-slurmctld-0` is the SlurmctldHost), `<cluster>-slurmd` (headless Service the
slurmd pods use as subdomain), `<cluster>-slurmd-<node>` (one slurmd pod per Kubernetes node of a pool),
`<cluster>-login`, `<cluster>-restapi`, `<cluster>-slurmdbd`, `<cluster>-slurm-conf` (ConfigMap),
`<cluster>-munge` and `<cluster>-jwt` (Secrets), `<cluster>-busy` (PodDisruptionBudget); with a podgroup
pool also `<cluster>-launcher` (ServiceAccount and RoleBinding of the launcher in the slurmd pods),
`<cluster>-jobs` (ServiceAccount, RoleBinding and Deployment of the SlurmJob controller) and the
ClusterRoleBinding `sunkbridge-jobs-nodes-<cluster uid>` (reading nodes).
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sunkbridge.cluster import DOMAIN
from sunkbridge.jobs.builders import SharedVolume as JobVolume
from sunkbridge.operator.spec import DEFAULT_API_SERVER, GROUP, KIND, VERSION, ClusterSpec
from sunkbridge.slurm.conf import ConfInputs, ConfPaths, Partition, SlurmNode

CLUSTER_LABEL = f"{DOMAIN}/cluster"
COMPONENT_LABEL = f"{DOMAIN}/component"
POOL_LABEL = f"{DOMAIN}/pool"
NODE_LABEL = f"{DOMAIN}/node"
BUSY_LABEL = f"{DOMAIN}/busy"
CONF_HASH_ANNOTATION = f"{DOMAIN}/conf-hash"
POD_HASH_ANNOTATION = f"{DOMAIN}/pod-hash"
SLURM_NODE_ANNOTATION = f"{DOMAIN}/slurm-node"
CLUSTER_DOMAIN = "cluster.local"
SLURMCTLD_PORT = 6817
SLURMD_PORT = 6818
SLURMDBD_PORT = 6819
RESTD_PORT = 6820
LAUNCHER_TOKEN_DIR = "/var/run/secrets/sunkbridge/launcher"
"""Where podgroup slurmd pods hold the launcher's ServiceAccount token (root only) and the cluster's CA."""
LAUNCHER_CLUSTER_ROLE = "sunkbridge-launcher"
JOBS_CLUSTER_ROLE = "sunkbridge-jobs-controller"
JOBS_NODES_CLUSTER_ROLE = "sunkbridge-jobs-nodes"
JOBS_READY_FILE = "/run/sunk/ready"
"""Written by the SlurmJob controller once it is synced; its readiness probe tests for it."""

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Member:
    """A Kubernetes node of a pool and the Slurm node it becomes (its address comes from its slurmd pod)."""

    pool: str
    k8s_node: str
    node: SlurmNode

    @property
    def slurm_name(self) -> str:
        return self.node.name


# ---------------------------------------------------------------------------------------------------------
# Nodes → Slurm nodes

_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
           "Ti": 2**40, "m": 0.001}


def quantity(text: str) -> float:
    """A Kubernetes quantity (`96`, `500m`, `1024Gi`) as a number."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group(2) not in _SUFFIX:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def gpu_type(product: str | None) -> str | None:
    """Slurm's GPU type from a product label: `NVIDIA-H100-80GB-HBM3` → `h100`, else the label lowercased."""
    if not product:
        return None
    for token in re.split(r"[-_ ]", product.lower()):
        if re.fullmatch(r"[a-z]{1,2}[0-9]{1,4}[a-z]?", token):
            return token
    cleaned = re.sub(r"[^a-z0-9]", "", product.lower())
    return cleaned[:20] or None


def slurm_node_name(k8s_node: str) -> str:
    """The Slurm node (and pod hostname) for a Kubernetes node: a DNS label."""
    name = re.sub(r"[^a-z0-9-]", "-", k8s_node.lower()).strip("-")
    return name[:63].rstrip("-")


def member_of(spec: ClusterSpec, pool_name: str, node: Mapping[str, Any]) -> Member:
    """The Slurm view of a Kubernetes Node object (as a dict) in pool `pool_name`."""
    pool = spec.pool(pool_name)
    meta, status = node.get("metadata") or {}, node.get("status") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    alloc: Mapping[str, str] = status.get("allocatable") or status.get("capacity") or {}
    cpu, memory = quantity(alloc.get("cpu", "1")), quantity(alloc.get("memory", "1Mi"))
    if pool.mode == "podgroup":  # job pods share the node with the slurmd agent: what it asks is not theirs
        asked = spec.slurmd_resources.get(pool.name, {}).get("requests", {})
        cpu -= quantity(asked.get("cpu", "0"))
        memory -= quantity(asked.get("memory", "0"))
    cpus = max(1, int(cpu))
    memory_mb = max(1, int(memory // 2**20))
    gpus = int(quantity(alloc.get(pool.gpu_resource, "0")))
    if not gpus and labels.get("nvidia.com/gpu.count", "").isdigit():
        gpus = int(labels["nvidia.com/gpu.count"])
    features = tuple(sorted({re.sub(r"[^A-Za-z0-9_.-]", "_", labels[k]) for k in pool.feature_labels
                             if labels.get(k)}))
    switch = labels.get(pool.topology_label) if pool.topology_label else None
    node_name = str(meta["name"])
    return Member(pool=pool.name, k8s_node=node_name, node=SlurmNode(
        name=slurm_node_name(node_name), partition=pool.partition_name, cpus=cpus, memory_mb=memory_mb, gpus=gpus,
        gpu_type=gpu_type(labels.get(pool.gpu_product_label)) if gpus else None,
        features=features, switch=re.sub(r"[^A-Za-z0-9_.-]", "_", switch) if switch else None))


def conf_inputs(spec: ClusterSpec, members: Mapping[str, tuple[Member, str]]) -> ConfInputs:
    """What to render: `members` maps Slurm node name → (member, address of its slurmd pod)."""
    nodes = tuple(replace(m.node, addr=addr) for m, addr in members.values())
    partitions = tuple(
        Partition(name=p.partition_name, default=(p.name == spec.default_pool), options=dict(p.partition_options),
                  podgroup=p.mode == "podgroup")
        for p in spec.pools)
    return ConfInputs(
        cluster_name=spec.cluster_name, nodes=nodes, partitions=partitions,
        paths=ConfPaths(controller_host=controller_host(spec), controller_addr=controller_fqdn(spec),
                        gpu_device_path=spec.gpu_device_path),
        overrides=dict(spec.overrides),
        accounting_host=f"{spec.name}-slurmdbd" if spec.accounting.enabled else None,
        launcher_path=launcher_command(spec))


def launcher_command(spec: ClusterSpec) -> str:
    """What job_submit.lua execs for podgroup jobs: the launcher with the pod's token and each pool's image."""
    argv = [spec.launcher_path, "--token-dir", LAUNCHER_TOKEN_DIR, "--server", spec.api_server,
            "--namespace", spec.namespace, "--cluster", spec.cluster_name]
    for pool in spec.podgroup_pools:
        if pool.default_image:
            argv += ["--partition-image", f"{pool.partition_name}={pool.default_image}"]
    for arg in argv:
        if not re.fullmatch(r"[A-Za-z0-9/._:=@+,-]+", arg):
            raise ValueError(f"launcher argument {arg!r} has characters job_submit.lua cannot carry")
    return " ".join(argv) + " --"


# ---------------------------------------------------------------------------------------------------------
# Names and shared pieces


def controller_host(spec: ClusterSpec) -> str:
    return f"{spec.name}-slurmctld-0"


def controller_fqdn(spec: ClusterSpec) -> str:
    return f"{controller_host(spec)}.{spec.name}-slurmctld.{spec.namespace}.svc.{CLUSTER_DOMAIN}"


def slurmd_pod_name(spec: ClusterSpec, slurm_name: str) -> str:
    return f"{spec.name}-slurmd-{slurm_name}"[:63].rstrip("-")


def conf_map_name(spec: ClusterSpec) -> str:
    return f"{spec.name}-slurm-conf"


def labels(spec: ClusterSpec, component: str, **extra: str) -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": "sunkbridge", "app.kubernetes.io/name": f"slurm-{component}",
            CLUSTER_LABEL: spec.name, COMPONENT_LABEL: component, **extra}


def owner(spec: ClusterSpec, uid: str) -> list[dict[str, Any]]:
    return [{"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": spec.name, "uid": uid,
             "controller": True, "blockOwnerDeletion": True}]


def _meta(spec: ClusterSpec, name: str, component: str, uid: str, **extra: str) -> dict[str, Any]:
    return {"name": name, "namespace": spec.namespace, "labels": labels(spec, component, **extra),
            "ownerReferences": owner(spec, uid)}


def _auth_volumes(spec: ClusterSpec) -> tuple[list[Manifest], list[Manifest]]:
    volumes = [
        {"name": "munge-key", "secret": {"secretName": spec.munge_secret_name, "defaultMode": 0o400}},
        {"name": "jwt-key", "secret": {"secretName": spec.jwt_secret_name, "defaultMode": 0o400,
                                       "optional": True}},
    ]
    # subPath: the images size-check the key file itself, and Secret volumes otherwise hold symlinks.
    mounts = [{"name": "munge-key", "mountPath": "/etc/munge-key/munge.key", "subPath": "munge.key",
               "readOnly": True},
              {"name": "jwt-key", "mountPath": "/etc/slurm-jwt", "readOnly": True}]
    return volumes, mounts


def _shared(spec: ClusterSpec) -> tuple[list[Manifest], list[Manifest]]:
    volumes = [{"name": f"shared-{v.name}", **dict(v.source)} for v in spec.shared_volumes]
    mounts = [{"name": f"shared-{v.name}", "mountPath": v.mount_path} for v in spec.shared_volumes]
    return volumes, mounts


def _conf_volume(spec: ClusterSpec) -> Manifest:
    return {"name": "slurm-conf", "configMap": {"name": conf_map_name(spec)}}


# ---------------------------------------------------------------------------------------------------------
# Secrets and configuration


def munge_secret(spec: ClusterSpec, uid: str, key: bytes) -> Manifest:
    """The cluster's munge key (1024 random bytes), shared by every Slurm pod."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(spec, spec.munge_secret_name, "auth", uid),
            "data": {"munge.key": base64.b64encode(key).decode()}}


def jwt_secret(spec: ClusterSpec, uid: str, key: bytes) -> Manifest:
    """The HS256 key slurmctld and slurmrestd use for JWT authentication."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(spec, spec.jwt_secret_name, "auth", uid),
            "data": {"jwt_hs256.key": base64.b64encode(key).decode()}}


def conf_map(spec: ClusterSpec, uid: str, files: Mapping[str, str], conf_hash: str) -> Manifest:
    """The rendered configuration files, annotated with their hash."""
    meta = _meta(spec, conf_map_name(spec), "config", uid)
    meta["annotations"] = {CONF_HASH_ANNOTATION: conf_hash}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(files)}


def slurmdbd_conf(spec: ClusterSpec) -> str:
    """slurmdbd.conf without the password (the slurmdbd image appends it from the Secret)."""
    a = spec.accounting
    return "\n".join([
        "AuthType=auth/munge", "DbdHost=localhost", f"DbdPort={SLURMDBD_PORT}", "SlurmUser=slurm",
        "PidFile=/run/slurm/slurmdbd.pid", "StorageType=accounting_storage/mysql",
        f"StorageHost={a.db_host}", f"StoragePort={a.db_port}", f"StorageUser={a.db_user}",
        f"StorageLoc={a.db_name}", ""])


# ---------------------------------------------------------------------------------------------------------
# Services


def headless_service(spec: ClusterSpec, uid: str, component: str, port: int) -> Manifest:
    """A headless Service whose records exist before pods are ready (Slurm daemons find each other early)."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(spec, f"{spec.name}-{component}", component, uid),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {CLUSTER_LABEL: spec.name, COMPONENT_LABEL: component},
                     "ports": [{"name": component, "port": port, "targetPort": port}]}}


def service(spec: ClusterSpec, uid: str, component: str, port: int) -> Manifest:
    """A headless Service over the ready pods of `component`: its name resolves to their addresses, so
    clients (sacct, slurmctld, REST callers) reach them with or without a kube-proxy on the nodes."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(spec, f"{spec.name}-{component}", component, uid),
            "spec": {"clusterIP": "None",
                     "selector": {CLUSTER_LABEL: spec.name, COMPONENT_LABEL: component},
                     "ports": [{"name": component, "port": port, "targetPort": port}]}}


# ---------------------------------------------------------------------------------------------------------
# slurmctld


def controller_statefulset(spec: ClusterSpec, uid: str) -> Manifest:
    """slurmctld: one replica, state on a volume claim (or the pod's emptyDir), configuration in an emptyDir
    seeded from the ConfigMap by an init container so that the operator can replace it in place."""
    auth_vols, auth_mounts = _auth_volumes(spec)
    state_mount = {"name": "state", "mountPath": "/var/spool/slurmctld"}
    volumes = [_conf_volume(spec), {"name": "etc-slurm", "emptyDir": {}}, *auth_vols]
    claims: list[Manifest] = []
    if spec.persistence.enabled:
        claim_spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                      "resources": {"requests": {"storage": spec.persistence.size}}}
        if spec.persistence.storage_class:
            claim_spec["storageClassName"] = spec.persistence.storage_class
        claims.append({"metadata": {"name": "state"}, "spec": claim_spec})
    else:
        volumes.append({"name": "state", "emptyDir": {}})
    image = spec.images["slurmctld"]
    pod_labels = labels(spec, "slurmctld")
    body: Manifest = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": _meta(spec, f"{spec.name}-slurmctld", "slurmctld", uid),
        "spec": {
            "serviceName": f"{spec.name}-slurmctld", "replicas": 1, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {CLUSTER_LABEL: spec.name, COMPONENT_LABEL: "slurmctld"}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "terminationGracePeriodSeconds": 60,
                    "initContainers": [{
                        "name": "conf", "image": image, "imagePullPolicy": spec.image_pull_policy,
                        "command": ["sh", "-c", "cp -L /etc/slurm-src/* /etc/slurm/"],
                        "volumeMounts": [{"name": "slurm-conf", "mountPath": "/etc/slurm-src"},
                                         {"name": "etc-slurm", "mountPath": "/etc/slurm"}]}],
                    "containers": [{
                        "name": "slurmctld", "image": image, "imagePullPolicy": spec.image_pull_policy,
                        "ports": [{"name": "slurmctld", "containerPort": SLURMCTLD_PORT}],
                        "volumeMounts": [{"name": "etc-slurm", "mountPath": "/etc/slurm"}, state_mount,
                                         *auth_mounts],
                        "readinessProbe": {"exec": {"command": ["sunk-healthcheck", "slurmctld"]},
                                           "periodSeconds": 5, "timeoutSeconds": 10},
                    }],
                    "volumes": volumes,
                },
            },
        },
    }
    if claims:
        body["spec"]["volumeClaimTemplates"] = claims
    return body


# ---------------------------------------------------------------------------------------------------------
# slurmd

SLURMD_SCRIPT = r"""
. /usr/local/lib/sunk/sunk-lib.sh
sunk_start_munged
i=0
while [ "$i" -lt "${SUNK_GPUS:-0}" ]; do
    dev="${SUNK_GPU_PREFIX}${i}"
    if [ ! -e "$dev" ]; then
        install -d -m 0755 "$(dirname "$dev")"
        mknod -m 0666 "$dev" c 195 "$i"
    fi
    i=$((i + 1))
done
install -d -m 0755 /var/spool/slurmd /run/slurm
until scontrol show node "$SLURMD_NODENAME" -o 2>/dev/null | grep -q "^NodeName=$SLURMD_NODENAME "; do
    sunk_log "waiting until slurmctld knows node $SLURMD_NODENAME"
    sleep 3
done
unset SLURM_CONF
sunk_log "slurmd for node $SLURMD_NODENAME, configuration from $SUNK_CONF_SERVER"
exec /usr/sbin/slurmd -D -N "$SLURMD_NODENAME" --conf-server "$SUNK_CONF_SERVER"
"""


def slurmd_pod(spec: ClusterSpec, uid: str, member: Member) -> Manifest:
    """The slurmd pod of one Kubernetes node: pinned to it, hostname = Slurm node name.

    slurmd runs configless (`--conf-server`), so `scontrol reconfigure` hands it new configuration; it starts
    only once slurmctld knows its node, so a node that joins waits instead of crash-looping.
    """
    auth_vols, auth_mounts = _auth_volumes(spec)
    shared_vols, shared_mounts = _shared(spec)
    pool = spec.pool(member.pool)
    meta = _meta(spec, slurmd_pod_name(spec, member.slurm_name), "slurmd", uid,
                 **{POOL_LABEL: member.pool, NODE_LABEL: member.slurm_name})
    env = [
        {"name": "SLURMD_NODENAME", "value": member.slurm_name},
        {"name": "SUNK_GPUS", "value": str(member.node.gpus)},
        {"name": "SUNK_GPU_PREFIX", "value": spec.gpu_device_path},
        {"name": "SUNK_CONF_SERVER", "value": f"{controller_fqdn(spec)}:{SLURMCTLD_PORT}"},
    ]
    container: Manifest = {
        "name": "slurmd", "image": spec.images["slurmd"], "imagePullPolicy": spec.image_pull_policy,
        "command": ["bash", "-c", SLURMD_SCRIPT],
        "env": env,
        "ports": [{"name": "slurmd", "containerPort": SLURMD_PORT}],
        "securityContext": {"privileged": True},
        "volumeMounts": [{"name": "slurm-conf", "mountPath": "/etc/slurm"}, *auth_mounts, *shared_mounts],
        "readinessProbe": {"exec": {"command": ["sunk-healthcheck", "slurmd"]},
                           "periodSeconds": 10, "timeoutSeconds": 10},
    }
    if spec.slurmd_resources.get(pool.name):
        container["resources"] = {k: dict(v) for k, v in spec.slurmd_resources[pool.name].items()}
    volumes = [_conf_volume(spec), *auth_vols, *shared_vols]
    identity: Manifest = {"automountServiceAccountToken": False}
    if pool.mode == "podgroup":
        # The launcher runs in the batch step here; its token is readable by root only (see README).
        identity["serviceAccountName"] = launcher_name(spec)
        volumes.append({"name": "launcher-token", "projected": {"defaultMode": 0o400, "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}})
        container["volumeMounts"].append({"name": "launcher-token", "mountPath": LAUNCHER_TOKEN_DIR,
                                          "readOnly": True})
    pod_spec: Manifest = {
        **identity,
        "nodeName": member.k8s_node,
        "hostname": member.slurm_name,
        "subdomain": f"{spec.name}-slurmd",
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "tolerations": [*spec.tolerations.get(pool.name, ()),
                        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [container],
        "volumes": volumes,
    }
    meta["annotations"] = {SLURM_NODE_ANNOTATION: member.slurm_name, POD_HASH_ANNOTATION: pod_hash(pod_spec)}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}


def pod_hash(pod_spec: Mapping[str, Any]) -> str:
    """A short hash of a pod spec as the operator builds it: a slurmd pod whose annotation differs is stale."""
    return hashlib.sha256(json.dumps(pod_spec, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# login, slurmrestd, slurmdbd, PodDisruptionBudget


def _deployment(spec: ClusterSpec, uid: str, component: str, replicas: int, container: Manifest,
                volumes: list[Manifest]) -> Manifest:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(spec, f"{spec.name}-{component}", component, uid),
        "spec": {"replicas": replicas,
                 "selector": {"matchLabels": {CLUSTER_LABEL: spec.name, COMPONENT_LABEL: component}},
                 "template": {"metadata": {"labels": labels(spec, component)},
                              "spec": {"containers": [container], "volumes": volumes}}},
    }


def login_deployment(spec: ClusterSpec, uid: str) -> Manifest:
    """Login pods: Slurm's client commands, the cluster's shared volumes at the same paths as the jobs."""
    auth_vols, auth_mounts = _auth_volumes(spec)
    shared_vols, shared_mounts = _shared(spec)
    container = {"name": "login", "image": spec.images["login"], "imagePullPolicy": spec.image_pull_policy,
                 "volumeMounts": [{"name": "slurm-conf", "mountPath": "/etc/slurm"}, *auth_mounts, *shared_mounts],
                 "readinessProbe": {"exec": {"command": ["sunk-healthcheck", "login"]}, "periodSeconds": 10,
                                    "timeoutSeconds": 10}}
    return _deployment(spec, uid, "login", spec.login_replicas, container,
                       [_conf_volume(spec), *auth_vols, *shared_vols])


def restapi_deployment(spec: ClusterSpec, uid: str) -> Manifest:
    """slurmrestd with JWT authentication on port 6820."""
    auth_vols, auth_mounts = _auth_volumes(spec)
    container = {"name": "slurmrestd", "image": spec.images["slurmrestd"],
                 "imagePullPolicy": spec.image_pull_policy,
                 "env": [{"name": "SLURMRESTD_PORT", "value": str(RESTD_PORT)}],
                 "ports": [{"name": "slurmrestd", "containerPort": RESTD_PORT}],
                 "volumeMounts": [{"name": "slurm-conf", "mountPath": "/etc/slurm"}, *auth_mounts],
                 "readinessProbe": {"exec": {"command": ["sunk-healthcheck", "slurmrestd"]}, "periodSeconds": 10}}
    return _deployment(spec, uid, "restapi", spec.restapi_replicas, container, [_conf_volume(spec), *auth_vols])


def slurmdbd_deployment(spec: ClusterSpec, uid: str) -> Manifest:
    """slurmdbd against the MariaDB named in spec.accounting; the password comes from its Secret."""
    auth_vols, auth_mounts = _auth_volumes(spec)
    a = spec.accounting
    container = {"name": "slurmdbd", "image": spec.images["slurmdbd"], "imagePullPolicy": spec.image_pull_policy,
                 "ports": [{"name": "slurmdbd", "containerPort": SLURMDBD_PORT}],
                 "volumeMounts": [{"name": "slurm-conf", "mountPath": "/etc/slurm"},
                                  {"name": "dbd-pass", "mountPath": "/etc/slurmdbd-secret", "readOnly": True},
                                  *auth_mounts],
                 "readinessProbe": {"exec": {"command": ["sunk-healthcheck", "slurmdbd"]}, "periodSeconds": 10}}
    volumes = [_conf_volume(spec), *auth_vols,
               {"name": "dbd-pass", "secret": {"secretName": a.password_secret,
                                               "items": [{"key": a.password_key, "path": "storage-pass"}]}}]
    return _deployment(spec, uid, "slurmdbd", 1, container, volumes)


def busy_pdb(spec: ClusterSpec, uid: str, busy: int = 0) -> Manifest:
    """No voluntary eviction of slurmd pods whose Slurm node runs jobs (the operator labels them busy).

    The pods are owned by the SlurmCluster, which has no scale subresource, so Kubernetes accepts only an
    integer minAvailable here: it is the number of busy pods, which leaves no eviction allowed among them.
    """
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _meta(spec, f"{spec.name}-busy", "slurmd", uid),
            "spec": {"minAvailable": busy,
                     "selector": {"matchLabels": {CLUSTER_LABEL: spec.name, COMPONENT_LABEL: "slurmd",
                                                  BUSY_LABEL: "true"}}}}


# ---------------------------------------------------------------------------------------------------------
# The job bridge of podgroup pools: the launcher's identity, the SlurmJob controller


def launcher_name(spec: ClusterSpec) -> str:
    """ServiceAccount (and RoleBinding) of the launcher in podgroup slurmd pods."""
    return f"{spec.name}-launcher"


def jobs_name(spec: ClusterSpec) -> str:
    """ServiceAccount, RoleBinding and Deployment of the SlurmJob controller."""
    return f"{spec.name}-jobs"


def jobs_nodes_binding_name(cluster_uid: str) -> str:
    """The node-reading ClusterRoleBinding, named by the SlurmCluster's uid: unique across namespaces."""
    return f"{JOBS_NODES_CLUSTER_ROLE}-{cluster_uid}"


def _service_account(spec: ClusterSpec, uid: str, name: str, component: str) -> Manifest:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "automountServiceAccountToken": False,
            "metadata": _meta(spec, name, component, uid)}


def _role_binding(spec: ClusterSpec, uid: str, name: str, component: str, cluster_role: str) -> Manifest:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": _meta(spec, name, component, uid),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": spec.namespace}]}


def bridge_identities(spec: ClusterSpec, uid: str) -> list[Manifest]:
    """The launcher's and the SlurmJob controller's ServiceAccounts, bound in the cluster's namespace only."""
    return [_service_account(spec, uid, launcher_name(spec), "launcher"),
            _role_binding(spec, uid, launcher_name(spec), "launcher", LAUNCHER_CLUSTER_ROLE),
            _service_account(spec, uid, jobs_name(spec), "jobs"),
            _role_binding(spec, uid, jobs_name(spec), "jobs", JOBS_CLUSTER_ROLE)]


def jobs_nodes_binding(spec: ClusterSpec, uid: str) -> Manifest:
    """The controller's one cluster-wide right, reading nodes. Cluster-scoped, so it cannot be owned by the
    SlurmCluster: the operator deletes it when the cluster goes (labels name the cluster)."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": jobs_nodes_binding_name(uid),
                         "labels": {**labels(spec, "jobs"), f"{DOMAIN}/namespace": spec.namespace}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": JOBS_NODES_CLUSTER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": jobs_name(spec), "namespace": spec.namespace}]}


def _job_volume(name: str, mount_path: str, source: Mapping[str, Any]) -> JobVolume:
    """A shared volume of the cluster as job pods mount it (a hostPath or persistentVolumeClaim source)."""
    if "persistentVolumeClaim" in source:
        return JobVolume(name, mount_path, claim=source["persistentVolumeClaim"]["claimName"])
    return JobVolume(name, mount_path, host_path=source["hostPath"]["path"])


def jobs_controller_deployment(spec: ClusterSpec, uid: str) -> Manifest:
    """The SlurmJob controller of this cluster's podgroup pools, under its own ServiceAccount, not as root."""
    args = ["bridge", "controller", "--in-cluster", "--namespace", spec.namespace,
            "--image-pull-policy", spec.image_pull_policy, "--ready-file", JOBS_READY_FILE]
    for vol in spec.shared_volumes:
        args += ["--shared-volume", _job_volume(f"shared-{vol.name}", vol.mount_path, vol.source).argument()]
    container: Manifest = {
        "name": "controller", "image": spec.images["controller"], "imagePullPolicy": spec.image_pull_policy,
        "args": args,
        "volumeMounts": [{"name": "run", "mountPath": posixpath.dirname(JOBS_READY_FILE)}],
        "readinessProbe": {"exec": {"command": ["test", "-e", JOBS_READY_FILE]}, "periodSeconds": 5},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "512Mi"}}}
    if spec.api_server != DEFAULT_API_SERVER:  # in-cluster configuration reads the API's address from these
        host, _, port = spec.api_server.removeprefix("https://").partition(":")
        container["env"] = [{"name": "KUBERNETES_SERVICE_HOST", "value": host},
                            {"name": "KUBERNETES_SERVICE_PORT", "value": port or "443"}]
    body = _deployment(spec, uid, "jobs", 1, container, [{"name": "run", "emptyDir": {"medium": "Memory"}}])
    body["spec"]["template"]["spec"].update({
        "serviceAccountName": jobs_name(spec), "automountServiceAccountToken": True,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}}})
    return body
