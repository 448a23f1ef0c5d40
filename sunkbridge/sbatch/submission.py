"""The resolved submission and its contract JSON (DESIGN.md, "Contracts", ``sunk inspect --json``).

Defaults follow one rule, checked against ``scontrol show job -o`` for held jobs on a real Slurm
22.05.8 controller: a value that sbatch/slurmctld always derive the same way is filled in; a value
that depends on the cluster's configuration is ``null``.

Filled in (what scontrol showed with no option given):

* ``job_name``: script file name (``JobName=job.sh``, also for ``sub/job.sh``), ``wrap`` for
  ``--wrap``, ``sbatch`` for a script read from standard input;
* ``nodes``: ``{"min": 1, "max": null}`` (``NumNodes=1``); ``-N 2`` is ``{2, 2}`` (``NumNodes=2-2``);
  a ``--nodelist`` raises the minimum to its host count; ``-n`` below the node count lowers both;
* ``ntasks``: ``-n``, else nodes.min x ntasks_per_node, else nodes.min (``NumTasks``);
* ``cpus_per_task``: 1 (``CPUs/Task=1``);
* ``chdir``: the submission directory; a relative ``--chdir`` is joined to it without normalising,
  as sbatch does (``WorkDir=/tmp/x/./sub``);
* ``exclusive``: false (``OverSubscribe=OK``); true for ``--exclusive[=user|mcs]``;
* ``hold``: false; ``export``: ``ALL`` (sbatch's documented default);
* lists (``gres_per_node``, ``gpus``, ``nodelist``, ``exclude``, ``script_args``) are ``[]`` when empty.

``null`` because nothing was asked: ``output`` and ``error`` are the patterns as given (Slurm then
writes to ``slurm-%j.out``, ``slurm-%A_%a.out`` for arrays, and stderr goes with stdout; squeue
``--json`` shows both as empty), and every other option that was not given.

``null`` because the cluster decides: ``partition`` (default partition), ``time_limit_minutes``
(partition ``DefaultTime``/``MaxTime``: ``UNLIMITED`` on one partition, ``01:00:00`` on another),
``requeue`` (``JobRequeue``), ``open_mode`` (``JobFileAppend``), ``account`` and ``qos`` (user
defaults in accounting), the memory fields (``DefMemPerNode``/``DefMemPerCPU``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sunkbridge.sbatch.arrays import ArraySpec
from sunkbridge.sbatch.dependency import Dependency
from sunkbridge.sbatch.gres import GresRequest, format_gres
from sunkbridge.sbatch.times import Unlimited
from sunkbridge.sbatch.values import SignalSpec

#: The keys of ``sunk inspect --json``, in the order DESIGN.md lists them.
CONTRACT_KEYS = (
    "job_name",
    "partition",
    "nodes",
    "ntasks",
    "ntasks_per_node",
    "cpus_per_task",
    "mem_per_node_mb",
    "mem_per_cpu_mb",
    "mem_per_gpu_mb",
    "gres_per_node",
    "gpus",
    "time_limit_minutes",
    "array",
    "dependency",
    "output",
    "error",
    "chdir",
    "exclusive",
    "constraint",
    "nodelist",
    "exclude",
    "requeue",
    "hold",
    "account",
    "qos",
    "export",
    "open_mode",
    "signal",
    "wrap",
    "container_image",
    "script_args",
)


@dataclass(frozen=True)
class Submission:
    """A submission resolved as sbatch 22.05 resolves it (see the module docstring for defaults).

    ``nodelist`` and ``exclude`` are expanded, sorted, de-duplicated host names (the hosts of
    ``ReqNodeList``/``ExcNodeList``). ``options`` keeps the
    value of every option that was given (by key, after precedence), including the ones the contract
    does not cover.
    """

    job_name: str
    script: str
    script_path: str | None
    script_args: tuple[str, ...]
    chdir: str
    nodes_min: int
    nodes_max: int | None
    ntasks: int
    ntasks_per_node: int | None
    cpus_per_task: int
    output: str | None
    error: str | None
    export: str
    exclusive: bool
    hold: bool
    partition: str | None = None
    mem_per_node_mb: int | None = None
    mem_per_cpu_mb: int | None = None
    mem_per_gpu_mb: int | None = None
    gres_per_node: tuple[GresRequest, ...] = ()
    gpus: tuple[GresRequest, ...] = ()
    gpus_per_task: tuple[GresRequest, ...] = ()
    time_limit_minutes: int | Unlimited | None = None
    array: ArraySpec | None = None
    dependency: Dependency | None = None
    constraint: str | None = None
    nodelist: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    requeue: bool | None = None
    account: str | None = None
    qos: str | None = None
    open_mode: str | None = None
    signal: str | None = None
    signal_spec: SignalSpec | None = None
    wrap: str | None = None
    exclusive_mode: str | None = None
    input: str | None = None
    container: str | None = None
    container_image: str | None = None
    container_mounts: str | None = None
    container_workdir: str | None = None
    options: dict[str, str | None] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def to_contract(self) -> dict[str, Any]:
        """The ``sunk inspect --json`` object: exactly :data:`CONTRACT_KEYS`."""
        out: dict[str, Any] = {
            "job_name": self.job_name,
            "partition": self.partition,
            "nodes": {"min": self.nodes_min, "max": self.nodes_max},
            "ntasks": self.ntasks,
            "ntasks_per_node": self.ntasks_per_node,
            "cpus_per_task": self.cpus_per_task,
            "mem_per_node_mb": self.mem_per_node_mb,
            "mem_per_cpu_mb": self.mem_per_cpu_mb,
            "mem_per_gpu_mb": self.mem_per_gpu_mb,
            "gres_per_node": format_gres(self.gres_per_node),
            "gpus": format_gres(self.gpus),
            "time_limit_minutes": self.time_limit_minutes,
            "array": None
            if self.array is None
            else {"indices": list(self.array.indices), "max_running": self.array.max_running},
            "dependency": None if self.dependency is None else str(self.dependency),
            "output": self.output,
            "error": self.error,
            "chdir": self.chdir,
            "exclusive": self.exclusive,
            "constraint": self.constraint,
            "nodelist": list(self.nodelist),
            "exclude": list(self.exclude),
            "requeue": self.requeue,
            "hold": self.hold,
            "account": self.account,
            "qos": self.qos,
            "export": self.export,
            "open_mode": self.open_mode,
            "signal": self.signal,
            "wrap": self.wrap,
            "container_image": self.container_image,
            "script_args": list(self.script_args),
        }
        assert tuple(out) == CONTRACT_KEYS
        return out
