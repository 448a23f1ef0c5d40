"""Resolve sbatch's argv, environment and script into a :class:`Submission`, as sbatch 22.05 does.

Order of work (sbatch 22.05 ``main``/``process_options_*``):

1. the command line is read once for its structure (unknown, ambiguous or incomplete options fail
   here) and for ``--help``, ``--usage``, ``--version`` and ``--wrap``;
2. the script is read: ``--wrap`` builds one (a script file is then an error), else the first
   operand names the file (searched in the current directory, then ``PATH``), else standard input;
3. ``#SBATCH`` directives are applied, then ``SBATCH_*`` variables, then the command-line options,
   so the command line beats the environment, which beats the script;
4. cross-option checks run (memory options, GPU types, node and task counts).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sunkbridge.sbatch.arrays import DEFAULT_MAX_ARRAY_SIZE, ArraySpec, parse_array
from sunkbridge.sbatch.dependency import Dependency, parse_dependency
from sunkbridge.sbatch.env import env_options, flag_is_on
from sunkbridge.sbatch.errors import SbatchError
from sunkbridge.sbatch.gres import GresRequest, check_typed_consistency, parse_gpus, parse_gres
from sunkbridge.sbatch.hostlist import expand_hostlist, unique_hosts
from sunkbridge.sbatch.memory import parse_mem_mb
from sunkbridge.sbatch.options import Arg, Operands, OptionSpec, ParsedOption, getopt_long
from sunkbridge.sbatch.script import check_script, find_wrapper_directive, read_directives, wrap_script
from sunkbridge.sbatch.submission import Submission
from sunkbridge.sbatch.times import Unlimited, parse_time_limit, parse_time_seconds
from sunkbridge.sbatch.values import (
    SignalSpec,
    parse_choice,
    parse_cpu_freq,
    parse_distribution,
    parse_exclusive,
    parse_extra_node_info,
    parse_get_user_env,
    parse_hint,
    parse_int,
    parse_mail_type,
    parse_nice,
    parse_no_kill,
    parse_nodes,
    parse_open_mode,
    parse_priority,
    parse_profile,
    parse_propagate,
    parse_signal,
    parse_switches,
)


class SbatchInfoRequest(Exception):
    """The command line asks for sbatch's help, usage or version instead of a submission."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


_POSITIVE_INTS = frozenset(
    {
        "ntasks",
        "cpus-per-task",
        "ntasks-per-node",
        "ntasks-per-core",
        "ntasks-per-socket",
        "ntasks-per-gpu",
        "ntasks-per-tres",
        "cpus-per-gpu",
        "mincpus",
        "sockets-per-node",
        "cores-per-socket",
        "threads-per-core",
    }
)
_NON_NEGATIVE_INTS = frozenset({"core-spec", "thread-spec"})
_MEMORY = ("mem", "mem-per-cpu", "mem-per-gpu")
#: Options whose value sbatch/slurmctld only check once all sources are applied: a bad value that a
#: later source replaces is never seen (``--gres=gpu:x --gres=gpu:2`` is accepted). In check order.
_LATE = (
    "gres",
    "gpus",
    "gpus-per-node",
    "gpus-per-task",
    "gpus-per-socket",
    "hint",
    "propagate",
    "nodelist",
    "exclude",
    "array",
    "dependency",
)
_ENV_NAME = {
    "mem": "SBATCH_MEM_PER_NODE",
    "mem-per-cpu": "SBATCH_MEM_PER_CPU",
    "mem-per-gpu": "SBATCH_MEM_PER_GPU",
}


@dataclass
class _Value:
    raw: str | None
    parsed: object
    source: str
    what: str = ""


@dataclass
class _State:
    values: dict[str, _Value] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def get(self, key: str) -> object:
        v = self.values.get(key)
        return None if v is None else v.parsed


def _parse_value(key: str, raw: str | None, what: str, max_array_size: int, cwd: str) -> object:
    """Validate and parse one option value (``raw`` is None for options given without a value)."""
    if raw is None:
        if key == "exclusive":
            return parse_exclusive(None, what)
        if key == "no-kill":
            return parse_no_kill(None, what)
        if key == "nice":
            return parse_nice(None, what)
        return True
    if key in _POSITIVE_INTS:
        return parse_int(raw, what, minimum=1)
    if key in _NON_NEGATIVE_INTS:
        return parse_int(raw, what, minimum=0)
    parser: Callable[[str, str], object] | None = {
        "nodes": parse_nodes,
        "mem": parse_mem_mb,
        "mem-per-cpu": parse_mem_mb,
        "mem-per-gpu": parse_mem_mb,
        "tmp": parse_mem_mb,
        "time": parse_time_limit,
        "time-min": parse_time_limit,
        "delay-boot": parse_time_seconds,
        "gres": parse_gres,
        "gpus": parse_gpus,
        "gpus-per-node": parse_gpus,
        "gpus-per-task": parse_gpus,
        "gpus-per-socket": parse_gpus,
        "dependency": parse_dependency,
        "signal": parse_signal,
        "open-mode": parse_open_mode,
        "exclusive": parse_exclusive,
        "no-kill": parse_no_kill,
        "mail-type": parse_mail_type,
        "nice": parse_nice,
        "get-user-env": parse_get_user_env,
        "propagate": parse_propagate,
        "profile": parse_profile,
        "hint": parse_hint,
        "switches": parse_switches,
        "extra-node-info": parse_extra_node_info,
        "distribution": parse_distribution,
        "cpu-freq": parse_cpu_freq,
        "priority": parse_priority,
    }.get(key)
    if parser is not None:
        return parser(raw, what)
    if key == "array":
        return parse_array(raw, max_array_size, what)
    if key in ("nodelist", "exclude"):
        return _hosts(raw, what, cwd)
    if key == "kill-on-invalid-dep":
        return parse_choice(raw, what, ("yes", "no"))
    if key == "gres-flags":
        return parse_choice(raw, what, ("enforce-binding", "disable-binding"))
    if key == "wait-all-nodes":
        value = parse_int(raw, what)
        if value > 1:
            raise SbatchError(f"{what}={raw!r}: use 0 or 1")
        return value
    return raw


def _path(raw: str, cwd: str) -> str:
    return raw if raw.startswith("/") else os.path.join(cwd, raw)


def _check_readable(raw: str, what: str, cwd: str) -> None:
    if not os.access(_path(raw, cwd), os.R_OK) or os.path.isdir(_path(raw, cwd)):
        raise SbatchError(f"{what}={raw!r}: cannot read this file; check the path")


def _hosts_file(raw: str, what: str, cwd: str) -> list[str]:
    try:
        with open(_path(raw, cwd), encoding="utf-8", errors="surrogateescape") as fh:
            text = ",".join(fh.read().split())
    except OSError as exc:
        raise SbatchError(
            f"{what}={raw!r}: cannot read node list file ({exc.strerror}); check the path"
        ) from None
    return expand_hostlist(text, what)


def _hosts(raw: str, what: str, cwd: str) -> list[str]:
    """Expand a host list; a value containing '/' names a file of hosts, as in sbatch."""
    if "/" in raw:
        path = raw if raw.startswith("/") else os.path.join(cwd, raw)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as fh:
                raw = ",".join(fh.read().split())
        except OSError as exc:
            raise SbatchError(
                f"{what}={raw!r}: cannot read node list file ({exc.strerror}); check the path"
            ) from None
    return expand_hostlist(raw, what)


def _apply(
    state: _State,
    spec: OptionSpec,
    raw: str | None,
    source: str,
    what: str,
    max_array_size: int,
    cwd: str,
    location: str = "",
) -> None:
    """Set one option from one source (later calls override earlier ones).

    ``location`` (e.g. ``job.sh line 3``) prefixes errors about values that are checked late.
    """
    key = spec.key
    if key in _LATE and raw is not None:
        state.values[key] = _Value(raw, None, source, f"{location}: {what}" if location else what)
        return
    if key == "nodefile" and raw is not None:
        # -F and -w fill the same request: the last one given wins
        state.values["nodelist"] = _Value(raw, _hosts_file(raw, what, cwd), source)
        return
    if key in ("bbf", "export-file") and raw is not None and not (key == "export-file" and raw.isdigit()):
        _check_readable(raw, what, cwd)
    if key in ("requeue", "no-requeue"):
        state.values["requeue"] = _Value(raw, key == "requeue", source)
        return
    if key in ("exclusive", "oversubscribe"):
        mode = (
            "oversubscribe" if key == "oversubscribe" else _parse_value(key, raw, what, max_array_size, cwd)
        )
        state.values["shared"] = _Value(raw, mode, source)
        return
    state.values[key] = _Value(raw, _parse_value(key, raw, what, max_array_size, cwd), source)


def _reset(state: _State, spec: OptionSpec) -> None:
    key = {
        "requeue": "requeue",
        "no-requeue": "requeue",
        "exclusive": "shared",
        "oversubscribe": "shared",
    }.get(spec.key, spec.key)
    state.values.pop(key, None)


def _what(opt: ParsedOption) -> str:
    """How an option is named in messages: as spelled, plus the long name for short options."""
    if opt.spelled.startswith("--"):
        return opt.spelled
    return f"{opt.spelled}/--{opt.key}"


def _find_script(name: str, cwd: str, env: Mapping[str, str]) -> str | None:
    """Locate the script as sbatch's ``search_path`` does: cwd first, then ``PATH``."""
    if name.startswith("/"):
        return name
    if name.startswith("."):
        return os.path.join(cwd, name)
    dirs = [cwd] + [d for d in env.get("PATH", "").split(":") if d]
    for d in dirs:
        candidate = os.path.join(d if os.path.isabs(d) else os.path.join(cwd, d), name)
        if os.access(candidate, os.R_OK):
            return candidate
    return None


def _read_script_file(name: str, cwd: str, env: Mapping[str, str]) -> tuple[str, bytes]:
    path = _find_script(name, cwd, env)
    if path is None or not os.path.exists(path):
        raise SbatchError(f"{name}: unable to open the batch script (no such file); check the path")
    if os.path.isdir(path):
        raise SbatchError(f"{name}: is a directory, not a batch script; give the script file")
    try:
        with open(path, "rb") as fh:
            return path, fh.read()
    except OSError as exc:
        raise SbatchError(
            f"{name}: unable to open the batch script ({exc.strerror}); check the path"
        ) from None


def _first_pass(argv: Sequence[str]) -> tuple[list[ParsedOption], int]:
    """Read the command line's structure; stop early for help, usage and version."""
    stop = Operands()
    options: list[ParsedOption] = []
    for opt in getopt_long(argv, stop=stop):
        if opt.key in ("help", "usage", "version"):
            raise SbatchInfoRequest(opt.key)
        options.append(opt)
    if stop.start < len(argv) and argv[stop.start] == ":":
        raise SbatchError(
            "':' on the command line separates the components of a heterogeneous job, which sunkbridge "
            "does not support; submit the components as separate jobs"
        )
    return options, stop.start


def _memory_checks(state: _State) -> None:
    set_by_cli = [k for k in _MEMORY if k in state.values and state.values[k].source != "env"]
    if len(set_by_cli) > 1:
        raise SbatchError(
            "--mem, --mem-per-cpu and --mem-per-gpu are mutually exclusive (got "
            + " and ".join("--" + k for k in set_by_cli)
            + "); keep one"
        )
    if set_by_cli:
        for k in _MEMORY:
            if k != set_by_cli[0]:
                state.values.pop(k, None)
        return
    set_by_env = [k for k in _MEMORY if k in state.values]
    if len(set_by_env) > 1:
        raise SbatchError(
            " and ".join(_ENV_NAME[k] for k in set_by_env)
            + " are mutually exclusive; unset all but one of SBATCH_MEM_PER_NODE, SBATCH_MEM_PER_CPU and "
            "SBATCH_MEM_PER_GPU"
        )


@dataclass
class _GpuCounts:
    nodes_min: int
    nodes_max: int | None
    ntasks: int | None
    ntasks_per_node: int | None
    sockets_given: bool


def _gpu_error(reason: str) -> SbatchError:
    return SbatchError(f"GPU request does not add up: {reason}")


def _check_gpu_counts(
    c: _GpuCounts,
    per_node: tuple[GresRequest, ...],
    per_job: tuple[GresRequest, ...],
    per_task: tuple[GresRequest, ...],
    per_socket: tuple[GresRequest, ...],
) -> None:
    """The consistency rules sbatch 22.05 applies to each GRES (name and type) across the per-job,
    per-node, per-task and per-socket counts; may fix node and task counts, as sbatch does."""

    def total(requests: tuple[GresRequest, ...], key: tuple[str, str | None]) -> int:
        return sum(r.count for r in requests if (r.name, r.type) == key)

    keys = dict.fromkeys((r.name, r.type) for r in per_node + per_job + per_task + per_socket)
    for key in keys:
        label = key[0] if key[1] is None else f"{key[0]}:{key[1]}"
        job, node, task, sock = (total(x, key) for x in (per_job, per_node, per_task, per_socket))
        if job and ((node and node > job) or (task and task > job) or (sock and sock > job)):
            raise _gpu_error(f"the job-wide {label} count {job} is below a per-node/task/socket count")
        if node and ((task and task > node) or (sock and sock > node)):
            raise _gpu_error(f"the per-node {label} count {node} is below the per-task/socket count")
        if sock and not c.sockets_given:
            raise _gpu_error("--gpus-per-socket needs --sockets-per-node; add it")
        if job and node:
            if job % node:
                raise _gpu_error(
                    f"the job-wide {label} count {job} is not a multiple of the per-node count {node}"
                )
            nodes = job // node
            if nodes < c.nodes_min or (c.nodes_max is not None and nodes > c.nodes_max):
                raise _gpu_error(
                    f"{job} {label} at {node} per node need {nodes} nodes, outside the requested node count"
                )
            c.nodes_min = c.nodes_max = nodes
        if task:
            if job:
                if job % task:
                    raise _gpu_error(
                        f"the job-wide {label} count {job} is not a multiple of the per-task count {task}"
                    )
                if c.ntasks is None:
                    c.ntasks = job // task
                elif c.ntasks != job // task:
                    raise _gpu_error(
                        f"{c.ntasks} tasks at {task} {label} each do not make the job-wide {job}"
                    )
            elif c.ntasks is not None:
                job = c.ntasks * task
            else:
                raise _gpu_error("--gpus-per-task needs a task count; add -n/--ntasks or --gpus")
        if node and task:
            if node % task:
                raise _gpu_error(
                    f"the per-node {label} count {node} is not a multiple of the per-task count {task}"
                )
            if not c.ntasks_per_node:
                c.ntasks_per_node = node // task
            elif c.ntasks_per_node != node // task:
                raise _gpu_error(
                    f"--ntasks-per-node={c.ntasks_per_node} does not match {node} {label} per node"
                )
        if job:
            if job < c.nodes_min:
                raise _gpu_error(
                    f"{job} {label} cannot cover {c.nodes_min} nodes; ask for fewer nodes or more GPUs"
                )
            if c.nodes_max is not None and job < c.nodes_max:
                c.nodes_max = job


def _requests(state: _State, key: str) -> tuple[GresRequest, ...]:
    value = state.get(key)
    return value if isinstance(value, tuple) else ()


def resolve(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    *,
    read_stdin: Callable[[], bytes] | None = None,
    max_array_size: int = DEFAULT_MAX_ARRAY_SIZE,
) -> Submission:
    """Resolve a submission exactly as ``sbatch ARGV`` would, in environment ``env`` and directory ``cwd``.

    ``argv`` excludes the program name. ``read_stdin`` supplies the script when no script file and no
    ``--wrap`` are given. ``max_array_size`` is the cluster's ``MaxArraySize``. Raises
    :class:`SbatchError` for anything sbatch rejects and :class:`SbatchInfoRequest` for ``--help``,
    ``--usage`` and ``--version``.
    """
    cli_options, first_operand = _first_pass(argv)
    operands = list(argv[first_operand:])
    wrap: str | None = None
    for opt in cli_options:
        if opt.key == "wrap":
            wrap = opt.value
    if wrap is not None and operands:
        raise SbatchError(
            f"script arguments are not permitted with --wrap (got {operands[0]!r}); "
            "drop the script or drop --wrap"
        )

    script_path: str | None = None
    script_args: tuple[str, ...] = ()
    if wrap is not None:
        script = wrap_script(wrap)
        label = "--wrap"
        default_name = "wrap"
    elif operands:
        script_path, data = _read_script_file(operands[0], cwd, env)
        label = operands[0]
        script = check_script(data, label)
        script_args = tuple(operands[1:])
        default_name = os.path.basename(operands[0])
    else:
        if read_stdin is None:
            raise SbatchError(
                "no batch script given; name a script file, use --wrap, or pipe a script on stdin"
            )
        label = "<stdin>"
        script = check_script(read_stdin(), label)
        default_name = "sbatch"

    state = _State()

    # 1. #SBATCH directives (sbatch does not read them from the script that --wrap builds)
    directives = read_directives(script if wrap is None else "#!/bin/sh\n", label)
    state.warnings.extend(directives.warnings)
    words = [w.text for w in directives.words]
    labels = [f"{label} line {w.line}" for w in directives.words]
    stop = Operands()
    for opt in getopt_long(words, labels, stop=stop):
        if opt.spec.early:
            continue
        try:
            _apply(state, opt.spec, opt.value, "script", _what(opt), max_array_size, cwd, labels[opt.index])
        except SbatchError as exc:
            raise SbatchError(f"{labels[opt.index]}: {exc.message}") from None
    if stop.start < len(words):
        raise SbatchError(
            f"{labels[stop.start]}: invalid directive {words[stop.start]!r} in #SBATCH line; "
            "only options may follow #SBATCH (quote values that contain blanks)"
        )

    # 2. SBATCH_* environment
    for var, spec, value in env_options(env):
        if spec.arg is Arg.NONE:
            if flag_is_on(value):
                _apply(state, spec, None, "env", var, max_array_size, cwd)
            else:
                _reset(state, spec)
            continue
        raw: str | None = value
        if spec.arg is Arg.OPTIONAL and value == "":
            raw = None
        _apply(state, spec, raw, "env", var, max_array_size, cwd)

    # 3. command line
    for opt in cli_options:
        if not opt.spec.early:
            _apply(state, opt.spec, opt.value, "cli", _what(opt), max_array_size, cwd)

    # #PBS / #BSUB lines, which sbatch would translate unless --ignore-pbs ended up set (from the
    # script, SBATCH_IGNORE_PBS or the command line; a script argument does not count)
    if "ignore-pbs" not in state.values:
        found = find_wrapper_directive(script)
        if found is not None:
            raise SbatchError(
                f"{label} line {found[0]}: {found[1]} directives are not translated by sunkbridge; "
                "rewrite them as #SBATCH lines, or pass --ignore-pbs to skip them"
            )

    for late_key in _LATE:
        late = state.values.get(late_key)
        if late is not None and late.parsed is None:
            late.parsed = _parse_value(late_key, late.raw, late.what, max_array_size, cwd)

    return _finish(state, script, script_path, script_args, default_name, wrap, cwd)


def _finish(
    state: _State,
    script: str,
    script_path: str | None,
    script_args: tuple[str, ...],
    default_name: str,
    wrap: str | None,
    cwd: str,
) -> Submission:
    """Cross-option checks and derived values."""
    _memory_checks(state)

    gpus_per_node = _requests(state, "gpus-per-node")
    gres = _requests(state, "gres")
    per_node = gpus_per_node + gres
    gpus = _requests(state, "gpus")
    gpus_per_task = _requests(state, "gpus-per-task")
    every_gpu = per_node + gpus + gpus_per_task + _requests(state, "gpus-per-socket")
    # sbatch checks all GPU requests together (--gpus=a100:2 with --gpus-per-node=2 is refused)
    check_typed_consistency(every_gpu, "--gres/--gpus/--gpus-per-node/--gpus-per-task")
    any_gpu = any(r.name == "gpu" for r in every_gpu)
    mem_per_gpu = state.get("mem-per-gpu")
    if mem_per_gpu is not None and not any_gpu:
        raise SbatchError(
            f"--mem-per-gpu={mem_per_gpu} was given but no GPU was requested; add --gpus, --gpus-per-node "
            "or --gres=gpu:N, or use --mem"
        )

    distribution = _str(state, "distribution")
    if (
        distribution is not None
        and distribution.lower().startswith("arbitrary")
        and not state.get("nodelist")
    ):
        raise SbatchError(
            f"--distribution={distribution}: the arbitrary distribution needs a node list; add -w/--nodelist"
        )

    nodes = state.get("nodes")
    nodes_set = isinstance(nodes, tuple)
    nodes_min, nodes_max = nodes if isinstance(nodes, tuple) else (1, None)
    nodelist_hosts = state.get("nodelist")
    uniq: list[str] = []
    if isinstance(nodelist_hosts, list) and nodelist_hosts:
        uniq = unique_hosts(nodelist_hosts)
        if not nodes_set or nodes_min < len(uniq):
            nodes_min = len(uniq)
        if nodes_max is not None and nodes_max < nodes_min:
            raise SbatchError(
                f"--nodelist names {nodes_min} nodes but --nodes allows at most {nodes_max}; "
                f"raise --nodes to {nodes_min} or shorten the node list"
            )
    ntasks_value = state.get("ntasks")
    ntpn_value = state.get("ntasks-per-node")
    ntasks_per_node = ntpn_value if isinstance(ntpn_value, int) else None
    explicit_tasks = ntasks_value if isinstance(ntasks_value, int) else None
    if explicit_tasks is not None and nodes_min == 0:
        nodes_min = 1  # "-N 0 -n 5" showed NumNodes=1
    if every_gpu:
        if explicit_tasks is not None:
            known_tasks: int | None = explicit_tasks
        elif nodes_set or ntasks_per_node:
            known_tasks = nodes_min * (ntasks_per_node or 1)
        else:
            known_tasks = None
        sockets = state.get("sockets-per-node") or state.get("extra-node-info")
        counts = _GpuCounts(nodes_min, nodes_max, known_tasks, ntasks_per_node, sockets is not None)
        _check_gpu_counts(counts, per_node, gpus, gpus_per_task, _requests(state, "gpus-per-socket"))
        nodes_min, nodes_max, ntasks_per_node = counts.nodes_min, counts.nodes_max, counts.ntasks_per_node
        if explicit_tasks is None and gpus_per_task:
            explicit_tasks = counts.ntasks
    if explicit_tasks is not None:
        ntasks = explicit_tasks
        if ntasks_per_node and not nodes_set and not uniq:
            # slurmctld divides and rounds down: -n 4 --ntasks-per-node=2 gives 2 nodes, -n 3 gives 1
            nodes_min = max(nodes_min, ntasks // ntasks_per_node)
        if ntasks < nodes_min:
            state.warnings.append(
                f"can't run {ntasks} processes on {nodes_min} nodes, setting nnodes to {ntasks}"
            )
            nodes_min = nodes_max = ntasks
            # sbatch then keeps only the first hosts of the sorted node list
            uniq = uniq[:ntasks]
        elif nodes_max is not None and nodes_max > ntasks:
            nodes_max = ntasks
    elif ntasks_per_node:
        ntasks = nodes_min * ntasks_per_node
    else:
        ntasks = nodes_min

    array = state.get("array")
    array_spec = array if isinstance(array, ArraySpec) else None
    chdir = _str(state, "chdir")
    if chdir is None:
        chdir = cwd
    elif not chdir.startswith("/"):
        chdir = cwd.rstrip("/") + "/" + chdir
    shared = state.get("shared")
    exclusive_mode = shared if isinstance(shared, str) else None
    requeue = state.get("requeue")
    time_limit = state.get("time")
    mem = {k: state.get(k) for k in _MEMORY}
    exclude = state.get("exclude")
    dependency = state.get("dependency")
    signal_spec = state.get("signal")
    cpt = state.get("cpus-per-task")
    options = {key: v.raw for key, v in state.values.items()}
    job_name = _str(state, "job-name")

    return Submission(
        job_name=default_name if job_name is None else job_name,
        script=script,
        script_path=script_path,
        script_args=script_args,
        chdir=chdir,
        nodes_min=nodes_min,
        nodes_max=nodes_max,
        ntasks=ntasks,
        ntasks_per_node=ntasks_per_node,
        cpus_per_task=cpt if isinstance(cpt, int) else 1,
        output=_str(state, "output"),
        error=_str(state, "error"),
        export=_export(state),
        exclusive=exclusive_mode in ("exclusive", "user", "mcs"),
        hold=state.get("hold") is True,
        partition=_str(state, "partition"),
        mem_per_node_mb=_int(mem["mem"]),
        mem_per_cpu_mb=_int(mem["mem-per-cpu"]),
        mem_per_gpu_mb=_int(mem["mem-per-gpu"]),
        gres_per_node=per_node,
        gpus=gpus,
        gpus_per_task=gpus_per_task,
        time_limit_minutes=_time(time_limit),
        array=array_spec,
        dependency=dependency if isinstance(dependency, Dependency) else None,
        constraint=_str(state, "constraint"),
        nodelist=tuple(uniq),
        exclude=tuple(unique_hosts(exclude)) if isinstance(exclude, list) else (),
        requeue=requeue if isinstance(requeue, bool) else None,
        account=_str(state, "account"),
        qos=_str(state, "qos"),
        open_mode=_str_parsed(state, "open-mode"),
        signal=_str(state, "signal"),
        signal_spec=signal_spec if isinstance(signal_spec, SignalSpec) else None,
        wrap=wrap,
        exclusive_mode=exclusive_mode,
        input=_str(state, "input"),
        container=_str(state, "container"),
        container_image=_str(state, "container-image"),
        container_mounts=_str(state, "container-mounts"),
        container_workdir=_str(state, "container-workdir"),
        options=options,
        warnings=tuple(state.warnings),
    )


def _str(state: _State, key: str) -> str | None:
    v = state.values.get(key)
    return v.raw if v is not None else None


def _str_parsed(state: _State, key: str) -> str | None:
    v = state.get(key)
    return v if isinstance(v, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: object) -> int | Unlimited | None:
    if value == "UNLIMITED":
        return "UNLIMITED"
    return value if isinstance(value, int) else None


def _export(state: _State) -> str:
    value = _str(state, "export")
    return "ALL" if value is None else value
