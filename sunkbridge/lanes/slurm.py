"""A real Slurm cluster on loopback: munged, slurmctld, several slurmd with simulated GPUs, slurmrestd, and
accounting (`sacct`) through slurmdbd and a private MariaDB.

Everything lives under one base directory: configuration (`etc/`), a private munge key and socket
(`munge/`), controller state and slurmd spools (`spool/`), pid files (`run/`), logs (`log/`), stand-in
GPU device nodes (`dev/`), slurmrestd's socket (`rest/`) and the accounting database (`db/`). The daemons
detach from the starting process, so a lane started by one process (`sunk dev up`) can be stopped by
another (`sunk dev down`) through `SlurmLane.attach(base_dir).stop()`.

Accounting is on unless `SlurmLaneConfig(accounting=False)`: MariaDB (its own datadir, socket and port,
run as `mysql`) starts first, then slurmdbd, then the cluster is registered with `sacctmgr` and slurmctld
starts with `AccountingStorageType=accounting_storage/slurmdbd`. AccountingStorageEnforce stays unset and
no user has an association (not even root, which `sacctmgr add cluster` gives one), so every job is
accepted and recorded with the account it asked for; with an association, slurmctld would swap an
unknown `--account` for the user's default account.

Rendering the configuration files is pure (`render_slurm_conf`, `render_slurmdbd_conf`,
`render_mariadb_cnf`, `render_gres_conf`, `render_cgroup_conf`); starting and stopping daemons is kept in
`SlurmLane`.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sunkbridge.lanes.daemons import LaneError, pid_alive, port_free, read_pid

SLURM_PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client", "slurmrestd",
                  "slurm-wlm-basic-plugins", "slurm-wlm-jwt-plugin")
"""Debian packages the lane needs (bookworm ships Slurm 22.05)."""

ACCOUNTING_PACKAGES = ("slurmdbd", "mariadb-server")
"""Debian packages the lane's accounting needs: slurmdbd and the MariaDB it stores jobs in."""

_ALL_PACKAGES = SLURM_PACKAGES + ACCOUNTING_PACKAGES

REST_API_VERSION = "v0.0.38"
"""The slurmrestd OpenAPI plugin the lane loads (the newest in 22.05 that works without slurmdbd)."""

MARKER_VAR = "SUNK_SLURM_LANE"
"""Set in every daemon's environment to the lane's base directory, so `stop` finds exactly its own."""

# A file the lane needs → the Debian package that ships it.
_REQUIRED_BINARIES = {
    "/usr/sbin/munged": "munge",
    "/usr/bin/munge": "munge",
    "/usr/sbin/slurmctld": "slurmctld",
    "/usr/sbin/slurmd": "slurmd",
    "/usr/sbin/slurmstepd": "slurmd",
    "/usr/sbin/slurmrestd": "slurmrestd",
    "/usr/bin/sbatch": "slurm-client",
    "/usr/bin/srun": "slurm-client",
    "/usr/bin/scontrol": "slurm-client",
    "/usr/bin/squeue": "slurm-client",
    "/usr/bin/sinfo": "slurm-client",
    "/usr/bin/scancel": "slurm-client",
    "/usr/bin/sacct": "slurm-client",
    "/usr/bin/sacctmgr": "slurm-client",
}
_REQUIRED_PLUGINS = {
    "openapi_v0_0_38.so": "slurm-wlm-basic-plugins",
    "rest_auth_local.so": "slurm-wlm-basic-plugins",
    "auth_jwt.so": "slurm-wlm-jwt-plugin",
}
_ACCOUNTING_BINARIES = {
    "/usr/sbin/slurmdbd": "slurmdbd",
    "/usr/sbin/mariadbd": "mariadb-server",
    "/usr/bin/mariadb-install-db": "mariadb-server",
    "/usr/bin/mariadb": "mariadb-server",
    "/usr/bin/mariadb-admin": "mariadb-server",
}
_ACCOUNTING_PLUGINS = {"accounting_storage_mysql.so": "slurmdbd"}
_PLUGIN_GLOB = "/usr/lib/*/slurm-wlm/{}"

ACCOUNTING_DB = "slurm_acct_db"
"""The MariaDB database slurmdbd keeps the lane's accounting in."""

_DB_USER = "slurm"  # the MariaDB account slurmdbd logs in with
# SlurmUser of slurmctld and slurmdbd alike: slurmctld takes association updates only from its SlurmUser.
_SLURM_USER = "root"
_DB_OS_USER = "mysql"  # the system user MariaDB runs as (created by Debian's mariadb-server)

# Ports the lane picks from when none are given: below Linux's ephemeral range, away from well-known ones.
_PORT_RANGE = (20000, 32000)
_GPU_DEVICE = (1, 3)  # major/minor of the stand-in GPU character devices (the same as /dev/null)
_apt_updated = False


class SlurmLaneError(LaneError):
    """A lane step failed. The one-line message names the step, the log to read and the fix."""

    def __init__(self, step: str, detail: str, *, log: Path | None = None, fix: str = "") -> None:
        self.step = step
        self.detail = detail
        self.log = log
        self.fix = fix
        parts = [f"slurm lane: {step} failed: {detail}"]
        if log is not None:
            parts.append(f"log: {log}")
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__("; ".join(p.replace("\n", " ") for p in parts))


# ---------------------------------------------------------------------------------------------------------
# Cluster shape


@dataclass(frozen=True)
class NodeSpec:
    """One simulated compute node: advertised CPUs, memory, GPUs and features."""

    name: str
    cpus: int = 32
    memory_mb: int = 16000
    gpus: int = 0
    gpu_type: str | None = None
    features: tuple[str, ...] = ()

    @property
    def gres(self) -> str | None:
        """The node's `Gres=` value, e.g. `gpu:h100:8`, or None without GPUs."""
        if not self.gpus:
            return None
        return f"gpu:{self.gpu_type}:{self.gpus}" if self.gpu_type else f"gpu:{self.gpus}"


@dataclass(frozen=True)
class PartitionSpec:
    """One partition over named nodes."""

    name: str
    nodes: tuple[str, ...]
    default: bool = False
    max_time: str = "UNLIMITED"
    default_time: str | None = None


def default_nodes() -> tuple[NodeSpec, ...]:
    """Two H100 nodes, two A100 nodes (8 simulated GPUs each) and two CPU nodes."""
    return (
        NodeSpec("gpu-001", gpus=8, gpu_type="h100", features=("h100", "nvlink", "ib")),
        NodeSpec("gpu-002", gpus=8, gpu_type="h100", features=("h100", "nvlink", "ib")),
        NodeSpec("gpu-003", gpus=8, gpu_type="a100", features=("a100", "ib")),
        NodeSpec("gpu-004", gpus=8, gpu_type="a100", features=("a100", "ib")),
        NodeSpec("cpu-001", cpus=16, memory_mb=8000, features=("cpu",)),
        NodeSpec("cpu-002", cpus=16, memory_mb=8000, features=("cpu",)),
    )


def default_partitions() -> tuple[PartitionSpec, ...]:
    """`h100` (the default), `a100` and `cpu`, matching `default_nodes()`."""
    return (
        PartitionSpec("h100", ("gpu-001", "gpu-002"), default=True),
        PartitionSpec("a100", ("gpu-003", "gpu-004")),
        PartitionSpec("cpu", ("cpu-001", "cpu-002")),
    )


@dataclass
class SlurmLaneConfig:
    """What to start. Ports left at None are picked from free ones when the lane starts."""

    base_dir: Path
    cluster_name: str = "sunk"
    nodes: tuple[NodeSpec, ...] = field(default_factory=default_nodes)
    partitions: tuple[PartitionSpec, ...] = field(default_factory=default_partitions)
    slurmctld_port: int | None = None
    slurmd_ports: Mapping[str, int] = field(default_factory=dict)
    restd_port: int | None = None
    restd_user: str = "slurmrestd"
    jwt: bool = True
    max_array_size: int = 1001
    def_mem_per_cpu_mb: int | None = 1000
    extra_conf: Mapping[str, str] = field(default_factory=dict)
    start_timeout: float = 60.0
    accounting: bool = True
    slurmdbd_port: int | None = None
    mariadb_port: int | None = None

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir).absolute()
        if not self.cluster_name or self.cluster_name != self.cluster_name.lower():
            raise ValueError(f"cluster_name {self.cluster_name!r} must be non-empty and lowercase "
                             "(Slurm lowercases it and accounting looks it up by that name)")
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"node names repeat: {names}")
        for part in self.partitions:
            unknown = sorted(set(part.nodes) - set(names))
            if unknown:
                raise ValueError(f"partition {part.name} names unknown nodes {unknown}")
        if sum(p.default for p in self.partitions) > 1:
            raise ValueError("more than one default partition")


@dataclass(frozen=True)
class LanePorts:
    """The TCP ports a started lane uses."""

    slurmctld: int
    slurmd: Mapping[str, int]
    restd: int
    slurmdbd: int | None = None
    mariadb: int | None = None


@dataclass(frozen=True)
class LanePaths:
    """Where every file of a lane lives.

    State, spools, logs and pid files live under `base`. What munged and the unprivileged slurmrestd must
    reach (configuration, munge key and socket, slurmrestd's socket) lives under `runtime`: the base dir
    itself when every parent of it can be traversed by other users, else a directory under /run.
    """

    base: Path
    runtime_dir: Path | None = None

    @property
    def runtime(self) -> Path:
        return self.runtime_dir or self.base

    @property
    def etc(self) -> Path:
        return self.runtime / "etc"

    @property
    def slurm_conf(self) -> Path:
        return self.etc / "slurm.conf"

    @property
    def gres_conf(self) -> Path:
        return self.etc / "gres.conf"

    @property
    def cgroup_conf(self) -> Path:
        return self.etc / "cgroup.conf"

    @property
    def jwt_key(self) -> Path:
        return self.etc / "jwt_hs256.key"

    @property
    def slurmdbd_conf(self) -> Path:
        """slurmdbd reads it from the directory of `SLURM_CONF`."""
        return self.etc / "slurmdbd.conf"

    @property
    def mariadb_cnf(self) -> Path:
        return self.etc / "mariadb.cnf"

    @property
    def db(self) -> Path:
        """MariaDB's folder (owned by `mysql`, so under `runtime`): datadir, socket, its own pid file."""
        return self.runtime / "db"

    @property
    def db_data(self) -> Path:
        return self.db / "data"

    @property
    def db_socket(self) -> Path:
        return self.db / "mariadbd.sock"

    @property
    def munge(self) -> Path:
        return self.runtime / "munge"

    @property
    def munge_key(self) -> Path:
        return self.munge / "munge.key"

    @property
    def munge_socket(self) -> Path:
        return self.munge / "munge.socket"

    @property
    def munge_pid(self) -> Path:
        return self.munge / "munged.pid"

    @property
    def munge_seed(self) -> Path:
        return self.munge / "munged.seed"

    @property
    def state_save(self) -> Path:
        return self.base / "spool" / "ctld"

    @property
    def spool(self) -> Path:
        return self.base / "spool"

    @property
    def run(self) -> Path:
        return self.base / "run"

    @property
    def log(self) -> Path:
        return self.base / "log"

    @property
    def dev(self) -> Path:
        return self.base / "dev"

    @property
    def rest(self) -> Path:
        return self.runtime / "rest"

    @property
    def rest_socket(self) -> Path:
        return self.rest / "slurmrestd.socket"

    @property
    def state_file(self) -> Path:
        return self.base / "lane.json"

    @property
    def munge_log(self) -> Path:
        return self.log / "munged.log"

    @property
    def slurmctld_pid(self) -> Path:
        return self.run / "slurmctld.pid"

    @property
    def slurmctld_log(self) -> Path:
        return self.log / "slurmctld.log"

    @property
    def slurmdbd_pid(self) -> Path:
        return self.run / "slurmdbd.pid"

    @property
    def slurmdbd_log(self) -> Path:
        return self.log / "slurmdbd.log"

    @property
    def mariadbd_pid(self) -> Path:
        return self.run / "mariadbd.pid"

    @property
    def mariadbd_log(self) -> Path:
        return self.log / "mariadbd.log"

    def restd_pid(self, kind: str) -> Path:
        """Pid file of slurmrestd `kind`: `socket` (local auth) or `tcp` (JWT)."""
        return self.run / f"slurmrestd-{kind}.pid"

    def restd_log(self, kind: str) -> Path:
        return self.log / f"slurmrestd-{kind}.log"

    def slurmd_pid(self, node: str) -> Path:
        return self.run / f"slurmd-{node}.pid"

    def slurmd_log(self, node: str) -> Path:
        return self.log / f"slurmd-{node}.log"

    def gpu_devices(self, node: str, count: int) -> list[Path]:
        return [self.dev / node / f"nvidia{i}" for i in range(count)]


# ---------------------------------------------------------------------------------------------------------
# Pure renderers


def render_slurm_conf(config: SlurmLaneConfig, paths: LanePaths, ports: LanePorts) -> str:
    """The lane's slurm.conf: one NodeName line per node (each slurmd has its own port)."""
    lines = [
        f"ClusterName={config.cluster_name}",
        "SlurmctldHost=localhost(127.0.0.1)",
        f"SlurmctldPort={ports.slurmctld}",
        f"SlurmUser={_SLURM_USER}",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        f"AuthInfo=socket={paths.munge_socket}",
        "CredType=cred/munge",
    ]
    if config.jwt:
        lines += ["AuthAltTypes=auth/jwt", f"AuthAltParameters=jwt_key={paths.jwt_key}"]
    lines += [
        f"StateSaveLocation={paths.state_save}",
        f"SlurmdSpoolDir={paths.spool}/%n",
        f"SlurmctldPidFile={paths.slurmctld_pid}",
        f"SlurmdPidFile={paths.run}/slurmd-%n.pid",
        f"SlurmctldLogFile={paths.slurmctld_log}",
        f"SlurmdLogFile={paths.log}/slurmd-%n.log",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
    ]
    if config.accounting:
        if ports.slurmdbd is None:
            raise ValueError("accounting needs a slurmdbd port")
        # AccountingStoragePass names the munge socket for the connection to slurmdbd (AuthInfo does not).
        lines += [
            "JobAcctGatherType=jobacct_gather/linux",
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=localhost",
            f"AccountingStoragePort={ports.slurmdbd}",
            f"AccountingStoragePass={paths.munge_socket}",
        ]
    else:
        lines += ["JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none"]
    lines += [
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "SwitchType=switch/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "GresTypes=gpu",
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        f"MaxArraySize={config.max_array_size}",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=bf_interval=5,sched_min_interval=100000",
        "MessageTimeout=20",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=60",
        "InactiveLimit=0",
        "KillWait=2",
        "MinJobAge=300",
        "PropagateResourceLimits=NONE",
    ]
    if config.def_mem_per_cpu_mb is not None:
        lines.append(f"DefMemPerCPU={config.def_mem_per_cpu_mb}")
    lines += [f"{k}={v}" for k, v in config.extra_conf.items()]
    for node in config.nodes:
        parts = [
            f"NodeName={node.name}",
            "NodeHostname=localhost",
            "NodeAddr=127.0.0.1",
            f"Port={ports.slurmd[node.name]}",
            f"CPUs={node.cpus}",
            f"RealMemory={node.memory_mb}",
        ]
        if node.gres:
            parts.append(f"Gres={node.gres}")
        if node.features:
            parts.append(f"Features={','.join(node.features)}")
        parts.append("State=UNKNOWN")
        lines.append(" ".join(parts))
    for part in config.partitions:
        parts = [f"PartitionName={part.name}", f"Nodes={','.join(part.nodes)}",
                 f"Default={'YES' if part.default else 'NO'}", f"MaxTime={part.max_time}"]
        if part.default_time:
            parts.append(f"DefaultTime={part.default_time}")
        parts.append("State=UP")
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


def render_slurmdbd_conf(config: SlurmLaneConfig, paths: LanePaths, ports: LanePorts,
                         storage_pass: str) -> str:
    """slurmdbd.conf: slurmdbd on loopback, storing into the lane's MariaDB over TCP."""
    if ports.slurmdbd is None or ports.mariadb is None:
        raise ValueError("accounting needs slurmdbd and MariaDB ports")
    return "\n".join([
        "AuthType=auth/munge",
        f"AuthInfo=socket={paths.munge_socket}",
        "DbdHost=localhost",
        "DbdAddr=127.0.0.1",
        f"DbdPort={ports.slurmdbd}",
        f"SlurmUser={_SLURM_USER}",
        f"PidFile={paths.slurmdbd_pid}",
        f"LogFile={paths.slurmdbd_log}",
        "DebugLevel=info",
        "StorageType=accounting_storage/mysql",
        "StorageHost=127.0.0.1",
        f"StoragePort={ports.mariadb}",
        f"StorageUser={_DB_USER}",
        f"StoragePass={storage_pass}",
        f"StorageLoc={ACCOUNTING_DB}",
    ]) + "\n"


def render_mariadb_cnf(paths: LanePaths, ports: LanePorts) -> str:
    """The private MariaDB's only option file: loopback, its own datadir and socket, small and quick."""
    if ports.mariadb is None:
        raise ValueError("accounting needs a MariaDB port")
    return "\n".join([
        "[mysqld]",
        f"datadir={paths.db_data}",
        f"socket={paths.db_socket}",
        f"pid-file={paths.db / 'mariadbd.pid'}",
        f"port={ports.mariadb}",
        "bind-address=127.0.0.1",
        "skip-name-resolve",
        # The values below which slurmdbd logs "Database settings not recommended values".
        "innodb_buffer_pool_size=1024M",  # reserved, not resident: ~110 MB RSS either way
        "innodb_log_file_size=64M",
        "innodb_lock_wait_timeout=900",
        # A test cluster's accounting: losing the last second of commits in a crash is fine.
        "innodb_flush_log_at_trx_commit=2",
        "[client]",
        f"socket={paths.db_socket}",
        "user=root",
    ]) + "\n"


def render_gres_conf(config: SlurmLaneConfig, paths: LanePaths) -> str:
    """gres.conf with autodetection off and each GPU backed by a stand-in device file."""
    lines = ["AutoDetect=off"]
    for node in config.nodes:
        if not node.gpus:
            continue
        files = f"{paths.dev / node.name}/nvidia[0-{node.gpus - 1}]" if node.gpus > 1 else \
            str(paths.gpu_devices(node.name, 1)[0])
        kind = f" Type={node.gpu_type}" if node.gpu_type else ""
        lines.append(f"NodeName={node.name} Name=gpu{kind} File={files}")
    return "\n".join(lines) + "\n"


def render_cgroup_conf() -> str:
    """cgroup.conf that constrains nothing (the lane uses proctrack/linuxproc and task/none)."""
    return "\n".join([
        "CgroupAutomount=no",
        "ConstrainCores=no",
        "ConstrainRAMSpace=no",
        "ConstrainDevices=no",
    ]) + "\n"


# ---------------------------------------------------------------------------------------------------------
# Installation


def _plugin_present(name: str) -> bool:
    return bool(glob.glob(_PLUGIN_GLOB.format(name)))


def missing_packages(accounting: bool = True) -> list[str]:
    """Debian packages whose files the lane needs but cannot find on this machine.

    With `accounting`, also slurmdbd and MariaDB (the lane keeps accounting unless told otherwise).
    """
    binaries = {**_REQUIRED_BINARIES, **(_ACCOUNTING_BINARIES if accounting else {})}
    plugins = {**_REQUIRED_PLUGINS, **(_ACCOUNTING_PLUGINS if accounting else {})}
    missing = {pkg for path, pkg in binaries.items() if not Path(path).exists()}
    missing |= {pkg for plugin, pkg in plugins.items() if not _plugin_present(plugin)}
    return sorted(missing)


def _apt(args: Sequence[str], step: str, timeout: float) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "a"}
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=300", *args]
    try:
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmLaneError(step, f"`{' '.join(cmd)}`: {exc}",
                             fix="check the network and the apt sources, then rerun") from exc
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise SlurmLaneError(step, f"`{' '.join(cmd)}` exited {proc.returncode}: {tail}",
                             fix=f"run `apt-get update && apt-get install -y {' '.join(_ALL_PACKAGES)}` "
                                 "as root and read its output")


def ensure_installed(*, accounting: bool = True, timeout: float = 900.0) -> list[str]:
    """Install the Debian Slurm and munge packages that are missing; returns what was installed.

    With `accounting`, slurmdbd and mariadb-server too. Runs `apt-get update` once per process, then a
    non-interactive `apt-get install`. Package scripts are kept from starting system-wide munge, slurm and
    MariaDB services while installing.
    """
    global _apt_updated
    missing = missing_packages(accounting)
    if not missing:
        return []
    if os.geteuid() != 0:
        raise SlurmLaneError("install", f"missing packages {' '.join(missing)} and not running as root",
                             fix=f"run `sudo apt-get install -y {' '.join(missing)}`")
    if shutil.which("apt-get") is None:
        raise SlurmLaneError("install", f"missing packages {' '.join(missing)} and no apt-get here",
                             fix="install Slurm 22.05 (slurmctld, slurmd, slurmrestd, slurmdbd, munge) and "
                                 "mariadb-server by hand")
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        # The standard Debian hook that tells package scripts not to start services (exit 101).
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        if not _apt_updated:
            _apt(["update"], "apt-get update", timeout)
            _apt_updated = True
        _apt(["install", "-y", "--no-install-recommends", *missing], "apt-get install", timeout)
    finally:
        if own_policy:
            policy.unlink(missing_ok=True)
    still = missing_packages(accounting)
    if still:
        names = " ".join(still)
        raise SlurmLaneError("install", f"packages {names} still incomplete after apt-get install",
                             fix=f"run `apt-get install --reinstall -y {names}` and check its output")
    return missing


# ---------------------------------------------------------------------------------------------------------
# Processes


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def _lane_pids(base: Path, slurm_conf: Path) -> list[int]:
    """Every live process of the lane at `base`: daemons and step daemons carry the environment marker,
    job tasks carry the lane's `SLURM_CONF` together with a `SLURM_JOB_ID`."""
    conf = str(slurm_conf)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        env = _environ(int(entry.name))
        ours = env.get(MARKER_VAR) == str(base) or (env.get("SLURM_CONF") == conf and "SLURM_JOB_ID" in env)
        if ours and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log yet)"
    return " | ".join(text[-lines:]) or "(log empty)"


def _port_free(port: int) -> bool:
    """True when nothing listens on `port`, neither on all addresses nor on loopback."""
    return all(port_free(port, host) for host in ("0.0.0.0", "127.0.0.1"))


def _pick_ports(count: int, avoid: Iterable[int]) -> list[int]:
    taken = set(avoid)
    rng = random.Random()
    picked: list[int] = []
    for _ in range(5000):
        port = rng.randrange(*_PORT_RANGE)
        if port in taken:
            continue
        taken.add(port)
        if _port_free(port):
            picked.append(port)
            if len(picked) == count:
                return picked
    raise SlurmLaneError("pick ports", f"found only {len(picked)} of {count} free ports in {_PORT_RANGE}",
                         fix="free some loopback ports or pass explicit ports in SlurmLaneConfig")


def _wait(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _traversable(path: Path) -> bool:
    """True when other users can reach `path` (every existing parent has the x bit for others)."""
    for parent in [*reversed(path.parents), path]:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def runtime_dir_for(base: Path) -> Path | None:
    """None when munged and slurmrestd can reach `base` itself; else a per-lane directory under /run.

    munged refuses a socket whose directory others cannot traverse, and slurmrestd runs unprivileged,
    so a base dir under a 0700 home (e.g. ~/.local/state) keeps its config and sockets elsewhere.
    """
    if _traversable(base):
        return None
    digest = hashlib.sha1(str(base).encode()).hexdigest()[:10]
    run = Path("/run")
    root = run / "sunkbridge" if run.is_dir() and os.access(run, os.W_OK) else Path("/tmp") / "sunkbridge"
    return root / f"slurm-{digest}"


def make_base_dir(prefix: str = "sunk-slurm-") -> Path:
    """A fresh lane directory under /tmp that munged and slurmrestd can traverse (mode 0755).

    pytest's temporary directories are 0700, which munged refuses for its socket's parents.
    """
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    base.chmod(0o755)
    return base


# ---------------------------------------------------------------------------------------------------------
# The lane


class SlurmLane:
    """A running (or startable) Slurm cluster on loopback; see the module docstring for the layout."""

    def __init__(self, config: SlurmLaneConfig) -> None:
        self.config = config
        self.paths = LanePaths(config.base_dir, runtime_dir_for(config.base_dir))
        self.ports: LanePorts | None = None
        self._procs: list[subprocess.Popen[bytes]] = []

    # -- construction from a lane started elsewhere ------------------------------------------------------

    @classmethod
    def attach(cls, base_dir: Path | str) -> SlurmLane:
        """The lane recorded under `base_dir` by an earlier `start()` (possibly of another process)."""
        paths = LanePaths(Path(base_dir).absolute())
        try:
            data = json.loads(paths.state_file.read_text())
            runtime = Path(data.get("runtime") or paths.base)
        except (OSError, ValueError) as exc:
            raise SlurmLaneError(
                "attach", f"no readable lane state at {paths.state_file}: {exc}",
                fix="start the lane first (`SlurmLane(config).start()` or `sunk dev up`)") from exc
        cfg = data["config"]
        config = SlurmLaneConfig(
            base_dir=paths.base,
            cluster_name=cfg["cluster_name"],
            nodes=tuple(NodeSpec(**{**n, "features": tuple(n["features"])}) for n in cfg["nodes"]),
            partitions=tuple(PartitionSpec(**{**p, "nodes": tuple(p["nodes"])}) for p in cfg["partitions"]),
            slurmctld_port=cfg["slurmctld_port"],
            slurmd_ports=cfg["slurmd_ports"],
            restd_port=cfg["restd_port"],
            restd_user=cfg["restd_user"],
            jwt=cfg["jwt"],
            max_array_size=cfg["max_array_size"],
            def_mem_per_cpu_mb=cfg["def_mem_per_cpu_mb"],
            extra_conf=cfg["extra_conf"],
            start_timeout=cfg["start_timeout"],
            accounting=cfg.get("accounting", False),
            slurmdbd_port=cfg.get("slurmdbd_port"),
            mariadb_port=cfg.get("mariadb_port"),
        )
        lane = cls(config)
        lane.paths = LanePaths(config.base_dir, runtime if runtime != config.base_dir else None)
        ports = data["ports"]
        lane.ports = LanePorts(ports["slurmctld"], dict(ports["slurmd"]), ports["restd"],
                               ports.get("slurmdbd"), ports.get("mariadb"))
        return lane

    # -- public API ---------------------------------------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        return self.config.base_dir

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.config.nodes]

    @property
    def restd_url(self) -> str:
        """`http://127.0.0.1:PORT` of the JWT-authenticated slurmrestd (see `token()`)."""
        return f"http://127.0.0.1:{self._ports().restd}"

    def env(self) -> dict[str, str]:
        """Variables a Slurm client (sbatch, scontrol, ...) needs to talk to this lane."""
        return {
            "SLURM_CONF": str(self.paths.slurm_conf),
            "SUNK_SLURMRESTD_URL": self.restd_url,
            "SUNK_SLURMRESTD_SOCKET": str(self.paths.rest_socket),
        }

    def client_env(self) -> dict[str, str]:
        """This process's environment without inherited SLURM_* job variables, plus `env()`."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        return {**base, **self.env()}

    def run(self, *argv: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this lane and return its completed process."""
        proc = subprocess.run(list(argv), env=self.client_env(), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise SlurmLaneError(f"`{' '.join(argv)}`", f"exit {proc.returncode}: {proc.stderr.strip()}",
                                 log=self.paths.slurmctld_log, fix="read the slurmctld log")
        return proc

    def token(self, user: str = "root", lifespan: int = 3600) -> str:
        """A JWT for slurmrestd (`X-SLURM-USER-TOKEN`), issued by `scontrol token`."""
        if not self.config.jwt:
            raise SlurmLaneError("token", "the lane was started without JWT",
                                 fix="set jwt=True in the config")
        out = self.run("scontrol", "token", f"username={user}", f"lifespan={lifespan}").stdout
        for line in out.splitlines():
            if line.startswith("SLURM_JWT="):
                return line.split("=", 1)[1].strip()
        raise SlurmLaneError("token", f"unexpected `scontrol token` output: {out.strip()!r}",
                             log=self.paths.slurmctld_log, fix="check AuthAltTypes in slurm.conf")

    def processes(self) -> list[int]:
        """Pids of every live process of this lane (daemons, step daemons, job tasks)."""
        return _lane_pids(self.base_dir, self.paths.slurm_conf)

    def is_running(self) -> bool:
        """True when munged, slurmctld, every slurmd and slurmrestd (and with accounting, MariaDB and
        slurmdbd) of this lane are alive."""
        pidfiles = [self.paths.munge_pid, self.paths.slurmctld_pid, self.paths.restd_pid("socket")]
        if self.config.jwt:
            pidfiles.append(self.paths.restd_pid("tcp"))
        if self.config.accounting:
            pidfiles += [self.paths.mariadbd_pid, self.paths.slurmdbd_pid]
        pidfiles += [self.paths.slurmd_pid(n) for n in self.node_names]
        return all(self._own_pid(p) is not None for p in pidfiles)

    def start(self) -> SlurmLane:
        """Install what is missing, write the configuration and start all daemons; wait for idle nodes.

        On failure everything already started is stopped again and a `SlurmLaneError` is raised.
        """
        ensure_installed(accounting=self.config.accounting)
        if os.geteuid() != 0:
            raise SlurmLaneError("start", "the Slurm lane runs slurmd and munged as root",
                                 fix="run as root (or inside a container where you are root)")
        if self.is_running():
            raise SlurmLaneError("start", f"a lane is already running under {self.base_dir}",
                                 fix="use it, or stop it first (`SlurmLane.attach(dir).stop()`)")
        if _lane_pids(self.base_dir, self.paths.slurm_conf):
            self.stop()
        self._check_base_dir()
        self.ports = self._resolve_ports()
        try:
            self._prepare()
            self._start_munged()
            if self.config.accounting:
                self._start_mariadb()
                self._start_slurmdbd()
                self._register_cluster()
            self._start_slurmctld()
            self._start_slurmds()
            self._wait_nodes_idle()
            self._start_restd()
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise
        return self

    def restart_slurmctld(self) -> None:
        """Start slurmctld again after it died or was killed; it recovers its state from StateSaveLocation
        (and, with accounting, reconnects to the slurmdbd that kept running)."""
        pid = self._own_pid(self.paths.slurmctld_pid)
        if pid is not None:
            self._terminate([pid], 15.0)
        self._start_slurmctld()

    def stop(self, timeout: float = 15.0) -> None:
        """Cancel the lane's jobs and stop every daemon it started, by pid file and environment marker.

        Works from any process; raises `SlurmLaneError` if a lane process survives SIGKILL.
        """
        if self._own_pid(self.paths.slurmctld_pid) is not None and self.paths.slurm_conf.exists():
            self._cancel_all_jobs()
        order = [self.paths.restd_pid("socket"), self.paths.restd_pid("tcp")]
        order += sorted(self.paths.run.glob("slurmd-*.pid")) if self.paths.run.is_dir() else []
        # slurmctld sends its last job records to slurmdbd, which writes them to MariaDB, before each stops.
        order += [self.paths.slurmctld_pid, self.paths.slurmdbd_pid, self.paths.mariadbd_pid,
                  self.paths.munge_pid]
        for pidfile in order:
            pid = self._own_pid(pidfile)
            if pid is not None:
                self._terminate([pid], timeout)
            pidfile.unlink(missing_ok=True)
        leftovers = _lane_pids(self.base_dir, self.paths.slurm_conf)
        if leftovers:
            self._terminate(leftovers, timeout=5.0)
        for proc in self._procs:
            with contextlib.suppress(Exception):
                proc.wait(timeout=1)
        self._procs.clear()
        self._unmount_all()
        survivors = _lane_pids(self.base_dir, self.paths.slurm_conf)
        if survivors:
            listing = ",".join(map(str, survivors))
            raise SlurmLaneError("stop", f"processes {survivors} of the lane survived SIGKILL",
                                 fix=f"inspect them with `ps -o pid,stat,args -p {listing}`")

    def purge(self) -> None:
        """Stop the lane and delete its files: the base dir and, if separate, its runtime dir."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)
        if self.paths.runtime != self.base_dir:
            shutil.rmtree(self.paths.runtime, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------------------------

    def _ports(self) -> LanePorts:
        if self.ports is None:
            raise SlurmLaneError("env", "the lane has no ports yet", fix="call start() or attach() first")
        return self.ports

    def _own_pid(self, pidfile: Path) -> int | None:
        """The pid recorded in `pidfile` if that process is alive and belongs to this lane."""
        pid = read_pid(pidfile)
        if pid is None or not pid_alive(pid):
            return None
        if _environ(pid).get(MARKER_VAR) != str(self.base_dir):
            return None
        return pid

    def _daemon_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        env.update({"SLURM_CONF": str(self.paths.slurm_conf), MARKER_VAR: str(self.base_dir)})
        return env

    def _check_base_dir(self) -> None:
        for sock in (self.paths.munge_socket, self.paths.rest_socket, self.paths.db_socket):
            if len(str(sock)) > 100:
                raise SlurmLaneError("check base dir", f"socket path {sock} is longer than 100 characters",
                                     fix="choose a shorter base dir")

    def _resolve_ports(self) -> LanePorts:
        cfg = self.config
        wanted: dict[str, int] = {}
        if cfg.slurmctld_port:
            wanted["slurmctld"] = cfg.slurmctld_port
        for node in self.node_names:
            if cfg.slurmd_ports.get(node):
                wanted[f"slurmd {node}"] = cfg.slurmd_ports[node]
        if cfg.restd_port:
            wanted["slurmrestd"] = cfg.restd_port
        if cfg.accounting and cfg.slurmdbd_port:
            wanted["slurmdbd"] = cfg.slurmdbd_port
        if cfg.accounting and cfg.mariadb_port:
            wanted["mariadb"] = cfg.mariadb_port
        for what, port in wanted.items():
            if not _port_free(port):
                raise SlurmLaneError(
                    "check ports", f"port {port} for {what} is already in use",
                    fix=f"stop what listens there (`ss -ltnp 'sport = :{port}'`) or choose another port")
        dupes = {p for p in wanted.values() if list(wanted.values()).count(p) > 1}
        if dupes:
            raise SlurmLaneError("check ports", f"ports {sorted(dupes)} are given twice",
                                 fix="give every daemon its own port")
        need = ["slurmctld", *(f"slurmd {n}" for n in self.node_names), "slurmrestd"]
        if cfg.accounting:
            need += ["slurmdbd", "mariadb"]
        free = iter(_pick_ports(len([w for w in need if w not in wanted]), wanted.values()))
        chosen = {w: wanted[w] if w in wanted else next(free) for w in need}
        return LanePorts(
            slurmctld=chosen["slurmctld"],
            slurmd={n: chosen[f"slurmd {n}"] for n in self.node_names},
            restd=chosen["slurmrestd"],
            slurmdbd=chosen.get("slurmdbd"),
            mariadb=chosen.get("mariadb"),
        )

    def _prepare(self) -> None:
        p, cfg, ports = self.paths, self.config, self._ports()
        for directory in (p.base, p.runtime, p.etc, p.spool, p.state_save, p.run, p.log, p.dev, p.rest,
                          p.munge):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)
        for node in cfg.nodes:
            (p.spool / node.name).mkdir(exist_ok=True)
        # Stale sockets and pid files from an earlier run confuse the daemons.
        for stale in (p.munge_socket, p.rest_socket, p.munge_pid):
            stale.unlink(missing_ok=True)
        if not p.munge_key.exists():
            p.munge_key.write_bytes(secrets.token_bytes(1024))
        p.munge_key.chmod(0o400)
        if cfg.jwt and not p.jwt_key.exists():
            p.jwt_key.write_bytes(secrets.token_bytes(64))
        if cfg.jwt:
            p.jwt_key.chmod(0o600)
        for node in cfg.nodes:
            for dev in p.gpu_devices(node.name, node.gpus):
                dev.parent.mkdir(parents=True, exist_ok=True)
                if not dev.exists():
                    try:
                        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(*_GPU_DEVICE))
                    except OSError as exc:
                        raise SlurmLaneError("create GPU devices", f"mknod {dev}: {exc}",
                                             fix="run as root with CAP_MKNOD") from exc
        p.slurm_conf.write_text(render_slurm_conf(cfg, p, ports))
        p.gres_conf.write_text(render_gres_conf(cfg, p))
        p.cgroup_conf.write_text(render_cgroup_conf())
        if cfg.accounting:
            uid, gid = self._system_user(_DB_OS_USER, "prepare the accounting database",
                                         "reinstall mariadb-server, which creates the `mysql` user")
            p.db.mkdir(exist_ok=True)
            os.chown(p.db, uid, gid)
            p.db.chmod(0o755)
            p.db_socket.unlink(missing_ok=True)
            p.mariadb_cnf.write_text(render_mariadb_cnf(p, ports))
        recorded = {**asdict(cfg), "base_dir": str(cfg.base_dir), "slurmd_ports": dict(ports.slurmd),
                    "extra_conf": dict(cfg.extra_conf)}
        state = {"config": recorded, "runtime": str(p.runtime),
                 "ports": {"slurmctld": ports.slurmctld, "slurmd": dict(ports.slurmd), "restd": ports.restd,
                           "slurmdbd": ports.slurmdbd, "mariadb": ports.mariadb}}
        p.state_file.write_text(json.dumps(state, indent=2) + "\n")

    def _launch(self, step: str, argv: list[str], log: Path, fix: str) -> None:
        """Run a self-daemonizing program and fail with its output if the launch itself fails."""
        out = log.with_suffix(".out")
        with out.open("ab") as sink:
            try:
                proc = subprocess.run(argv, env=self._daemon_env(), stdin=subprocess.DEVNULL, stdout=sink,
                                      stderr=subprocess.STDOUT, start_new_session=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise SlurmLaneError(step, f"`{' '.join(argv)}`: {exc}", log=log, fix=fix) from exc
        if proc.returncode != 0:
            detail = f"`{' '.join(argv)}` exited {proc.returncode}: {_tail(out)}"
            raise SlurmLaneError(step, detail, log=log if log.exists() else out, fix=fix)

    def _await(self, step: str, check: Callable[[], bool], pidfile: Path | None, log: Path, fix: str,
               timeout: float | None = None) -> None:
        limit = self.config.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        seen_pid = False
        while time.monotonic() < deadline:
            if check():
                return
            if pidfile is not None:
                pid = self._own_pid(pidfile)
                if pid is not None:
                    seen_pid = True
                elif seen_pid or (pidfile.exists() and read_pid(pidfile) is not None):
                    raise SlurmLaneError(step, f"the daemon died at start: {_tail(log)}", log=log, fix=fix)
            time.sleep(0.1)
        raise SlurmLaneError(step, f"not ready after {limit:.0f}s: {_tail(log)}", log=log, fix=fix)

    def _start_munged(self) -> None:
        p = self.paths
        fix = "read the munged log; a stale munged may hold the socket (`SlurmLane.attach(dir).stop()`)"
        self._launch("start munged", ["/usr/sbin/munged", f"--socket={p.munge_socket}",
                                      f"--key-file={p.munge_key}", f"--pid-file={p.munge_pid}",
                                      f"--log-file={p.munge_log}", f"--seed-file={p.munge_seed}"],
                     p.munge_log, fix)

        def ok() -> bool:
            cred = subprocess.run(["munge", "-n", "-S", str(p.munge_socket)], capture_output=True)
            if cred.returncode != 0:
                return False
            back = subprocess.run(["unmunge", "-S", str(p.munge_socket)], input=cred.stdout,
                                  capture_output=True)
            return back.returncode == 0

        self._await("start munged", ok, p.munge_pid, p.munge_log, fix, timeout=15)

    def _start_slurmctld(self) -> None:
        p = self.paths
        fix = "read the slurmctld log; check that its port is free and slurm.conf is valid"
        self._launch("start slurmctld", ["/usr/sbin/slurmctld", "-f", str(p.slurm_conf)], p.slurmctld_log,
                     fix)

        def up() -> bool:
            ping = subprocess.run(["scontrol", "ping"], env=self.client_env(), capture_output=True, text=True,
                                  timeout=15)
            return ping.returncode == 0 and "is UP" in ping.stdout

        self._await("start slurmctld", up, p.slurmctld_pid, p.slurmctld_log, fix)

    def _start_slurmds(self) -> None:
        p = self.paths
        for node in self.node_names:
            fix = f"read the slurmd log of {node}; check port {self._ports().slurmd[node]} and gres.conf"
            self._launch(f"start slurmd {node}", ["/usr/sbin/slurmd", "-f", str(p.slurm_conf), "-N", node],
                         p.slurmd_log(node), fix)
        for node in self.node_names:
            pidfile = p.slurmd_pid(node)

            def started(pidfile: Path = pidfile) -> bool:
                return self._own_pid(pidfile) is not None

            self._await(f"start slurmd {node}", started, None, p.slurmd_log(node), "read the slurmd log",
                        timeout=15)

    def node_states(self) -> dict[str, str]:
        """Each node's state as `sinfo` prints it (`idle`, `alloc`, `down*`, ...)."""
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=self.client_env(),
                              capture_output=True, text=True, timeout=15)
        states: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            name, _, state = line.partition(" ")
            states[name] = state.strip()
        return states

    def _wait_nodes_idle(self) -> None:
        p = self.paths
        states: dict[str, str] = {}
        deadline = time.monotonic() + self.config.start_timeout
        while time.monotonic() < deadline:
            states = self.node_states()
            if states and all(states.get(n) == "idle" for n in self.node_names):
                return
            for node in self.node_names:
                if self._own_pid(p.slurmd_pid(node)) is None:
                    raise SlurmLaneError(f"start slurmd {node}", f"slurmd died: {_tail(p.slurmd_log(node))}",
                                         log=p.slurmd_log(node), fix="read the slurmd log")
            time.sleep(0.2)
        bad = [n for n in self.node_names if states.get(n) != "idle"]
        first = bad[0] if bad else self.node_names[0]
        listing = ", ".join(f"{n}={states.get(n, '?')}" for n in bad)
        raise SlurmLaneError("wait for idle nodes",
                             f"nodes {listing} not idle after "
                             f"{self.config.start_timeout:.0f}s", log=p.slurmd_log(first),
                             fix=f"read the slurmd and slurmctld logs ({p.slurmctld_log})")

    @staticmethod
    def _system_user(user: str, step: str, fix: str) -> tuple[int, int]:
        """Uid and gid of the unprivileged system user `user`, created when missing."""
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            proc = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                                   "--shell", "/usr/sbin/nologin", user], capture_output=True, text=True)
            if proc.returncode != 0 and "already exists" not in proc.stderr:
                raise SlurmLaneError(step, f"useradd {user}: {proc.stderr.strip()}", fix=fix) from None
            entry = pwd.getpwnam(user)
        if entry.pw_uid == 0:
            raise SlurmLaneError(step, f"user {user} is root; the daemon must run unprivileged", fix=fix)
        return entry.pw_uid, entry.pw_gid

    def _start_restd(self) -> None:
        """Start slurmrestd: rest_auth/local on the unix socket; with JWT, a second one on the TCP port.

        One slurmrestd cannot serve both: JWT pass-through needs `SLURM_JWT=daemon` (auth/jwt for its
        RPCs), and with that set the socket's local authentication no longer works.
        """
        p, ports = self.paths, self._ports()
        uid, gid = self._system_user(self.config.restd_user, "start slurmrestd",
                                     "set restd_user to an unprivileged user (created when missing)")
        os.chown(p.rest, uid, gid)
        common = ["/usr/sbin/slurmrestd", "-f", str(p.slurm_conf), "-s", f"openapi/{REST_API_VERSION}"]
        fix = "read the slurmrestd log; check its port and that the openapi plugin is installed"

        def socket_ready() -> bool:
            return p.rest_socket.exists() and _http_unix_status(p.rest_socket, "/openapi") is not None

        def tcp_ready() -> bool:
            return _http_tcp_status(ports.restd, "/openapi") is not None

        self._spawn("start slurmrestd (socket)", [*common, "-a", "rest_auth/local", f"unix:{p.rest_socket}"],
                    p.restd_pid("socket"), p.restd_log("socket"), (uid, gid), {}, socket_ready, fix, cwd=p.rest)
        if self.config.jwt:
            self._spawn("start slurmrestd (tcp)", [*common, "-a", "rest_auth/jwt", f"127.0.0.1:{ports.restd}"],
                        p.restd_pid("tcp"), p.restd_log("tcp"), (uid, gid), {"SLURM_JWT": "daemon"}, tcp_ready,
                        fix, cwd=p.rest)

    def _spawn(self, step: str, argv: list[str], pidfile: Path, log: Path, identity: tuple[int, int],
               extra_env: Mapping[str, str], ready: Callable[[], bool], fix: str, cwd: Path,
               timeout: float = 20.0) -> None:
        """Run a foreground daemon as `identity` (uid, gid) in its own session; wait until `ready()`."""
        uid, gid = identity
        with log.open("ab") as sink:
            try:
                proc = subprocess.Popen(argv, env={**self._daemon_env(), **extra_env},
                                        stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                        start_new_session=True, user=uid, group=gid, extra_groups=[],
                                        cwd=cwd)
            except OSError as exc:
                raise SlurmLaneError(step, f"{argv[0]}: {exc}", log=log, fix=fix) from exc
        self._procs.append(proc)
        pidfile.write_text(f"{proc.pid}\n")

        def answers() -> bool:
            if proc.poll() is not None:
                raise SlurmLaneError(step, f"exited {proc.returncode}: {_tail(log)}", log=log, fix=fix)
            return ready()

        self._await(step, answers, None, log, fix, timeout=timeout)

    def _start_mariadb(self) -> None:
        """Create the datadir on first start, run MariaDB as `mysql`, and let slurmdbd's account in.

        The account's password is new on every start and kept only in slurmdbd.conf (mode 0600).
        """
        p = self.paths
        identity = self._system_user(_DB_OS_USER, "start MariaDB",
                                     "reinstall mariadb-server, which creates the `mysql` user")
        fix = f"read the MariaDB log; check that port {self._ports().mariadb} is free"
        cnf = f"--defaults-file={p.mariadb_cnf}"
        if not (p.db_data / "mysql").is_dir():
            self._checked("initialise the accounting database",
                          ["mariadb-install-db", cnf, f"--user={_DB_OS_USER}", "--skip-test-db"],
                          p.mariadbd_log, f"read {p.mariadbd_log}; delete {p.db_data} to start afresh")

        def answers() -> bool:
            return subprocess.run(["mariadb-admin", cnf, "ping"], capture_output=True, timeout=10).returncode == 0

        self._spawn("start MariaDB", ["/usr/sbin/mariadbd", cnf], p.mariadbd_pid, p.mariadbd_log, identity, {},
                    answers, fix, cwd=p.db, timeout=self.config.start_timeout)
        password = secrets.token_hex(16)
        account = f"'{_DB_USER}'@'127.0.0.1'"
        sql = (f"CREATE DATABASE IF NOT EXISTS {ACCOUNTING_DB};\n"
               f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY '{password}';\n"
               f"ALTER USER {account} IDENTIFIED BY '{password}';\n"
               f"GRANT ALL ON {ACCOUNTING_DB}.* TO {account};\n")
        self._checked("create the accounting database", ["mariadb", cnf], p.mariadbd_log, fix, stdin=sql)
        # slurmdbd insists on mode 0600 and its SlurmUser as owner: the file holds the database password.
        p.slurmdbd_conf.unlink(missing_ok=True)
        fd = os.open(p.slurmdbd_conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as conf:
            conf.write(render_slurmdbd_conf(self.config, p, self._ports(), password))

    def _start_slurmdbd(self) -> None:
        """slurmdbd daemonizes and writes its pid file; it is ready once sacctmgr gets answers."""
        p = self.paths
        fix = f"read the slurmdbd log; check that port {self._ports().slurmdbd} is free"
        self._launch("start slurmdbd", ["/usr/sbin/slurmdbd"], p.slurmdbd_log, fix)

        def answers() -> bool:
            return self.run("sacctmgr", "-n", "-P", "show", "cluster", "format=cluster", timeout=15,
                            check=False).returncode == 0

        self._await("start slurmdbd", answers, p.slurmdbd_pid, p.slurmdbd_log, fix)

    def _register_cluster(self) -> None:
        """Add the cluster to the accounting database once, without the association it gives root (see the
        module docstring); slurmctld registers with the cluster and loads its associations when it starts."""
        name = self.config.cluster_name
        known = self.run("sacctmgr", "-n", "-P", "show", "cluster", "format=cluster").stdout.split()
        if name not in known:
            self.run("sacctmgr", "-i", "add", "cluster", name)
            self.run("sacctmgr", "-i", "delete", "user", "name=root", f"cluster={name}")

    def _checked(self, step: str, argv: list[str], log: Path, fix: str, stdin: str | None = None) -> None:
        """Run a setup command to completion; fail with its output (which goes to `log`) otherwise."""
        with log.open("ab") as sink:
            try:
                proc = subprocess.run(argv, input=stdin.encode() if stdin is not None else None,
                                      stdin=None if stdin is not None else subprocess.DEVNULL,
                                      stdout=sink, stderr=subprocess.STDOUT, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise SlurmLaneError(step, f"`{argv[0]}`: {exc}", log=log, fix=fix) from exc
        if proc.returncode != 0:
            raise SlurmLaneError(step, f"`{' '.join(argv)}` exited {proc.returncode}: {_tail(log)}", log=log,
                                 fix=fix)

    def _cancel_all_jobs(self) -> None:
        with contextlib.suppress(Exception):
            ids = self.run("squeue", "-h", "-o", "%A", timeout=10, check=False).stdout.split()
            if ids:
                self.run("scancel", *sorted(set(ids)), timeout=10, check=False)
                def drained() -> bool:
                    return not self.run("squeue", "-h", "-o", "%A", timeout=10, check=False).stdout.strip()

                _wait(drained, timeout=5.0, interval=0.2)

    @staticmethod
    def _terminate(pids: list[int], timeout: float) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        if _wait(lambda: not any(pid_alive(p) for p in pids), timeout):
            return
        for pid in pids:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        _wait(lambda: not any(pid_alive(p) for p in pids), 5.0)

    def _unmount_all(self) -> None:
        try:
            mounts = Path("/proc/mounts").read_text().splitlines()
        except OSError:
            return
        prefix = str(self.base_dir) + "/"
        targets = [line.split()[1] for line in mounts if len(line.split()) > 1]
        for target in sorted((t for t in targets if t.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)


def _http_unix_status(sock_path: Path, path: str, headers: Mapping[str, str] | None = None,
                      timeout: float = 5.0) -> int | None:
    """The HTTP status of `GET path` over a unix socket, or None if nothing answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(sock_path))
            extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"
            sock.sendall(request.encode())
            first = sock.recv(128).split(b"\r\n", 1)[0].split()
    except OSError:
        return None
    if len(first) >= 2 and first[1].isdigit():
        return int(first[1])
    return None


def _http_tcp_status(port: int, path: str, timeout: float = 5.0) -> int | None:
    """The HTTP status of `GET path` on 127.0.0.1:port, or None if nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            first = sock.recv(128).split(b"\r\n", 1)[0].split()
    except OSError:
        return None
    if len(first) >= 2 and first[1].isdigit():
        return int(first[1])
    return None
