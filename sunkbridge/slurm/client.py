"""`SlurmClient`: the one small interface the syncer uses to read and change Slurm nodes and partitions.

Two implementations:

- `CliSlurmClient` runs the Slurm 22.05 commands: `sinfo --json` for nodes (22.05 gives node JSON there;
  `scontrol show node` has no JSON in 22.05), `scontrol show partition -o` for partitions (one
  `Key=Value` line each), and `scontrol create|update|delete` for changes.
- `RestSlurmClient` reads nodes and partitions from slurmrestd's `openapi/v0.0.38` with a JWT, using the
  `update_time` query so an unchanged cluster answers `304 Not Modified` (a cheap change test; 22.05.8
  answers a recent change with HTTP 500, so anything but 304 is followed by a full read). v0.0.38 has no endpoints that
  create, update or delete nodes or partitions, so its writes go through the CLI client.

Nodes that Kubernetes brings are created as dynamic nodes (`scontrol create NodeName=... State=CLOUD`):
Slurm 22.05 cannot add nodes on `scontrol reconfigure`, and a CLOUD node that no slurmd answers for stays
`idle~` instead of turning `down*`, so a drain or a down the syncer sets is the only state on it and stays
observable. slurm.conf needs `MaxNodeCount` (dynamic nodes) and `PrivateData=cloud` (else powered-down cloud
nodes are hidden from sinfo and scontrol); `SYNC_SLURM_CONF` holds both.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sunkbridge.sbatch.hostlist import compress_hostlist, expand_hostlist

#: slurm.conf lines the syncer needs (dynamic nodes; powered-down cloud nodes visible to clients).
SYNC_SLURM_CONF = {"MaxNodeCount": "20000", "PrivateData": "cloud"}

#: Node state flags that mean the node takes no new work.
_DRAIN_FLAGS = frozenset({"DRAIN"})
_COMMAND_CHUNK = 8000  # characters of hostlist per scontrol call (argv stays small)


class SlurmError(RuntimeError):
    """A Slurm command or request failed; the message names the command and Slurm's answer."""


@dataclass(frozen=True)
class SlurmNode:
    """One Slurm node as slurmctld reports it."""

    name: str
    state: str  # base state, lower case: idle, allocated, mixed, down, unknown, future, ...
    flags: frozenset[str] = frozenset()  # upper case: DRAIN, CLOUD, POWERED_DOWN, DYNAMIC_NORM, ...
    reason: str = ""
    reason_user: str = ""
    cpus: int = 0
    memory_mb: int = 0
    gres: str = ""
    features: tuple[str, ...] = ()
    partitions: tuple[str, ...] = ()
    alloc_cpus: int = 0

    @property
    def drained(self) -> bool:
        """DRAIN is set (draining or drained)."""
        return bool(self.flags & _DRAIN_FLAGS)

    @property
    def down(self) -> bool:
        """The base state is DOWN (or FAIL)."""
        return self.state in ("down", "fail") or "FAIL" in self.flags

    @property
    def busy(self) -> bool:
        """Jobs still hold CPUs on the node."""
        return self.alloc_cpus > 0 or self.state in ("allocated", "mixed", "completing") or \
            "COMPLETING" in self.flags

    @property
    def dynamic(self) -> bool:
        """Created at run time (`scontrol create`), not declared in slurm.conf."""
        return "DYNAMIC_NORM" in self.flags or "DYNAMIC_FUTURE" in self.flags

    @property
    def display_state(self) -> str:
        """A short state like sinfo's: `idle`, `drain`, `drng`, `down`, `alloc`, with `~` when powered down."""
        if self.drained:
            text = "down+drain" if self.down else ("drng" if self.busy else "drain")
        else:
            text = {"allocated": "alloc"}.get(self.state, self.state)
        return text + ("~" if "POWERED_DOWN" in self.flags else "")


@dataclass(frozen=True)
class SlurmPartition:
    """One partition and its member nodes (expanded)."""

    name: str
    nodes: tuple[str, ...] = ()
    state: str = "UP"


@dataclass(frozen=True)
class NewNode:
    """What `create_nodes` registers: a dynamic CLOUD node."""

    name: str
    cpus: int
    memory_mb: int
    gres: str = ""
    features: tuple[str, ...] = ()
    #: The address slurmctld uses for the node; None lets Slurm resolve the node name.
    addr: str | None = None

    def shape(self) -> tuple[int, int, str, tuple[str, ...], str | None]:
        return (self.cpus, self.memory_mb, self.gres, self.features, self.addr)


class SlurmClient(Protocol):
    """Nodes, their state and partition membership: everything the syncer reads and changes in Slurm."""

    def ping(self) -> bool:
        """True when slurmctld answers."""
        ...

    def nodes(self) -> dict[str, SlurmNode]:
        """Every node, by name."""
        ...

    def nodes_if_changed(self, since: float) -> dict[str, SlurmNode] | None:
        """Every node, or None when nothing changed since `since` (epoch seconds) and the client can tell."""
        ...

    def partitions(self) -> dict[str, SlurmPartition]:
        """Every partition, by name."""
        ...

    def create_nodes(self, nodes: Sequence[NewNode]) -> None:
        """Register dynamic CLOUD nodes (same-shaped nodes in one call)."""
        ...

    def delete_nodes(self, names: Sequence[str]) -> None:
        """Remove dynamic nodes."""
        ...

    def set_features(self, name: str, features: Sequence[str]) -> None:
        """Replace a node's available and active features."""
        ...

    def set_gres(self, name: str, gres: str) -> None:
        """Replace a node's generic resources (`gpu:h100:8`)."""
        ...

    def drain(self, names: Sequence[str], reason: str) -> None:
        """Set DRAIN with `reason`."""
        ...

    def down(self, names: Sequence[str], reason: str) -> None:
        """Set DOWN with `reason`."""
        ...

    def resume(self, names: Sequence[str]) -> None:
        """Clear DRAIN/DOWN."""
        ...

    def set_partition_nodes(self, partition: str, names: Sequence[str]) -> None:
        """Make `names` the partition's nodes, creating the partition (State=UP) if it does not exist."""
        ...


# ---------------------------------------------------------------------------------------------------------
# Parsing (pure)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _split_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value if v)
    text = _text(value)
    if text in ("", "(null)", "N/A"):
        return ()
    return tuple(part for part in text.split(",") if part)


def node_from_json(item: Mapping[str, Any]) -> SlurmNode:
    """A `SlurmNode` from one node record of `sinfo --json` or slurmrestd v0.0.38 `/nodes`."""
    gres = _text(item.get("gres"))
    return SlurmNode(
        name=str(item["name"]),
        state=_text(item.get("state")).lower(),
        flags=frozenset(str(f).upper() for f in item.get("state_flags") or ()),
        reason=_text(item.get("reason")),
        reason_user=_text(item.get("reason_set_by_user")),
        cpus=int(item.get("cpus") or 0),
        memory_mb=int(item.get("real_memory") or 0),
        gres="" if gres in ("(null)", "N/A") else gres,
        features=_split_list(item.get("features")),
        partitions=_split_list(item.get("partitions")),
        alloc_cpus=int(item.get("alloc_cpus") or 0),
    )


def parse_key_values(line: str) -> dict[str, str]:
    """`Key=Value` pairs of one `scontrol show ... -o` line (values run up to the next ` Key=`)."""
    out: dict[str, str] = {}
    key: str | None = None
    for token in line.strip().split(" "):
        head, sep, value = token.partition("=")
        if sep and head and head.replace("/", "").replace("_", "").isalnum() and head[0].isupper():
            key = head
            out[key] = value
        elif key is not None:
            out[key] += " " + token
    return out


def partitions_from_scontrol(text: str) -> dict[str, SlurmPartition]:
    """Partitions from `scontrol show partition -o` output."""
    parts: dict[str, SlurmPartition] = {}
    for line in text.splitlines():
        if not line.startswith("PartitionName="):
            continue
        kv = parse_key_values(line)
        nodes = kv.get("Nodes", "")
        members = tuple(expand_hostlist(nodes)) if nodes and nodes != "(null)" else ()
        parts[kv["PartitionName"]] = SlurmPartition(kv["PartitionName"], members, kv.get("State", "UP"))
    return parts


def partition_from_json(item: Mapping[str, Any]) -> SlurmPartition:
    """A partition from slurmrestd v0.0.38 `/partitions`."""
    nodes = _text(item.get("nodes"))
    members = tuple(expand_hostlist(nodes)) if nodes and nodes != "(null)" else ()
    return SlurmPartition(str(item["name"]), members, _text(item.get("state")).upper() or "UP")


def _chunks(names: Sequence[str]) -> Iterable[str]:
    """Compressed hostlists of `names`, each short enough for one command line."""
    batch: list[str] = []
    size = 0
    for name in sorted(set(names)):
        batch.append(name)
        size += len(name) + 1
        if size >= _COMMAND_CHUNK:
            yield compress_hostlist(batch)
            batch, size = [], 0
    if batch:
        yield compress_hostlist(batch)


def create_arguments(nodes: Sequence[NewNode]) -> list[list[str]]:
    """`scontrol create` argument lists: one per node shape, naming the nodes as a hostlist."""
    shapes: dict[tuple[int, int, str, tuple[str, ...], str | None], list[str]] = {}
    for node in nodes:
        shapes.setdefault(node.shape(), []).append(node.name)
    calls: list[list[str]] = []
    for (cpus, memory, gres, features, addr), names in shapes.items():
        for hostlist in _chunks(names):
            argv = ["create", f"NodeName={hostlist}", f"CPUs={cpus}", f"RealMemory={memory}"]
            if addr:
                argv.append(f"NodeAddr={addr}")
            if gres:
                argv.append(f"Gres={gres}")
            if features:
                argv.append(f"Features={','.join(features)}")
            argv.append("State=CLOUD")
            calls.append(argv)
    return calls


# ---------------------------------------------------------------------------------------------------------
# CLI implementation


@dataclass
class CliSlurmClient:
    """`SlurmClient` over the Slurm commands; `env` carries SLURM_CONF (and whatever else they need)."""

    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 60.0
    runner: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run

    def _env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        return {**base, **self.env}

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            proc = self.runner(list(argv), env=self._env(), capture_output=True, text=True, timeout=self.timeout,
                               stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmError(f"`{' '.join(argv)[:200]}`: {exc}") from exc
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().replace("\n", " | ")
            raise SlurmError(f"`{' '.join(argv)[:200]}` exited {proc.returncode}: {detail}")
        return proc

    def ping(self) -> bool:
        proc = self._run("scontrol", "ping", check=False)
        return proc.returncode == 0 and "UP" in proc.stdout

    def nodes(self) -> dict[str, SlurmNode]:
        data = json.loads(self._run("sinfo", "--json").stdout)
        return {n.name: n for n in map(node_from_json, data.get("nodes") or [])}

    def nodes_if_changed(self, since: float) -> dict[str, SlurmNode] | None:
        return self.nodes()

    def partitions(self) -> dict[str, SlurmPartition]:
        return partitions_from_scontrol(self._run("scontrol", "show", "partition", "-o").stdout)

    def create_nodes(self, nodes: Sequence[NewNode]) -> None:
        for argv in create_arguments(nodes):
            self._run("scontrol", *argv)

    def delete_nodes(self, names: Sequence[str]) -> None:
        for hostlist in _chunks(names):
            self._run("scontrol", "delete", f"NodeName={hostlist}")

    def set_features(self, name: str, features: Sequence[str]) -> None:
        value = ",".join(features)
        self._run("scontrol", "update", f"NodeName={name}", f"AvailableFeatures={value}",
                  f"ActiveFeatures={value}")

    def set_gres(self, name: str, gres: str) -> None:
        self._run("scontrol", "update", f"NodeName={name}", f"Gres={gres or '(null)'}")

    def _state(self, names: Sequence[str], state: str, reason: str | None) -> None:
        for hostlist in _chunks(names):
            argv = ["scontrol", "update", f"NodeName={hostlist}", f"State={state}"]
            if reason is not None:
                argv.append(f"Reason={reason}")
            self._run(*argv)

    def drain(self, names: Sequence[str], reason: str) -> None:
        self._state(names, "DRAIN", reason)

    def down(self, names: Sequence[str], reason: str) -> None:
        self._state(names, "DOWN", reason)

    def resume(self, names: Sequence[str]) -> None:
        self._state(names, "RESUME", None)

    def set_partition_nodes(self, partition: str, names: Sequence[str]) -> None:
        hostlist = compress_hostlist(sorted(set(names))) if names else ""
        existing = self._run("scontrol", "show", "partition", partition, "-o", check=False)
        if existing.returncode != 0 or not existing.stdout.startswith("PartitionName="):
            self._run("scontrol", "create", f"PartitionName={partition}", f"Nodes={hostlist}", "State=UP")
            return
        self._run("scontrol", "update", f"PartitionName={partition}", f"Nodes={hostlist}")


# ---------------------------------------------------------------------------------------------------------
# slurmrestd implementation


@dataclass
class RestSlurmClient:
    """`SlurmClient` reading through slurmrestd v0.0.38 (JWT); writes go to `writer` (v0.0.38 has none)."""

    url: str
    token: Callable[[], str]
    writer: CliSlurmClient
    user: str = "root"
    version: str = "v0.0.38"
    timeout: float = 30.0
    _token: str = ""
    _token_at: float = 0.0

    def _get(self, path: str) -> dict[str, Any] | None:
        if not self._token or time.monotonic() - self._token_at > 600:
            self._token, self._token_at = self.token(), time.monotonic()
        request = urllib.request.Request(f"{self.url}/slurm/{self.version}{path}",
                                         headers={"X-SLURM-USER-NAME": self.user,
                                                  "X-SLURM-USER-TOKEN": self._token})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                data: dict[str, Any] = json.load(resp)
        except urllib.error.HTTPError as exc:
            if exc.code == 304:
                return None
            raise SlurmError(f"slurmrestd GET {path}: HTTP {exc.code} {exc.reason}") from exc
        except (OSError, ValueError) as exc:
            raise SlurmError(f"slurmrestd GET {path}: {exc}") from exc
        errors = [e for e in data.get("errors") or [] if e.get("error_number")]
        if errors:
            raise SlurmError(f"slurmrestd GET {path}: {errors[0].get('error', errors[0])}")
        return data

    def ping(self) -> bool:
        try:
            data = self._get("/ping")
        except SlurmError:
            return False
        return bool(data and any(p.get("ping") == "UP" for p in data.get("pings") or []))

    def nodes(self) -> dict[str, SlurmNode]:
        data = self._get("/nodes") or {}
        return {n.name: n for n in map(node_from_json, data.get("nodes") or [])}

    def nodes_if_changed(self, since: float) -> dict[str, SlurmNode] | None:
        try:
            data = self._get(f"/nodes?update_time={int(since)}")
        except SlurmError:
            # Seen with 22.05.8: a change within the last seconds answers HTTP 500 "Unspecified error";
            # 304 is reliable for "nothing changed", so any other answer means: read everything.
            return self.nodes()
        if data is None:
            return None
        return {n.name: n for n in map(node_from_json, data.get("nodes") or [])}

    def partitions(self) -> dict[str, SlurmPartition]:
        data = self._get("/partitions") or {}
        return {p.name: p for p in map(partition_from_json, data.get("partitions") or [])}

    def create_nodes(self, nodes: Sequence[NewNode]) -> None:
        self.writer.create_nodes(nodes)

    def delete_nodes(self, names: Sequence[str]) -> None:
        self.writer.delete_nodes(names)

    def set_features(self, name: str, features: Sequence[str]) -> None:
        self.writer.set_features(name, features)

    def set_gres(self, name: str, gres: str) -> None:
        self.writer.set_gres(name, gres)

    def drain(self, names: Sequence[str], reason: str) -> None:
        self.writer.drain(names, reason)

    def down(self, names: Sequence[str], reason: str) -> None:
        self.writer.down(names, reason)

    def resume(self, names: Sequence[str]) -> None:
        self.writer.resume(names)

    def set_partition_nodes(self, partition: str, names: Sequence[str]) -> None:
        self.writer.set_partition_nodes(partition, names)
