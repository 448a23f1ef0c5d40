"""Differential tests: `sunk inspect --json` against what real slurmctld resolves for the same submission.

Every case of `corpus/cases.yaml` is submitted to the lane with `sbatch --hold --parsable` (plus the case's
argv and environment, from the case's own working directory). The held job is read back with
`scontrol show job -o` and `squeue --json`, mapped onto the contract keys of DESIGN.md by `slurm_view`,
and compared key by key with `sunk inspect --json --hold --parsable <same argv>` run with the same
environment and working directory. For cases sbatch refuses, `sunk inspect` must refuse too: a non-zero
exit and a one-line reason on stderr.

Two checks per case:
- `test_slurm_resolves_case_as_expected` keeps the corpus honest: the case's `expect` block (written by
  hand from Slurm's documented semantics) must match what the real slurmctld resolved.
- `test_sunk_inspect_agrees_with_slurm` is the differential check; the session summary prints the score.

Contract keys compared, and where Slurm shows them:
  job_name (squeue --json name), partition (Partition), nodes (NumNodes `min[-max]`), ntasks (NumTasks),
  ntasks_per_node (NtasksPerN:B:S:C, 0 = not set), cpus_per_task (CPUs/Task), mem_per_node_mb /
  mem_per_cpu_mb (MinMemoryNode / MinMemoryCPU, only when the job's JOB_MEM_SET flag says memory was asked;
  otherwise Slurm shows the configured DefMemPerCPU), mem_per_gpu_mb (MemPerTres gres:gpu:N),
  gres_per_node (TresPerNode), gpus (TresPerJob) (both compared as multisets; Slurm keeps `--gres=gpu`
  without its count, so a missing count reads as 1), time_limit_minutes (TimeLimit), array (ArrayTaskId,
  ArrayTaskThrottle), dependency (Dependency, states and `_*` array markers dropped), output / error
  (squeue --json standard_output / standard_error: the pattern as given, made absolute against the working
  directory; empty when not asked), chdir (WorkDir), exclusive (OverSubscribe=NO), constraint (Features),
  nodelist / exclude (ReqNodeList / ExcNodeList, expanded, compared as sets), requeue (Requeue),
  hold (Reason=JobHeldUser), account (Account), wrap (the batch script sbatch generated), script_args
  (the command line after the script; Slurm joins it with spaces, so it is compared as that joined string).

Where a key is null in `sunk inspect` (nothing asked), Slurm's value must be the lane's default for it
(`lane_defaults`): default partition, 1 node minimum, 1 CPU per task, UNLIMITED time (the partitions have
no DefaultTime), the submission directory, requeue on, not exclusive.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from sunkbridge.lanes.slurm import SlurmLane

CORPUS_FILE = Path(__file__).parent / "corpus" / "cases.yaml"

CONTRACT_FIELDS = (
    "job_name", "partition", "nodes", "ntasks", "ntasks_per_node", "cpus_per_task", "mem_per_node_mb",
    "mem_per_cpu_mb", "mem_per_gpu_mb", "gres_per_node", "gpus", "time_limit_minutes", "array", "dependency",
    "output", "error", "chdir", "exclusive", "constraint", "nodelist", "exclude", "requeue", "hold",
    "account", "qos", "export", "open_mode", "signal", "wrap", "container_image", "script_args",
)

UNOBSERVABLE: dict[str, str] = {
    "qos": "without accounting storage slurmctld accepts --qos but keeps no QOS on the job (QOS=(null))",
    "export": "Slurm 22.05 shows no job environment in scontrol or squeue --json",
    "open_mode": "not shown by scontrol or squeue --json in 22.05",
    "signal": "not shown by scontrol or squeue --json in 22.05",
    "container_image": "a pyxis (SPANK) option; the lane has no pyxis, so sbatch has no such option",
}
"""Contract keys that cannot be observed through scontrol/squeue on this lane; skipped, with the reason."""

class Scoreboard(Protocol):
    """The session scoreboard of conftest.py (per case: agreed, and the disagreements)."""

    agree: dict[str, bool]
    notes: dict[str, list[str]]


COMPARED = tuple(f for f in CONTRACT_FIELDS if f not in UNOBSERVABLE)
LIST_FIELDS = frozenset({"gres_per_node", "gpus", "nodelist", "exclude", "script_args"})
PLACEHOLDERS = ("@DEP1@", "@DEP2@", "@CWD@")


# ---------------------------------------------------------------------------------------------------------
# The corpus


@dataclass(frozen=True)
class Case:
    """One submission of the corpus, as data."""

    name: str
    about: str
    argv: tuple[str, ...]
    script: str | None = None
    script_name: str = "job.sbatch"
    crlf: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    expect: Mapping[str, Any] = field(default_factory=dict)
    reject: bool = False
    reason: str | None = None


def load_corpus(path: Path = CORPUS_FILE) -> list[Case]:
    """The cases of a corpus file, in file order."""
    raw = yaml.safe_load(path.read_text())
    cases = []
    for item in raw:
        cases.append(Case(
            name=item["name"], about=item.get("about", ""), argv=tuple(str(a) for a in item.get("argv", ())),
            script=item.get("script"), script_name=item.get("script_name", "job.sbatch"),
            crlf=bool(item.get("crlf", False)),
            env={k: str(v) for k, v in (item.get("env") or {}).items()},
            expect=item.get("expect") or {}, reject=bool(item.get("reject", False)),
            reason=item.get("reason"),
        ))
    return cases


CASES = load_corpus()


def substitute(value: Any, subs: Mapping[str, str]) -> Any:
    """`value` with every placeholder replaced, through lists and dicts."""
    if isinstance(value, str):
        for key, repl in subs.items():
            value = value.replace(key, repl)
        return value
    if isinstance(value, list):
        return [substitute(v, subs) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, subs) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------------------
# Reading Slurm's output

_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_/:]*)=")


def parse_scontrol_line(line: str) -> dict[str, str]:
    """`Key=Value` pairs of one `scontrol show job -o` line; a value runs up to the next ` Key=`."""
    matches = list(_KEY.finditer(line))
    record: dict[str, str] = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        record[match.group(1)] = line[match.end():end].strip()
    return record


def _split_top(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p]


def _expand_ranges(body: str) -> list[str]:
    out = []
    for item in body.split(","):
        lo, _, hi = item.partition("-")
        width = len(lo)
        for n in range(int(lo), int(hi or lo) + 1):
            out.append(str(n).zfill(width))
    return out


def expand_hostlist(expr: str | None) -> list[str]:
    """Host names of a Slurm hostlist (`gpu-[001-003,007],cpu-1`); bracket groups multiply out."""
    if not expr or expr == "(null)":
        return []
    hosts: list[str] = []
    for part in _split_top(expr):
        names = [""]
        for literal, body in re.findall(r"([^\[]*)(?:\[([^\]]*)\])?", part):
            if not literal and not body:
                continue
            names = [n + literal for n in names]
            if body:
                names = [n + r for n in names for r in _expand_ranges(body)]
        hosts.extend(names)
    return hosts


def expand_array(spec: str) -> tuple[list[int], int | None]:
    """Indices and throttle of an array spec as Slurm prints it (`1,4,7,10%2`, `0-1000`, `0-20:5`)."""
    body, _, throttle = spec.partition("%")
    indices: list[int] = []
    for item in body.split(","):
        rng, _, step = item.partition(":")
        lo, _, hi = rng.partition("-")
        indices.extend(range(int(lo), int(hi or lo) + 1, int(step or 1)))
    return sorted(set(indices)), int(throttle) if throttle else None


def minutes(value: str) -> int | str:
    """Minutes of a TimeLimit (`[D-]HH:MM:SS`, `MM:SS`), or `"UNLIMITED"`."""
    if value in ("UNLIMITED", "INFINITE", "Partition_Limit"):
        return "UNLIMITED"
    days, _, clock = value.rpartition("-")
    fields = [int(f) for f in clock.split(":")]
    while len(fields) < 3:
        fields.insert(0, 0)
    hours, mins, secs = fields
    total = int(days or 0) * 1440 + hours * 60 + mins
    return total + (1 if secs else 0)


_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def mib(value: str) -> int:
    """MiB of a Slurm memory figure (`4G`, `1000M`, `0`)."""
    unit = value[-1].upper()
    if unit in _UNITS:
        return int(float(value[:-1]) * _UNITS[unit])
    return int(value)


def canonical_dependency(text: str | None) -> str | None:
    """A dependency string in one canonical form: one `type:id` per job, states and `_*` dropped.

    `afterok:1:2,afterany:1` and Slurm's `afterok:1(unfulfilled),afterok:2_*(unfulfilled),afterany:1(...)`
    both become `afterok:1,afterok:2,afterany:1`; `?` (any of) is kept as the separator.
    """
    if text is None or text in ("", "(null)"):
        return None
    sep = "?" if "?" in text else ","
    items: list[str] = []
    for item in text.split(sep):
        item = re.sub(r"\([^)]*\)$", "", item.strip())
        kind, _, ids = item.partition(":")
        if not ids:
            items.append(kind)
            continue
        for job in ids.split(":"):
            items.append(f"{kind}:{job.replace('_*', '')}")
    return sep.join(items)


def _null(value: str | None) -> str | None:
    return None if value in (None, "", "(null)") else value


def _gres_list(value: str | None) -> list[str]:
    if not _null(value):
        return []
    assert value is not None
    return [item.removeprefix("gres:") for item in value.split(",") if item]


def _wrap_command(script: str | None) -> str | None:
    if not script or "# This script was created by sbatch --wrap." not in script:
        return None
    body = script.split("# This script was created by sbatch --wrap.", 1)[1]
    return body.strip("\n")


def slurm_view(record: Mapping[str, str], job: Mapping[str, Any] | None = None,
               batch_script: str | None = None) -> dict[str, Any]:
    """The contract keys of DESIGN.md read from one held job: its `scontrol show job -o` record, its
    `squeue --json` entry (exact strings: name, command, output patterns, flags) and, for --wrap jobs,
    the batch script sbatch generated. Keys Slurm cannot show (see UNOBSERVABLE) are left out."""
    job = job or {}
    flags = set(job.get("flags") or [])
    mem_asked = "JOB_MEM_SET" in flags if job else True
    lo, _, hi = record["NumNodes"].partition("-")
    per_node = record.get("NtasksPerN:B:S:C", "0").split(":")[0]
    mem_per_gpu = None
    for item in _gres_list(record.get("MemPerTres")):
        name, _, amount = item.rpartition(":")
        if name == "gpu":
            mem_per_gpu = int(amount)
    array = None
    if "ArrayTaskId" in record:
        indices, _ = expand_array(record["ArrayTaskId"])
        throttle = record.get("ArrayTaskThrottle")
        array = {"indices": indices, "max_running": int(throttle) if throttle and throttle != "0" else None}
    command = job.get("command") if job else _null(record.get("Command"))
    script_args = str(command).split()[1:] if command else []
    wrap = _wrap_command(batch_script)
    shared = record.get("OverSubscribe", "OK")
    return {
        "job_name": job.get("name", record.get("JobName")),
        "partition": _null(record.get("Partition")),
        "nodes": {"min": int(lo), "max": int(hi) if hi else None},
        "ntasks": int(record["NumTasks"]),
        "ntasks_per_node": int(per_node) if per_node not in ("0", "*") else None,
        "cpus_per_task": int(record["CPUs/Task"]),
        "mem_per_node_mb": mib(record["MinMemoryNode"]) if mem_asked and "MinMemoryNode" in record else None,
        "mem_per_cpu_mb": mib(record["MinMemoryCPU"]) if mem_asked and "MinMemoryCPU" in record else None,
        "mem_per_gpu_mb": mem_per_gpu,
        "gres_per_node": _gres_list(record.get("TresPerNode")),
        "gpus": _gres_list(record.get("TresPerJob")),
        "time_limit_minutes": minutes(record["TimeLimit"]),
        "array": array,
        "dependency": canonical_dependency(record.get("Dependency")),
        "output": _null(job.get("standard_output")) if job else _null(record.get("StdOut")),
        "error": _null(job.get("standard_error")) if job else _null(record.get("StdErr")),
        "chdir": job.get("current_working_directory", record.get("WorkDir")),
        "exclusive": {"NO": True, "OK": False, "YES": False}.get(shared, shared.lower()),
        "constraint": _null(record.get("Features")),
        "nodelist": expand_hostlist(record.get("ReqNodeList")),
        "exclude": expand_hostlist(record.get("ExcNodeList")),
        "requeue": record.get("Requeue") == "1",
        "hold": record.get("Reason") == "JobHeldUser" or record.get("Priority") == "0",
        "account": _null(record.get("Account")),
        "wrap": wrap,
        "script_args": [] if wrap is not None else script_args,
    }


def lane_defaults(lane_default_partition: str, cwd: Path) -> dict[str, Any]:
    """Slurm's value for each key that has one when nothing is asked, on this lane."""
    return {
        "partition": lane_default_partition,
        "cpus_per_task": 1,
        "time_limit_minutes": "UNLIMITED",
        "chdir": str(cwd),
        "requeue": True,
        "exclusive": False,
    }


# ---------------------------------------------------------------------------------------------------------
# Submitting the corpus


@dataclass
class SlurmOutcome:
    """What the lane made of one case."""

    case: Case
    cwd: Path
    argv: list[str]
    env: dict[str, str]
    returncode: int
    stderr: str
    job_id: str | None = None
    view: dict[str, Any] | None = None
    expect: dict[str, Any] = field(default_factory=dict)


def _prepare(case: Case, root: Path, subs: Mapping[str, str]) -> tuple[Path, list[str], dict[str, str]]:
    cwd = root / case.name
    cwd.mkdir(parents=True, exist_ok=True)
    subs = {**subs, "@CWD@": str(cwd)}
    if case.script is not None:
        text = substitute(case.script, subs)
        if case.crlf:
            text = text.replace("\n", "\r\n")
        script = cwd / case.script_name
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_bytes(text.encode())
    argv = ["--hold", "--parsable", *substitute(list(case.argv), subs)]
    env = {k: substitute(v, subs) for k, v in case.env.items()}
    return cwd, argv, env


def submit_corpus(lane: SlurmLane, cases: list[Case], root: Path) -> dict[str, SlurmOutcome]:
    """Submit every case held, then read all held jobs back in one `scontrol` and one `squeue` call."""
    dep1 = lane.run("sbatch", "--hold", "--parsable", "-J", "dep-plain", "-o", "/dev/null",
                    "--wrap", "true").stdout.strip().split(";")[0]
    dep2 = lane.run("sbatch", "--hold", "--parsable", "-J", "dep-array", "-a", "1-2", "-o", "/dev/null",
                    "--wrap", "true").stdout.strip().split(";")[0]
    subs = {"@DEP1@": dep1, "@DEP2@": dep2}
    outcomes: dict[str, SlurmOutcome] = {}
    for case in cases:
        cwd, argv, env = _prepare(case, root, subs)
        full_env = {**lane.client_env(), **env}
        proc = subprocess.run(["sbatch", *argv], cwd=cwd, env=full_env, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        outcome = SlurmOutcome(case, cwd, argv, full_env, proc.returncode, proc.stderr.strip(),
                               expect=substitute(dict(case.expect), {**subs, "@CWD@": str(cwd)}))
        if proc.returncode == 0:
            outcome.job_id = proc.stdout.strip().split(";")[0]
        outcomes[case.name] = outcome
    records = {}
    for line in lane.run("scontrol", "show", "job", "-o").stdout.splitlines():
        if line.strip():
            rec = parse_scontrol_line(line)
            records[rec["JobId"]] = rec
    jobs = {str(j["job_id"]): j for j in json.loads(lane.run("squeue", "--json").stdout)["jobs"]}
    for outcome in outcomes.values():
        if outcome.job_id is None:
            continue
        script = None
        if outcome.case.script is None:
            script = lane.run("scontrol", "write", "batch_script", outcome.job_id, "-").stdout
        outcome.view = slurm_view(records[outcome.job_id], jobs.get(outcome.job_id), script)
    outcomes["@deps"] = SlurmOutcome(Case("@deps", "", ()), root, [], {}, 0, "", job_id=f"{dep1},{dep2}")
    return outcomes


@pytest.fixture(scope="module")
def corpus_jobs(slurm_lane: SlurmLane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        dict[str, SlurmOutcome]]:
    """Every corpus case submitted (held) to the lane; the jobs are cancelled afterwards."""
    outcomes = submit_corpus(slurm_lane, CASES, tmp_path_factory.mktemp("corpus"))
    try:
        yield outcomes
    finally:
        ids = [i for o in outcomes.values() if o.job_id for i in o.job_id.split(",")]
        if ids:
            slurm_lane.run("scancel", *ids, check=False)


# ---------------------------------------------------------------------------------------------------------
# Running sunk inspect and comparing


@dataclass
class SunkOutcome:
    """What `sunk inspect --json` printed for one case."""

    returncode: int
    stdout: str
    stderr: str
    data: dict[str, Any] | None


def sunk_command() -> list[str]:
    """How to run `sunk`: `SUNK_BIN` (a command line), the `sunk` on PATH, or the module."""
    if os.environ.get("SUNK_BIN"):
        return shlex.split(os.environ["SUNK_BIN"])
    found = shutil.which("sunk")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from sunk_cli.main import main; sys.argv[0] = 'sunk'; main()"]


def run_sunk(outcome: SlurmOutcome) -> SunkOutcome:
    """`sunk inspect --json` with the case's argv, environment and working directory."""
    try:
        proc = subprocess.run([*sunk_command(), "inspect", "--json", *outcome.argv], cwd=outcome.cwd,
                              env=outcome.env, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return SunkOutcome(-1, "", str(exc), None)
    data = None
    if proc.returncode == 0:
        try:
            parsed = json.loads(proc.stdout)
            data = parsed if isinstance(parsed, dict) else None
        except ValueError:
            data = None
    return SunkOutcome(proc.returncode, proc.stdout, proc.stderr, data)


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines and lines[0].startswith("Traceback") else lines[0] if lines else "")[:200]


def _counted(gres: str) -> str:
    """`gpu` → `gpu:1`, `gpu:a100` → `gpu:a100:1`: Slurm stores a request without a count as given."""
    return gres if gres.rpartition(":")[2].isdigit() else f"{gres}:1"


def _normalize_sunk(key: str, value: Any, view: Mapping[str, Any], cwd: Path) -> Any:
    if key in LIST_FIELDS:
        if value is None:
            return []
        if isinstance(value, str) and key in ("gres_per_node", "gpus"):
            value = [value]
        if isinstance(value, list) and key in ("gres_per_node", "gpus"):
            return [_counted(str(v).removeprefix("gres:")) for v in value]
        return value
    if key in ("output", "error") and isinstance(value, str) and not value.startswith("/"):
        return os.path.normpath(os.path.join(str(view.get("chdir") or cwd), value))
    if key == "chdir" and isinstance(value, str) and not value.startswith("/"):
        return os.path.normpath(os.path.join(str(cwd), value))
    if key == "dependency" and isinstance(value, str):
        return canonical_dependency(value)
    return value


def compare(view: Mapping[str, Any], sunk: Mapping[str, Any], defaults: Mapping[str, Any],
            cwd: Path) -> list[str]:
    """Keys where `sunk inspect` and Slurm disagree, each as `key: sunk=… slurm=…`."""
    diffs = []
    for key in COMPARED:
        if key not in sunk:
            diffs.append(f"{key}: missing from sunk inspect --json (slurm={view[key]!r})")
            continue
        mine, theirs = _normalize_sunk(key, sunk[key], view, cwd), view[key]
        if key == "nodes":
            got = mine if isinstance(mine, dict) else {"min": mine, "max": mine} if mine is not None else {}
            for sub, default in (("min", 1), ("max", None)):
                value = got.get(sub)
                if value != theirs[sub] and not (value is None and theirs[sub] == default):
                    diffs.append(f"nodes.{sub}: sunk={value!r} slurm={theirs[sub]!r}")
            continue
        if key == "script_args" and isinstance(mine, list):
            mine, theirs = " ".join(map(str, mine)), " ".join(theirs)
        if key == "array" and isinstance(mine, dict) and isinstance(mine.get("indices"), list):
            mine = {"indices": sorted(mine["indices"]), "max_running": mine.get("max_running")}
        if key in ("gres_per_node", "gpus") and isinstance(mine, list):
            mine, theirs = sorted(mine), sorted(_counted(g) for g in theirs)
        if key in ("nodelist", "exclude") and isinstance(mine, list):
            mine, theirs = sorted(mine), sorted(theirs)
        if key in ("chdir", "output", "error") and isinstance(theirs, str) and isinstance(mine, str):
            mine, theirs = os.path.normpath(mine), os.path.normpath(theirs)  # Slurm keeps `/w/..` as given
        if mine == theirs:
            continue
        if mine in (None, []) and key in defaults and theirs == defaults[key]:
            continue
        if theirs in (None, []) and key in defaults and mine == defaults[key]:
            continue
        diffs.append(f"{key}: sunk={mine!r} slurm={theirs!r}")
    return diffs


def judge(outcome: SlurmOutcome, sunk: SunkOutcome, defaults: Mapping[str, Any]) -> list[str]:
    """Every disagreement between Slurm and `sunk inspect` for one case (empty when they agree)."""
    if outcome.job_id is None:
        if sunk.returncode == 0:
            return [f"sbatch rejects ({_first_line(outcome.stderr)}) but sunk inspect exited 0"]
        err = sunk.stderr.strip()
        if not err or "\n" in err:
            return [f"sunk inspect rejected, but its stderr is not one line: {err[:200]!r}"]
        return []
    if sunk.returncode != 0:
        return [f"sunk inspect exited {sunk.returncode}: {_first_line(sunk.stderr)}"]
    if sunk.data is None:
        return [f"sunk inspect printed no JSON object: {sunk.stdout[:120]!r}"]
    assert outcome.view is not None
    return compare(outcome.view, sunk.data, defaults, outcome.cwd)


# ---------------------------------------------------------------------------------------------------------
# Tests that need no lane


def test_corpus_is_large_unique_and_complete() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 30
    assert sum(c.reject for c in CASES) >= 10
    for case in CASES:
        assert case.reject == (case.reason is not None), case.name
        assert case.reject or case.expect, f"{case.name} has no expectation"
        assert not set(case.expect) - set(CONTRACT_FIELDS), case.name
        assert case.script is not None or any(a.startswith("--wrap") for a in case.argv), case.name
    assert set(COMPARED) | set(UNOBSERVABLE) == set(CONTRACT_FIELDS)


RECORDED = (
    "JobId=2 ArrayJobId=2 ArrayTaskId=1,4,7,10%2 ArrayTaskThrottle=2 JobName=nm UserId=root(0) "
    "GroupId=root(0) MCS_label=N/A Priority=0 Nice=0 Account=foo QOS=(null) JobState=PENDING "
    "Reason=JobHeldUser "
    "Dependency=afterok:7(unfulfilled),afterok:8_*(unfulfilled) Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 "
    "ExitCode=0:0 RunTime=00:00:00 TimeLimit=00:46:00 TimeMin=N/A Partition=a100 "
    "AllocNode:Sid=localhost:7316 "
    "ReqNodeList=gpu-[003-004] ExcNodeList=(null) NodeList= NumNodes=2-2 NumCPUs=16 NumTasks=4 CPUs/Task=4 "
    "ReqB:S:C:T=0:0:*:* TRES=cpu=16,mem=8G,node=2,billing=16 Socks/Node=* NtasksPerN:B:S:C=2:0:*:* "
    "CoreSpec=* MinCPUsNode=8 MinMemoryNode=4G MinTmpDiskNode=0 Features=a100&ib DelayBoot=00:00:00 "
    "OverSubscribe=NO Contiguous=0 Licenses=(null) Network=(null) Command=/w/train.sbatch a b WorkDir=/tmp "
    "StdErr=/tmp/err.txt StdIn=/dev/null StdOut=/tmp/logs/nm-2.out Power= TresPerNode=gres:gpu:a100:2"
)


def test_parse_scontrol_line_keeps_values_with_spaces() -> None:
    line = "JobId=5 JobName=fine tune v2 UserId=root(0) Command=/w/j.sbatch a b WorkDir=/w"
    rec = parse_scontrol_line(line)
    assert rec == {"JobId": "5", "JobName": "fine tune v2", "UserId": "root(0)", "Command": "/w/j.sbatch a b",
                   "WorkDir": "/w"}
    assert parse_scontrol_line(RECORDED)["NtasksPerN:B:S:C"] == "2:0:*:*"


def test_slurm_view_maps_a_recorded_job() -> None:
    job = {"name": "nm", "command": "/w/train.sbatch a b", "standard_output": "/tmp/logs/%x-%j.out",
           "standard_error": "/tmp/err.txt", "current_working_directory": "/tmp", "flags": ["JOB_MEM_SET"]}
    view = slurm_view(parse_scontrol_line(RECORDED), job)
    assert view == {
        "job_name": "nm", "partition": "a100", "nodes": {"min": 2, "max": 2}, "ntasks": 4,
        "ntasks_per_node": 2, "cpus_per_task": 4, "mem_per_node_mb": 4096, "mem_per_cpu_mb": None,
        "mem_per_gpu_mb": None, "gres_per_node": ["gpu:a100:2"], "gpus": [], "time_limit_minutes": 46,
        "array": {"indices": [1, 4, 7, 10], "max_running": 2}, "dependency": "afterok:7,afterok:8",
        "output": "/tmp/logs/%x-%j.out", "error": "/tmp/err.txt", "chdir": "/tmp", "exclusive": True,
        "constraint": "a100&ib", "nodelist": ["gpu-003", "gpu-004"], "exclude": [], "requeue": False,
        "hold": True, "account": "foo", "wrap": None, "script_args": ["a", "b"],
    }
    assert set(view) == set(COMPARED)


def test_slurm_view_ignores_default_memory_and_reads_wrap() -> None:
    rec = parse_scontrol_line(RECORDED.replace("MinMemoryNode=4G", "MinMemoryCPU=1000M")
                              + " MemPerTres=gres:gpu:16384")
    script = "#!/bin/sh\n# This script was created by sbatch --wrap.\n\nsrun hostname\n"
    view = slurm_view(rec, {"name": "wrap", "command": None, "flags": []}, script)
    assert view["mem_per_cpu_mb"] is None and view["mem_per_node_mb"] is None
    assert view["mem_per_gpu_mb"] == 16384
    assert view["wrap"] == "srun hostname" and view["script_args"] == []


def test_helpers() -> None:
    assert expand_hostlist("gpu-[001-003,007],cpu-1") == ["gpu-001", "gpu-002", "gpu-003", "gpu-007", "cpu-1"]
    assert expand_hostlist("r[1-2]n[08-09]") == ["r1n08", "r1n09", "r2n08", "r2n09"]
    assert expand_hostlist("(null)") == []
    assert expand_array("0-20:5%3") == ([0, 5, 10, 15, 20], 3)
    assert expand_array("1,3,5-7") == ([1, 3, 5, 6, 7], None)
    assert [minutes(t) for t in ("00:46:00", "1-12:00:00", "2-00:00:00", "UNLIMITED", "00:00:30")] == \
        [46, 2160, 2880, "UNLIMITED", 1]
    assert [mib(m) for m in ("4G", "1000M", "0", "1T")] == [4096, 1000, 0, 1048576]
    assert canonical_dependency("afterok:1:2,afterany:1") == "afterok:1,afterok:2,afterany:1"
    assert canonical_dependency("afterok:1(unfulfilled)?afternotok:2_*(unfulfilled)") == \
        "afterok:1?afternotok:2"
    assert canonical_dependency("singleton(unfulfilled)") == "singleton"
    assert canonical_dependency("(null)") is None


def test_compare_applies_defaults_and_normalizes() -> None:
    view = slurm_view(parse_scontrol_line(RECORDED.replace("Partition=a100", "Partition=h100")), {
        "name": "nm", "command": "/w/t.sbatch", "standard_output": "/tmp/logs/%j.out", "standard_error": "",
        "current_working_directory": "/tmp", "flags": []})
    sunk: dict[str, Any] = {k: None for k in CONTRACT_FIELDS}
    sunk.update(job_name="nm", nodes={"min": 2, "max": 2}, ntasks=4, ntasks_per_node=2, cpus_per_task=4,
                gres_per_node="gpu:a100:2", time_limit_minutes=46, output="logs/%j.out", exclusive=True,
                array={"indices": [10, 7, 4, 1], "max_running": 2}, dependency="afterok:7:8",
                constraint="a100&ib", nodelist=["gpu-004", "gpu-003"], requeue=False, hold=True,
                account="foo", chdir="/tmp")
    defaults = lane_defaults("h100", Path("/w"))
    assert compare(view, sunk, defaults, Path("/w")) == []
    sunk.update(time_limit_minutes=45, requeue=None)
    assert compare(view, sunk, defaults, Path("/w")) == [
        "time_limit_minutes: sunk=45 slurm=46", "requeue: sunk=None slurm=False"]


# ---------------------------------------------------------------------------------------------------------
# Tests against the lane


@pytest.mark.slurm
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_slurm_resolves_case_as_expected(case: Case, corpus_jobs: dict[str, SlurmOutcome]) -> None:
    outcome = corpus_jobs[case.name]
    if case.reject:
        assert outcome.job_id is None, f"sbatch accepted a case marked reject (job {outcome.job_id})"
        assert case.reason is not None and case.reason in outcome.stderr, outcome.stderr
        return
    assert outcome.job_id is not None, f"sbatch rejected: {outcome.stderr}"
    assert outcome.view is not None
    expect = dict(outcome.expect)
    if isinstance(expect.get("array"), dict) and isinstance(expect["array"].get("indices"), str):
        expect["array"] = {**expect["array"], "indices": expand_array(expect["array"]["indices"])[0]}
    got = {k: outcome.view[k] for k in expect}
    assert got == expect


@pytest.mark.slurm
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sunk_inspect_agrees_with_slurm(case: Case, corpus_jobs: dict[str, SlurmOutcome],
                                       slurm_lane: SlurmLane, scoreboard: Scoreboard) -> None:
    outcome = corpus_jobs[case.name]
    defaults = lane_defaults(next(p.name for p in slurm_lane.config.partitions if p.default), outcome.cwd)
    diffs = judge(outcome, run_sunk(outcome), defaults)
    scoreboard.agree[case.name] = not diffs
    scoreboard.notes[case.name] = diffs
    assert not diffs, "\n".join(diffs)


@pytest.mark.slurm
def test_hostlist_expansion_matches_scontrol(slurm_lane: SlurmLane) -> None:
    # (Slurm 22.05 refuses a plain suffix after a bracket group, e.g. `a[09-11]b`: "Invalid hostlist".)
    for expr in ("gpu-[001-003,007],cpu-1", "r[1-2]n[08-09]", "node7", "a[9-11]", "x[08-10],y[1,3]"):
        real = slurm_lane.run("scontrol", "show", "hostnames", expr).stdout.split()
        assert expand_hostlist(expr) == real, expr
