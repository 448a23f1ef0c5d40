"""The SlurmCluster custom resource as typed data: parsing, defaults and the checks the schema cannot do."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sunkbridge.cluster import DOMAIN, NodePool

GROUP = DOMAIN
VERSION = "v1alpha1"
PLURAL = "slurmclusters"
KIND = "SlurmCluster"
JOB_PLURAL = "slurmjobs"

DEFAULT_SLURM_LINE = "22.05"
DEFAULT_LAUNCHER = "/usr/local/libexec/sunk/launcher"
DEFAULT_API_SERVER = "https://kubernetes.default.svc"
IMAGE_ROLES = ("slurmctld", "slurmd", "login", "slurmrestd", "slurmdbd", "controller")

# slurm.conf keys the operator owns: an override of one of these would break the pods' wiring.
MANAGED_KEYS = frozenset(k.lower() for k in (
    "ClusterName", "SlurmctldHost", "ControlMachine", "SlurmctldPort", "SlurmdPort", "NodeName", "PartitionName",
    "NodeSet", "StateSaveLocation", "SlurmdSpoolDir", "SlurmctldPidFile", "SlurmdPidFile", "AuthType",
    "CredType", "AuthAltTypes", "AuthAltParameters", "SlurmUser", "SlurmdUser", "AccountingStorageHost",
    "AccountingStorageType", "JobSubmitPlugins", "TopologyPlugin", "GresTypes", "Include",
    "SlurmctldParameters",
))
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_IMAGE = re.compile(r"^[a-z0-9][A-Za-z0-9/._:@+-]*$")
_PATH = re.compile(r"^/[A-Za-z0-9/._-]+$")


class SpecError(ValueError):
    """A SlurmCluster spec the operator cannot use; the message names the field and the fix."""

    def __init__(self, field_path: str, problem: str, fix: str = "") -> None:
        self.field_path = field_path
        super().__init__(f"{field_path}: {problem}" + (f"; {fix}" if fix else ""))


@dataclass(frozen=True)
class Persistence:
    """Where slurmctld keeps StateSaveLocation: a PersistentVolumeClaim, or the pod's emptyDir."""

    enabled: bool = True
    storage_class: str | None = None
    size: str = "1Gi"


@dataclass(frozen=True)
class Accounting:
    """slurmdbd and the MariaDB it talks to."""

    enabled: bool = False
    db_host: str = ""
    db_port: int = 3306
    db_name: str = "slurm_acct_db"
    db_user: str = "slurm"
    password_secret: str = ""
    password_key: str = "password"


@dataclass(frozen=True)
class SharedVolume:
    """A volume mounted at the same path in login, slurmd and job pods."""

    name: str
    mount_path: str
    source: Mapping[str, Any]


@dataclass(frozen=True)
class ClusterSpec:
    """One SlurmCluster, as the operator uses it."""

    name: str
    namespace: str
    cluster_name: str
    pools: tuple[NodePool, ...]
    images: Mapping[str, str]
    image_pull_policy: str = "IfNotPresent"
    munge_secret: str | None = None
    persistence: Persistence = field(default_factory=Persistence)
    login_replicas: int = 1
    restapi_replicas: int = 0
    accounting: Accounting = field(default_factory=Accounting)
    overrides: Mapping[str, str] = field(default_factory=dict)
    launcher_path: str = DEFAULT_LAUNCHER
    api_server: str = DEFAULT_API_SERVER
    gpu_device_path: str = "/dev/nvidia"
    shared_volumes: tuple[SharedVolume, ...] = ()
    default_pool: str | None = None
    tolerations: Mapping[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    slurmd_resources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def munge_secret_name(self) -> str:
        """The Secret holding `munge.key` (created by the operator unless the spec names one)."""
        return self.munge_secret or f"{self.name}-munge"

    @property
    def jwt_secret_name(self) -> str:
        return f"{self.name}-jwt"

    @property
    def podgroup_pools(self) -> tuple[NodePool, ...]:
        """Pools whose jobs run as pod groups (the cluster then runs the job bridge)."""
        return tuple(p for p in self.pools if p.mode == "podgroup")

    def pool(self, name: str) -> NodePool:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(name)


def default_images(line: str = DEFAULT_SLURM_LINE) -> dict[str, str]:
    """The locally built images of one Slurm line (`local/sunk-<role>:<line>`)."""
    return {role: f"local/sunk-{role}:{line}" for role in IMAGE_ROLES}


def _str_map(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(path, "must be a map of strings")
    return {str(k): str(v) for k, v in value.items()}


def _resources(value: Any, path: str) -> dict[str, Any]:
    """Container requests/limits as Kubernetes takes them; quantities stay strings."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or set(value) - {"requests", "limits"}:
        raise SpecError(path, "must hold only `requests` and `limits`", "e.g. {requests: {cpu: 100m}}")
    return {kind: _str_map(value[kind], f"{path}.{kind}") for kind in ("requests", "limits") if value.get(kind)}


def check_overrides(overrides: Mapping[str, str], path: str = "spec.slurmConf.overrides") -> None:
    """Reject overrides of keys the operator manages and values that cannot be one slurm.conf line."""
    for key, value in overrides.items():
        if not _KEY.match(key):
            raise SpecError(f"{path}.{key}", "is not a slurm.conf parameter name (letters and digits)")
        if key.lower() in MANAGED_KEYS:
            raise SpecError(f"{path}.{key}", "is set by the operator from the SlurmCluster",
                            "use the matching spec field (pools, accounting, ...) instead")
        if "\n" in value or "\r" in value:
            raise SpecError(f"{path}.{key}", "value spans several lines", "give one line")


def parse_cluster(body: Mapping[str, Any]) -> ClusterSpec:
    """The typed spec of a SlurmCluster object (as the API returns it, schema defaults applied)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    name = str(meta.get("name", ""))
    namespace = str(meta.get("namespace") or "default")
    pools: list[NodePool] = []
    tolerations: dict[str, tuple[dict[str, Any], ...]] = {}
    resources: dict[str, dict[str, Any]] = {}
    default_pool: str | None = None
    seen: set[str] = set()
    for i, raw in enumerate(spec.get("pools") or []):
        path = f"spec.pools[{i}]"
        try:
            pool = NodePool(
                name=str(raw.get("name", "")),
                selector=_str_map(raw.get("nodeSelector"), f"{path}.nodeSelector"),
                mode=raw.get("mode", "slurmd"),
                partition=raw.get("partition"),
                gpu_resource=raw.get("gpuResource", "nvidia.com/gpu"),
                gpu_product_label=raw.get("gpuProductLabel", "nvidia.com/gpu.product"),
                feature_labels=tuple(raw.get("featureLabels") or ()),
                topology_label=raw.get("topologyLabel"),
                default_image=raw.get("image"),
                partition_options=_str_map(raw.get("partitionOptions"), f"{path}.partitionOptions"),
            )
        except ValueError as exc:
            raise SpecError(path, str(exc)) from exc
        if pool.partition_name in seen:
            raise SpecError(f"{path}.partition", f"partition {pool.partition_name!r} is used by two pools",
                            "give each pool its own partition")
        seen.add(pool.partition_name)
        check_overrides(pool.partition_options, f"{path}.partitionOptions")
        if pool.default_image and not _IMAGE.match(pool.default_image):
            raise SpecError(f"{path}.image", f"{pool.default_image!r} is not an image reference",
                            "give e.g. registry.example/team/train:1.0")
        if raw.get("default"):
            if default_pool is not None:
                raise SpecError(f"{path}.default", f"pool {default_pool!r} is already the default")
            default_pool = pool.name
        tolerations[pool.name] = tuple(raw.get("tolerations") or ())
        resources[pool.name] = _resources(raw.get("slurmdResources"), f"{path}.slurmdResources")
        pools.append(pool)
    if not pools:
        raise SpecError("spec.pools", "needs at least one pool")
    images = default_images(str(spec.get("slurmVersion") or DEFAULT_SLURM_LINE))
    images.update(_str_map(spec.get("images"), "spec.images"))
    ctl = spec.get("controller") or {}
    pers = ctl.get("persistence") or {}
    login = spec.get("login") or {}
    rest = spec.get("restapi") or {}
    acct = spec.get("accounting") or {}
    db = acct.get("database") or {}
    accounting = Accounting(
        enabled=bool(acct.get("enabled", False)),
        db_host=str(db.get("host", "")),
        db_port=int(db.get("port", 3306)),
        db_name=str(db.get("name", "slurm_acct_db")),
        db_user=str(db.get("user", "slurm")),
        password_secret=str((db.get("passwordSecretRef") or {}).get("name", "")),
        password_key=str((db.get("passwordSecretRef") or {}).get("key", "password")),
    )
    if accounting.enabled and not (accounting.db_host and accounting.password_secret):
        raise SpecError("spec.accounting.database", "accounting is on but the database host or "
                        "passwordSecretRef is missing", "name the MariaDB service and its password Secret")
    podgroup = spec.get("podgroup") or {}
    launcher_path = str(podgroup.get("launcherPath", DEFAULT_LAUNCHER))
    if not _PATH.match(launcher_path):
        raise SpecError("spec.podgroup.launcherPath", f"{launcher_path!r} is not an absolute path job_submit.lua "
                        "can run", "use letters, digits and / . _ - only, e.g. /usr/local/libexec/sunk/launcher")
    overrides = _str_map((spec.get("slurmConf") or {}).get("overrides"), "spec.slurmConf.overrides")
    check_overrides(overrides)
    shared = tuple(
        SharedVolume(str(v["name"]), str(v["mountPath"]), dict(v.get("source") or {}))
        for v in spec.get("sharedVolumes") or ())
    if any(p.mode == "podgroup" for p in pools):
        for i, vol in enumerate(shared):
            if set(vol.source) - {"hostPath", "persistentVolumeClaim"} or len(vol.source) != 1:
                raise SpecError(f"spec.sharedVolumes[{i}].source", "pod-group jobs mount shared volumes from a "
                                "hostPath or a persistentVolumeClaim only", "use one of those two sources")
    return ClusterSpec(
        name=name,
        namespace=namespace,
        cluster_name=str(spec.get("clusterName") or name),
        pools=tuple(pools),
        images=images,
        image_pull_policy=str(spec.get("imagePullPolicy", "IfNotPresent")),
        munge_secret=(spec.get("munge") or {}).get("secretName"),
        persistence=Persistence(enabled=bool(pers.get("enabled", True)),
                                storage_class=pers.get("storageClassName"), size=str(pers.get("size", "1Gi"))),
        login_replicas=int(login.get("replicas", 1)) if login.get("enabled", True) else 0,
        restapi_replicas=int(rest.get("replicas", 1)) if rest.get("enabled", False) else 0,
        accounting=accounting,
        overrides=overrides,
        launcher_path=launcher_path,
        api_server=str(podgroup.get("apiServer", DEFAULT_API_SERVER)),
        gpu_device_path=str(spec.get("gpuDevicePath", "/dev/nvidia")),
        shared_volumes=shared,
        default_pool=default_pool or pools[0].name,
        tolerations=tolerations,
        slurmd_resources=resources,
    )
