"""Pure decisions of the syncer: what Slurm should hold for a Kubernetes node, and what Kubernetes should show
for a Slurm node. No I/O here; the watch loop (`sunkbridge.syncer.loop`) applies the results.

Reason ownership: the syncer only ever clears a drain or down whose reason starts with `REASON_PREFIX`
(`sunk:`). Any other reason belongs to an admin (or to Slurm) and is left alone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sunkbridge.cluster import DOMAIN, REASON_PREFIX, NodePool
from sunkbridge.slurm.client import NewNode, SlurmNode

#: Taint, annotations and condition the syncer puts on a Kubernetes node drained in Slurm by someone else.
TAINT_KEY = f"{DOMAIN}/slurm-drain"
STATE_ANNOTATION = f"{DOMAIN}/slurm-state"
REASON_ANNOTATION = f"{DOMAIN}/slurm-reason"
SLURM_NAME_ANNOTATION = f"{DOMAIN}/slurm-node"
CONDITION_TYPE = f"{DOMAIN}/SlurmDrain"
#: Slurm feature every node the syncer creates carries, followed by the pool: `sunkpool_<pool>`.
POOL_FEATURE_PREFIX = "sunkpool_"

#: Node conditions that drain by default (node-problem-detector style GPU checks), as type -> bad status.
DEFAULT_BAD_CONDITIONS: Mapping[str, str] = {"GPUProblem": "True", "GpuUnhealthy": "True",
                                             "NVIDIAGPUUnhealthy": "True"}

Action = Literal["none", "drain", "down", "resume"]
_MAX_REASON = 180


# ---------------------------------------------------------------------------------------------------------
# Kubernetes node, read from the API's JSON


@dataclass(frozen=True)
class Condition:
    status: str
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class K8sNode:
    """The parts of a Kubernetes Node the syncer reads."""

    name: str
    uid: str = ""
    resource_version: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    deleting: bool = False
    conditions: Mapping[str, Condition] = field(default_factory=dict)
    allocatable: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Mapping[str, Any], ...] = ()

    @property
    def ready(self) -> bool | None:
        """The Ready condition: True, False, or None while unknown/absent."""
        cond = self.conditions.get("Ready")
        if cond is None or cond.status == "Unknown":
            return None
        return cond.status == "True"

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> K8sNode:
        """Read a Node object as the API serves it (a dict from JSON)."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        conditions = {c["type"]: Condition(str(c.get("status", "")), str(c.get("reason") or ""),
                                           str(c.get("message") or ""))
                      for c in status.get("conditions") or [] if c.get("type")}
        return cls(
            name=str(meta["name"]), uid=str(meta.get("uid") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            labels=dict(meta.get("labels") or {}), annotations=dict(meta.get("annotations") or {}),
            unschedulable=bool(spec.get("unschedulable")), deleting=bool(meta.get("deletionTimestamp")),
            conditions=conditions, allocatable={k: str(v) for k, v in (status.get("allocatable") or {}).items()},
            taints=tuple(spec.get("taints") or ()),
        )


# ---------------------------------------------------------------------------------------------------------
# Names and quantities


_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def slurm_node_name(k8s_name: str) -> str:
    """The Slurm node name of a Kubernetes node: the same name where Slurm takes it as is.

    Dots (FQDN-style names) become `-` (Slurm would take the name as a resolvable host and hostlists
    split on them badly); names over 63 characters are cut and given a hash suffix.
    """
    name = re.sub(r"[^a-z0-9-]", "-", k8s_name.lower()).strip("-") or "node"
    if len(name) > 63:
        digest = hashlib.sha1(k8s_name.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{digest}"
    return name


def valid_k8s_node_name(name: str) -> bool:
    """True when `name` can name a Kubernetes Node (RFC 1123 subdomain)."""
    return len(name) <= 253 and bool(_K8S_NAME.match(name))


def cpu_count(quantity: str) -> int:
    """Whole CPUs of a Kubernetes CPU quantity (`96`, `95500m`), rounded down, at least 1."""
    text = quantity.strip()
    value = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return max(1, int(value))


_MEM_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
              "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "m": 10**-3}


def memory_mb(quantity: str) -> int:
    """MiB of a Kubernetes memory quantity (`1024Gi`, `16G`, `17179869184`), rounded down."""
    match = re.fullmatch(r"([0-9.]+(?:[eE][-+]?[0-9]+)?)([A-Za-z]{0,2})", quantity.strip())
    if not match or (match.group(2) and match.group(2) not in _MEM_UNITS):
        raise ValueError(f"memory quantity {quantity!r} is not a Kubernetes quantity")
    value = float(match.group(1)) * _MEM_UNITS.get(match.group(2), 1)
    return int(value // 2**20)


_GPU_MODEL = re.compile(r"^(?:[a-z]{1,4}\d{1,4}[a-z]{0,3}|[a-z]\d{1,2}[a-z]?)$")
_GPU_VENDOR = {"nvidia", "tesla", "geforce", "quadro", "amd", "instinct", "radeon", "rtx", "gtx", "sxm",
               "pcie", "nvl", "hbm", "hbm3", "hbm2", "hbm2e", "hbm3e", "mig"}


def gpu_type(product: str) -> str:
    """A Slurm-safe GPU type from a GPU-product label: `NVIDIA-H100-80GB-HBM3` -> `h100`.

    The first word that looks like a model (letters then digits, e.g. H100, A100, L40S, GH200, V100, T4)
    is taken, lower case; memory sizes (`80GB`) and form factors (`SXM4`) are skipped. Raises ValueError
    with the label value when no model is found.
    """
    words = [w for w in re.split(r"[^a-z0-9]+", product.lower()) if w]
    for word in words:
        if word in _GPU_VENDOR or re.fullmatch(r"\d+(gb|g|tb)", word) or word.startswith(("sxm", "pcie", "hbm")):
            continue
        if _GPU_MODEL.match(word):
            return word
    raise ValueError(f"GPU product {product!r} names no GPU model (expected e.g. NVIDIA-H100-80GB-HBM3)")


def feature_value(text: str) -> str:
    """A label value as a Slurm feature: letters, digits and `_` only."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_")


def pool_feature(pool: str) -> str:
    """The feature that marks a node as created by the syncer for `pool`."""
    return POOL_FEATURE_PREFIX + feature_value(pool)


# ---------------------------------------------------------------------------------------------------------
# Pools


@dataclass(frozen=True)
class PoolChoice:
    """Which pool a node belongs to, or why it belongs to none."""

    pool: NodePool | None
    problem: str = ""


def choose_pool(node: K8sNode, pools: Sequence[NodePool]) -> PoolChoice:
    """The one pool whose selector matches the node; two matching pools claim it for neither."""
    matching = [p for p in pools if p.matches(node.labels)]
    if len(matching) > 1:
        names = ", ".join(p.name for p in matching)
        return PoolChoice(None, f"node {node.name} is claimed by pools {names}; it joins none of them until "
                                "their selectors are made disjoint")
    return PoolChoice(matching[0] if matching else None)


@dataclass(frozen=True)
class DesiredNode:
    """What Slurm should hold for one Kubernetes node of a pool."""

    k8s_name: str
    slurm_name: str
    pool: str
    partition: str
    cpus: int
    memory_mb: int
    gres: str
    features: tuple[str, ...]
    switch: str | None
    problems: tuple[str, ...] = ()

    def new_node(self) -> NewNode:
        return NewNode(self.slurm_name, self.cpus, self.memory_mb, self.gres, self.features)


def desired_node(node: K8sNode, pool: NodePool) -> DesiredNode:
    """CPUs, memory, GPU gres, features and switch of `node` in `pool`; bad labels are reported in `problems`.

    A node with a malformed GPU-product label still joins, with an untyped `gpu:N` gres.
    """
    problems: list[str] = []
    cpus = memory = 0
    try:
        cpus = cpu_count(node.allocatable.get("cpu", "1"))
    except ValueError:
        problems.append(f"allocatable cpu {node.allocatable.get('cpu')!r} is not a quantity; using 1")
        cpus = 1
    try:
        memory = memory_mb(node.allocatable.get("memory", "1Mi"))
    except ValueError as exc:
        problems.append(f"{exc}; using 1 MiB")
        memory = 1
    gres = ""
    features = [pool_feature(pool.name)]
    raw_gpus = node.allocatable.get(pool.gpu_resource, "0")
    gpus = int(raw_gpus) if raw_gpus.isdigit() else 0
    if not raw_gpus.isdigit():
        problems.append(f"allocatable {pool.gpu_resource} {raw_gpus!r} is not a count; no GPUs registered")
    if gpus:
        product = node.labels.get(pool.gpu_product_label)
        kind = ""
        if product is None:
            problems.append(f"label {pool.gpu_product_label} is missing; GPUs registered without a type")
        else:
            try:
                kind = gpu_type(product)
            except ValueError as exc:
                problems.append(f"label {pool.gpu_product_label}: {exc}; GPUs registered without a type")
        gres = f"gpu:{kind}:{gpus}" if kind else f"gpu:{gpus}"
        if kind:
            features.append(kind)
    for label in pool.feature_labels:
        value = node.labels.get(label)
        if value:
            feature = feature_value(value)
            if feature and feature not in features:
                features.append(feature)
    switch = None
    if pool.topology_label and node.labels.get(pool.topology_label):
        switch = feature_value(node.labels[pool.topology_label])
    return DesiredNode(node.name, slurm_node_name(node.name), pool.name, pool.partition_name, cpus, memory,
                       gres, tuple(features), switch, tuple(problems))


def node_pool_of(slurm: SlurmNode) -> str | None:
    """The pool feature the syncer put on a node it created (None for nodes it does not manage)."""
    for feature in slurm.features:
        if feature.startswith(POOL_FEATURE_PREFIX):
            return feature[len(POOL_FEATURE_PREFIX):]
    return None


# ---------------------------------------------------------------------------------------------------------
# Kubernetes -> Slurm


@dataclass(frozen=True)
class Cause:
    """Why Slurm should not schedule on a node: the state to set and its `sunk:` reason."""

    state: Literal["drain", "down"]
    reason: str


def owned(reason: str) -> bool:
    """True when the syncer set this reason (it starts with `sunk:`)."""
    return reason.startswith(REASON_PREFIX)


def _reason(text: str) -> str:
    one_line = " ".join(text.split())
    full = f"{REASON_PREFIX} {one_line}"
    return full if len(full) <= _MAX_REASON else full[:_MAX_REASON - 3] + "..."


def k8s_cause(node: K8sNode | None, in_pool: bool, bad_conditions: Mapping[str, str] = DEFAULT_BAD_CONDITIONS,
              left_pool: str | None = None) -> Cause | None:
    """The cause that keeps Slurm off the node, most severe first; None when the node is fit.

    Deleted (or being deleted) and NotReady give DOWN; a configured bad condition, a cordon and leaving
    the pool give DRAIN.
    """
    if node is None or node.deleting:
        return Cause("down", _reason("node deleted from Kubernetes"))
    if node.ready is False:
        ready = node.conditions["Ready"]
        detail = f" ({ready.reason})" if ready.reason else ""
        return Cause("down", _reason(f"node NotReady in Kubernetes{detail}"))
    for ctype in sorted(bad_conditions):
        cond = node.conditions.get(ctype)
        if cond is not None and cond.status == bad_conditions[ctype]:
            detail = f": {cond.reason or cond.message}" if (cond.reason or cond.message) else ""
            return Cause("drain", _reason(f"condition {ctype}={cond.status}{detail}"))
    if node.unschedulable:
        return Cause("drain", _reason("node cordoned in Kubernetes"))
    if not in_pool:
        return Cause("drain", _reason(f"node left pool {left_pool}" if left_pool else "node left its pool"))
    return None


@dataclass(frozen=True)
class SlurmAction:
    """One state change for one Slurm node (`none` when nothing is to be done)."""

    action: Action
    reason: str = ""
    note: str = ""


def slurm_action(slurm: SlurmNode, cause: Cause | None) -> SlurmAction:
    """The state change that brings `slurm` in line with `cause`, respecting reason ownership.

    - A drain or down whose reason is not the syncer's is an admin's: never changed, never cleared.
    - With a cause: set it (or update the syncer's own reason if the cause changed).
    - Without a cause: resume only a drain/down whose reason is the syncer's.
    A `sunk:` drain removed by hand while its cause remains is put back, because the cause is seen again.
    """
    held = slurm.drained or slurm.down
    if held and slurm.reason and not owned(slurm.reason):
        note = f"admin reason {slurm.reason!r} kept" + (f"; cause pending: {cause.reason}" if cause else "")
        return SlurmAction("none", note=note)
    if cause is None:
        if held and owned(slurm.reason):
            return SlurmAction("resume")
        return SlurmAction("none")
    current = "down" if slurm.down else ("drain" if slurm.drained else None)
    if current == cause.state and slurm.reason == cause.reason:
        return SlurmAction("none")
    return SlurmAction(cause.state, cause.reason)


# ---------------------------------------------------------------------------------------------------------
# Slurm -> Kubernetes


@dataclass(frozen=True)
class Marking:
    """What a Kubernetes node shows when Slurm holds it for someone else's reason."""

    state: Literal["drain", "down"]
    reason: str
    user: str = ""

    @property
    def annotations(self) -> dict[str, str]:
        return {STATE_ANNOTATION: self.state.upper(), REASON_ANNOTATION: self.reason}

    @property
    def taint(self) -> dict[str, str]:
        return {"key": TAINT_KEY, "value": self.state, "effect": "NoSchedule"}


def k8s_marking(slurm: SlurmNode | None) -> Marking | None:
    """The marking for a node drained or down in Slurm by someone other than the syncer; else None."""
    if slurm is None or not (slurm.drained or slurm.down):
        return None
    if owned(slurm.reason):
        return None
    reason = slurm.reason or ("Not responding" if "NOT_RESPONDING" in slurm.flags else "no reason given")
    return Marking("down" if slurm.down else "drain", reason, slurm.reason_user)


def marking_shown(node: K8sNode) -> Marking | None:
    """The marking a Kubernetes node carries now (read back from its annotations)."""
    state = node.annotations.get(STATE_ANNOTATION)
    if state not in ("DRAIN", "DOWN"):
        return None
    has_taint = any(t.get("key") == TAINT_KEY for t in node.taints)
    cond = node.conditions.get(CONDITION_TYPE)
    if not has_taint or cond is None or cond.status != "True":
        return None
    return Marking("down" if state == "DOWN" else "drain", node.annotations.get(REASON_ANNOTATION, ""),
                   cond.reason if cond.reason != "SlurmDrain" else "")


def marking_matches(node: K8sNode, want: Marking | None) -> bool:
    """True when the node shows exactly `want` (or nothing at all when `want` is None)."""
    shown = marking_shown(node)
    if want is None:
        leftovers = STATE_ANNOTATION in node.annotations or CONDITION_TYPE in node.conditions or \
            any(t.get("key") == TAINT_KEY for t in node.taints)
        return not leftovers
    return shown is not None and shown.state == want.state and shown.reason == want.reason


# ---------------------------------------------------------------------------------------------------------
# Topology


def render_topology(switches: Mapping[str, Iterable[str]]) -> str:
    """topology.conf for the tree plugin: one leaf switch per rack/NVLink domain and one root over them."""
    from sunkbridge.sbatch.hostlist import compress_hostlist

    lines = []
    leaves = sorted(s for s, nodes in switches.items() if list(nodes))
    for switch in leaves:
        lines.append(f"SwitchName={switch} Nodes={compress_hostlist(sorted(switches[switch]))}")
    if leaves:
        lines.append(f"SwitchName=root Switches={','.join(leaves)}")
    return "\n".join(lines) + ("\n" if lines else "")
