"""Render a cluster's Slurm configuration (slurm.conf, gres.conf, cgroup.conf, topology.conf, job_submit.lua).

Pure functions of typed data: `ConfInputs` says what the cluster is (controller, nodes, partitions,
options); `render_all` returns file name → text. Nodes with identical hardware are written as one
`NodeName=` line over a compressed host list, so 1000 identical nodes take one line. Node addresses are
not written: pods resolve node names through a DNS search domain of the slurmd Service.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from itertools import groupby

import jinja2

from sunkbridge.sbatch.hostlist import compress_hostlist, expand_hostlist


@dataclass(frozen=True)
class SlurmNode:
    """One Slurm node: what slurm.conf and gres.conf say about it."""

    name: str
    partition: str
    cpus: int
    memory_mb: int
    gpus: int = 0
    gpu_type: str | None = None
    features: tuple[str, ...] = ()
    switch: str | None = None
    addr: str | None = None

    @property
    def gres(self) -> str | None:
        if not self.gpus:
            return None
        return f"gpu:{self.gpu_type}:{self.gpus}" if self.gpu_type else f"gpu:{self.gpus}"

    def hardware(self) -> tuple[int, int, int, str | None, tuple[str, ...]]:
        return (self.cpus, self.memory_mb, self.gpus, self.gpu_type, self.features)


@dataclass(frozen=True)
class Partition:
    """One partition (one pool): its nodes and extra `Key=Value` options."""

    name: str
    default: bool = False
    options: Mapping[str, str] = field(default_factory=dict)
    podgroup: bool = False


@dataclass(frozen=True)
class ConfPaths:
    """Paths and addresses in the daemons' world; the defaults are the pods' layout."""

    controller_host: str = "slurmctld-0"
    controller_addr: str | None = None
    slurmctld_port: int = 6817
    slurmd_port: int = 6818
    slurm_user: str = "slurm"
    state_save: str = "/var/spool/slurmctld"
    slurmd_spool: str = "/var/spool/slurmd"
    run_dir: str = "/run/slurm"
    log_dir: str | None = None
    auth_info: str | None = None
    jwt_key: str | None = "/var/lib/slurm/jwt_hs256.key"
    gpu_device_path: str = "/dev/nvidia"


@dataclass(frozen=True)
class ConfInputs:
    """Everything the rendered configuration depends on."""

    cluster_name: str
    nodes: tuple[SlurmNode, ...]
    partitions: tuple[Partition, ...]
    paths: ConfPaths = field(default_factory=ConfPaths)
    overrides: Mapping[str, str] = field(default_factory=dict)
    accounting_host: str | None = None
    launcher_path: str = "/usr/local/libexec/sunk/launcher"
    configless: bool = True


@dataclass(frozen=True)
class NodeGroup:
    """Nodes of one partition with the same hardware, written as one line."""

    hostlist: str
    sample: SlurmNode
    count: int
    addrs: str | None = None


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("sunkbridge.slurm", "templates"),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=True, lstrip_blocks=True, autoescape=False)


def _natural(name: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part)


def _hostlist(names: Iterable[str]) -> str:
    return compress_hostlist(sorted(names, key=_natural))


def node_groups(nodes: Iterable[SlurmNode]) -> list[NodeGroup]:
    """Group nodes by partition and hardware; each group becomes one `NodeName=` line."""
    def key(n: SlurmNode) -> tuple[str, tuple[int, int, int, str | None, tuple[str, ...]]]:
        return (n.partition, n.hardware())

    groups = []
    for _, members in groupby(sorted(nodes, key=lambda n: (key(n), n.name)), key=key):
        items = list(members)
        hostlist = _hostlist(n.name for n in items)
        addrs = None
        if any(n.addr for n in items):
            # NodeAddr lists the addresses in the order the NodeName host list expands to.
            by_name = {n.name: n.addr or n.name for n in items}
            addrs = ",".join(by_name[name] for name in expand_hostlist(hostlist))
        groups.append(NodeGroup(hostlist, items[0], len(items), addrs))
    return groups


def _device_files(prefix: str, count: int) -> str:
    return f"{prefix}0" if count == 1 else f"{prefix}[0-{count - 1}]"


def render_slurm_conf(inputs: ConfInputs) -> str:
    """slurm.conf: fixed daemon wiring, the overrides, one line per node group, one per partition."""
    groups = node_groups(inputs.nodes)
    by_partition: dict[str, list[str]] = {}
    for node in inputs.nodes:
        by_partition.setdefault(node.partition, []).append(node.name)
    return _env().get_template("slurm.conf.j2").render(
        i=inputs, p=inputs.paths, groups=groups,
        partition_nodes={k: _hostlist(v) for k, v in by_partition.items()},
        gpus=any(n.gpus for n in inputs.nodes),
        topology=any(n.switch for n in inputs.nodes),
        podgroup=any(part.podgroup for part in inputs.partitions),
    )


def render_gres_conf(inputs: ConfInputs) -> str:
    """gres.conf: autodetection off; each GPU node's devices under the configured device path."""
    lines = [
        (g.hostlist, g.sample.gpu_type, _device_files(inputs.paths.gpu_device_path, g.sample.gpus))
        for g in node_groups(inputs.nodes) if g.sample.gpus
    ]
    return _env().get_template("gres.conf.j2").render(lines=lines)


def render_cgroup_conf(inputs: ConfInputs) -> str:
    """cgroup.conf: nothing constrained (pods run proctrack/linuxproc and task/none)."""
    return _env().get_template("cgroup.conf.j2").render()


def render_topology_conf(inputs: ConfInputs) -> str:
    """topology.conf: one leaf switch per topology label value, all under one root switch."""
    leaves: dict[str, list[str]] = {}
    for node in inputs.nodes:
        if node.switch:
            leaves.setdefault(node.switch, []).append(node.name)
    return _env().get_template("topology.conf.j2").render(
        root=f"{inputs.cluster_name}-root",
        leaves=[(name, _hostlist(members)) for name, members in sorted(leaves.items())])


def render_job_submit_lua(inputs: ConfInputs) -> str:
    """job_submit.lua: jobs of podgroup partitions get the launcher as script, the original embedded."""
    default = next((p.name for p in inputs.partitions if p.default), inputs.partitions[0].name
                   if inputs.partitions else "")
    return _env().get_template("job_submit.lua.j2").render(
        podgroup=sorted(p.name for p in inputs.partitions if p.podgroup),
        default_partition=default, launcher=inputs.launcher_path)


def render_all(inputs: ConfInputs) -> dict[str, str]:
    """Every file of the cluster's configuration directory, by name."""
    files = {
        "slurm.conf": render_slurm_conf(inputs),
        "gres.conf": render_gres_conf(inputs),
        "cgroup.conf": render_cgroup_conf(inputs),
    }
    if any(n.switch for n in inputs.nodes):
        files["topology.conf"] = render_topology_conf(inputs)
    if any(p.podgroup for p in inputs.partitions):
        files["job_submit.lua"] = render_job_submit_lua(inputs)
    return files


def conf_hash(files: Mapping[str, str]) -> str:
    """A short content hash of a set of configuration files."""
    return hashlib.sha256(json.dumps(dict(sorted(files.items()))).encode()).hexdigest()[:16]


def node_lines(text: str) -> list[str]:
    """The NodeName lines of a slurm.conf text (for telling node-set changes from other changes)."""
    return sorted(line for line in text.splitlines() if line.startswith("NodeName="))


def needs_restart(old: Mapping[str, str], new: Mapping[str, str]) -> bool:
    """True when going from `old` to `new` files needs a slurmctld restart rather than `scontrol reconfigure`.

    Slurm 22.05 re-reads partitions, limits and most options on reconfigure, but adding or removing nodes,
    changing node hardware, the topology or plugin types needs the daemon restarted (with saved state).
    """
    old_conf, new_conf = old.get("slurm.conf", ""), new.get("slurm.conf", "")
    if node_lines(old_conf) != node_lines(new_conf):
        return True
    if old.get("topology.conf") != new.get("topology.conf") or old.get("gres.conf") != new.get("gres.conf"):
        return True

    def plugin_lines(text: str) -> list[str]:
        keys = ("selecttype", "schedulertype", "prioritytype", "proctracktype", "taskplugin", "switchtype",
                "mpidefault", "jobsubmitplugins", "topologyplugin", "accountingstoragetype", "gres")
        return sorted(line for line in text.splitlines() if line.split("=", 1)[0].lower() in keys)

    return plugin_lines(old_conf) != plugin_lines(new_conf)
