"""The resolver: precedence, environment, derived values and the contract JSON.

Expected values are what ``scontrol show job -o`` showed for the same submission held on a real
Slurm 22.05.8 controller. Node counts are the request's: slurmctld may show a larger NumNodes for a
pending job when its own estimate from node sizes says so (``-n 16`` on 8-CPU nodes showed 2), which
depends on the cluster and is not modelled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sunkbridge.sbatch import CONTRACT_KEYS, SbatchError, SbatchInfoRequest, Submission, resolve

SCRIPT = "#!/bin/sh\necho hi\n"


@pytest.fixture
def job(tmp_path: Path) -> Path:
    path = tmp_path / "job.sh"
    path.write_text(SCRIPT)
    return path


def run(
    tmp_path: Path,
    argv: list[str],
    *,
    body: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
) -> Submission:
    """Resolve ``argv`` in ``tmp_path``; ``body`` (directives) goes into d.sh, appended to argv."""
    if body is not None:
        (tmp_path / "d.sh").write_text("#!/bin/sh\n" + body + "echo hi\n")
        argv = [*argv, "d.sh"]
    return resolve(
        argv, dict(env or {}), str(tmp_path), read_stdin=(lambda: stdin) if stdin is not None else None
    )


def contract(tmp_path: Path, argv: list[str], **kw: Any) -> dict[str, Any]:
    return run(tmp_path, argv, **kw).to_contract()


# --- defaults -------------------------------------------------------------------------------------------


def test_defaults_of_a_plain_script(tmp_path: Path, job: Path) -> None:
    c = contract(tmp_path, ["job.sh"])
    assert list(c) == list(CONTRACT_KEYS)
    assert c == {
        "job_name": "job.sh",
        "partition": None,
        "nodes": {"min": 1, "max": None},
        "ntasks": 1,
        "ntasks_per_node": None,
        "cpus_per_task": 1,
        "mem_per_node_mb": None,
        "mem_per_cpu_mb": None,
        "mem_per_gpu_mb": None,
        "gres_per_node": [],
        "gpus": [],
        "time_limit_minutes": None,
        "array": None,
        "dependency": None,
        "output": None,
        "error": None,
        "chdir": str(tmp_path),
        "exclusive": False,
        "constraint": None,
        "nodelist": [],
        "exclude": [],
        "requeue": None,
        "hold": False,
        "account": None,
        "qos": None,
        "export": "ALL",
        "open_mode": None,
        "signal": None,
        "wrap": None,
        "container_image": None,
        "script_args": [],
    }
    json.dumps(c)


def test_full_contract(tmp_path: Path) -> None:
    body = (
        "#SBATCH -J train -p h100 -N 2 --ntasks-per-node=4 -c 8 --mem=0 --gpus-per-node=h100:8\n"
        "#SBATCH -t 1-00:00:00 -a 0-15:2%4 -d afterok:5:6 -o logs/%x-%j.out -e logs/%x-%j.err\n"
        "#SBATCH -D /scratch --exclusive -C 'h100&ib' -w gpu-[001-002] -x gpu-[003-004],cpu-1\n"
        "#SBATCH --requeue -H -A proj -q high --export=NONE --open-mode=append --signal=B:USR1@120\n"
        "#SBATCH --container-image=nvcr.io/nvidia/pytorch:24.01-py3 --container-mounts=/data:/data\n"
    )
    c = contract(tmp_path, ["-G", "h100:16"], body=body)
    assert c == {
        "job_name": "train",
        "partition": "h100",
        "nodes": {"min": 2, "max": 2},
        "ntasks": 8,
        "ntasks_per_node": 4,
        "cpus_per_task": 8,
        "mem_per_node_mb": 0,
        "mem_per_cpu_mb": None,
        "mem_per_gpu_mb": None,
        "gres_per_node": ["gpu:h100:8"],
        "gpus": ["gpu:h100:16"],
        "time_limit_minutes": 1440,
        "array": {"indices": [0, 2, 4, 6, 8, 10, 12, 14], "max_running": 4},
        "dependency": "afterok:5,afterok:6",
        "output": "logs/%x-%j.out",
        "error": "logs/%x-%j.err",
        "chdir": "/scratch",
        "exclusive": True,
        "constraint": "h100&ib",
        "nodelist": ["gpu-001", "gpu-002"],
        "exclude": ["cpu-1", "gpu-003", "gpu-004"],
        "requeue": True,
        "hold": True,
        "account": "proj",
        "qos": "high",
        "export": "NONE",
        "open_mode": "append",
        "signal": "B:USR1@120",
        "wrap": None,
        "container_image": "nvcr.io/nvidia/pytorch:24.01-py3",
        "script_args": [],
    }
    sub = run(tmp_path, [], body=body)
    assert sub.container_mounts == "/data:/data"
    assert sub.signal_spec is not None and sub.signal_spec.seconds == 120


# --- nodes and tasks, as NumNodes / NumTasks showed them ----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "nodes", "ntasks"),
    [
        (["-N", "2"], (2, 2), 2),
        (["-N", "2-4"], (2, 4), 2),
        (["-N", "1-2"], (1, 2), 1),
        (["-N", "0"], (0, None), 0),
        (["-n", "4"], (1, None), 4),
        (["-n", "4", "-N", "2"], (2, 2), 4),
        (["--ntasks-per-node=3", "-N", "2"], (2, 2), 6),
        (["--ntasks-per-node=3"], (1, None), 3),
        (["-N", "2-3", "--ntasks-per-node=2"], (2, 3), 4),
        (["-n", "4", "--ntasks-per-node=2"], (2, None), 4),
        (["-n", "3", "--ntasks-per-node=2", "-N", "1"], (1, 1), 3),
        (["-n", "3", "--ntasks-per-node=2"], (1, None), 3),
        (["-n", "4", "--ntasks-per-node=1"], (4, None), 4),
        (["-N", "3", "-n", "2"], (2, 2), 2),  # "can't run 2 processes on 3 nodes"
        (["-N", "2-4", "-n", "3"], (2, 3), 3),
        (["-N", "2-4", "-n", "1"], (1, 1), 1),
        (["-w", "gpu-001,gpu-002"], (2, None), 2),
        (["-w", "gpu-002,gpu-002"], (1, None), 1),
        (["-N", "1-2", "-w", "gpu-001"], (1, 2), 1),
        (["-N", "2-4", "-w", "gpu-001"], (2, 4), 2),
        (["-N", "3", "-w", "gpu-[001-002]"], (3, 3), 3),
        (["-N", "1-3", "-w", "gpu-[001-002]"], (2, 3), 2),
        (["-n", "1", "-w", "gpu-[001-002]"], (1, 1), 1),
    ],
)
def test_nodes_and_tasks(
    tmp_path: Path, job: Path, argv: list[str], nodes: tuple[int, int | None], ntasks: int
) -> None:
    sub = run(tmp_path, [*argv, "job.sh"])
    assert (sub.nodes_min, sub.nodes_max) == nodes
    assert sub.ntasks == ntasks


def test_fewer_tasks_than_nodes_warns_and_trims_the_node_list(tmp_path: Path, job: Path) -> None:
    sub = run(tmp_path, ["-n", "1", "-w", "gpu-002,gpu-001", "job.sh"])
    assert sub.nodelist == ("gpu-001",)
    assert sub.warnings == ("can't run 1 processes on 2 nodes, setting nnodes to 1",)


def test_nodelist_larger_than_max_nodes_is_rejected(tmp_path: Path, job: Path) -> None:
    with pytest.raises(SbatchError, match="--nodelist names 2 nodes but --nodes allows at most 1"):
        run(tmp_path, ["-N", "1", "-w", "gpu-[001-002]", "job.sh"])


def test_nodefile_and_nodelist_fill_the_same_request(tmp_path: Path, job: Path) -> None:
    (tmp_path / "hosts").write_text("gpu-002\ngpu-001\n")
    assert run(tmp_path, ["-F", "hosts", "job.sh"]).nodelist == ("gpu-001", "gpu-002")
    assert run(tmp_path, ["-F", "hosts", "-w", "gpu-001", "job.sh"]).nodelist == ("gpu-001",)
    with pytest.raises(SbatchError, match="cannot read node list file"):
        run(tmp_path, ["-F", "nothere", "job.sh"])


def test_files_named_by_options_must_be_readable(tmp_path: Path, job: Path) -> None:
    with pytest.raises(SbatchError, match=r"^--export-file='/nonexist': cannot read"):
        run(tmp_path, ["--export-file=/nonexist", "job.sh"])
    assert run(tmp_path, ["--export-file=3", "job.sh"]).options["export-file"] == "3"
    with pytest.raises(SbatchError, match=r"^--bbf='/nonexist'"):
        run(tmp_path, ["--bbf=/nonexist", "job.sh"])


def test_arbitrary_distribution_needs_a_node_list(tmp_path: Path, job: Path) -> None:
    with pytest.raises(SbatchError, match="needs a node list"):
        run(tmp_path, ["-m", "arbitrary", "job.sh"])
    assert run(tmp_path, ["-m", "arbitrary", "-w", "n[1-2]", "job.sh"]).nodelist == ("n1", "n2")


def test_nodelist_file(tmp_path: Path, job: Path) -> None:
    (tmp_path / "hosts").write_text("gpu-002\ngpu-001 gpu-003\n")
    assert run(tmp_path, ["-w", "./hosts", "job.sh"]).nodelist == ("gpu-001", "gpu-002", "gpu-003")
    with pytest.raises(SbatchError, match="cannot read node list file"):
        run(tmp_path, ["-w", "./missing", "job.sh"])


# --- precedence: command line > environment > directives ----------------------------------------------


def test_precedence(tmp_path: Path) -> None:
    body = "#SBATCH -p other\n#SBATCH -t 5\n#SBATCH -J fromdir\n"
    assert run(tmp_path, [], body=body).partition == "other"
    assert run(tmp_path, [], body=body, env={"SBATCH_PARTITION": "h100"}).partition == "h100"
    assert run(tmp_path, ["-p", "cli"], body=body, env={"SBATCH_PARTITION": "h100"}).partition == "cli"
    assert run(tmp_path, [], body=body, env={"SBATCH_TIMELIMIT": "7"}).time_limit_minutes == 7
    assert run(tmp_path, ["-t", "9"], body=body, env={"SBATCH_TIMELIMIT": "7"}).time_limit_minutes == 9
    assert run(tmp_path, [], body=body, env={"SBATCH_JOB_NAME": "envn"}).job_name == "envn"
    assert run(tmp_path, ["-J", "y"], body="#SBATCH -J x\n").job_name == "y"


def test_later_occurrence_wins(tmp_path: Path, job: Path) -> None:
    assert run(tmp_path, ["-J", "a", "-J", "b", "job.sh"]).job_name == "b"
    sub = run(tmp_path, ["--gres=gpu:h100:1", "--gres=gpu:2", "job.sh"])
    assert [str(g) for g in sub.gres_per_node] == ["gpu:2"]


def test_every_value_is_checked_even_if_overridden(tmp_path: Path) -> None:
    with pytest.raises(SbatchError, match=r"^d.sh line 2: --time='bad'"):
        run(tmp_path, ["--time=5"], body="#SBATCH --time=bad\n")


def test_arguments_after_the_script_are_script_arguments(tmp_path: Path, job: Path) -> None:
    sub = run(tmp_path, ["job.sh", "-N", "3"])
    assert sub.nodes_min == 1 and sub.script_args == ("-N", "3")
    sub = run(tmp_path, ["-J", "x", "--", "job.sh", "-N", "3"])
    assert sub.job_name == "x" and sub.script_args == ("-N", "3")


# --- environment ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"SBATCH_ACCOUNT": "acc"}, "account", "acc"),
        ({"SBATCH_ARRAY_INX": "1-3"}, "array", {"indices": [1, 2, 3], "max_running": None}),
        ({"SBATCH_GRES": "gpu:2"}, "gres_per_node", ["gpu:2"]),
        ({"SBATCH_GPUS_PER_NODE": "2"}, "gres_per_node", ["gpu:2"]),
        ({"SBATCH_GPUS": "2"}, "gpus", ["gpu:2"]),
        ({"SBATCH_CONSTRAINT": "ib"}, "constraint", "ib"),
        ({"SBATCH_OUTPUT": "o-%j.txt"}, "output", "o-%j.txt"),
        ({"SBATCH_ERROR": "e-%j.txt"}, "error", "e-%j.txt"),
        ({"SBATCH_QOS": "normal"}, "qos", "normal"),
        ({"SBATCH_MEM_PER_NODE": "1G"}, "mem_per_node_mb", 1024),
        ({"SBATCH_MEM_PER_CPU": "2G"}, "mem_per_cpu_mb", 2048),
        ({"SBATCH_MEM_PER_GPU": "8G", "SBATCH_GPUS": "1"}, "mem_per_gpu_mb", 8192),
        ({"SBATCH_EXCLUSIVE": ""}, "exclusive", True),
        ({"SBATCH_EXCLUSIVE": "user"}, "exclusive", True),
        ({"SBATCH_EXCLUSIVE": "exclusive"}, "exclusive", True),
        ({"SBATCH_EXCLUSIVE": "oversubscribe"}, "exclusive", False),
        ({"SBATCH_NO_REQUEUE": "1"}, "requeue", False),
        ({"SBATCH_NO_REQUEUE": ""}, "requeue", False),
        ({"SBATCH_NO_REQUEUE": "yes"}, "requeue", False),
        ({"SBATCH_NO_REQUEUE": "0"}, "requeue", None),
        ({"SBATCH_NO_REQUEUE": "no"}, "requeue", None),
        ({"SBATCH_NO_REQUEUE": "1", "SBATCH_REQUEUE": "1"}, "requeue", True),  # table order
        ({"SBATCH_OPEN_MODE": "append"}, "open_mode", "append"),
        ({"SBATCH_EXPORT": "NONE"}, "export", "NONE"),
        ({"SBATCH_SIGNAL": "USR1@60"}, "signal", "USR1@60"),
        ({"SBATCH_TIMELIMIT": "UNLIMITED"}, "time_limit_minutes", "UNLIMITED"),
        ({"SBATCH_PARTITION": "h100"}, "partition", "h100"),
        ({"SBATCH_NODES": "2"}, "nodes", {"min": 1, "max": None}),  # not an sbatch 22.05 variable
        ({"SLURM_CLUSTERS": "c1"}, "partition", None),
    ],
)
def test_environment(tmp_path: Path, job: Path, env: dict[str, str], field: str, value: object) -> None:
    assert contract(tmp_path, ["job.sh"], env=env)[field] == value


def test_environment_flag_off_undoes_a_directive(tmp_path: Path) -> None:
    assert run(tmp_path, [], body="#SBATCH --no-requeue\n", env={"SBATCH_NO_REQUEUE": "0"}).requeue is None
    # SBATCH_REQUEUE=0 resets the option: the cluster default (JobRequeue=1) showed as Requeue=1
    assert run(tmp_path, [], body="#SBATCH --no-requeue\n", env={"SBATCH_REQUEUE": "0"}).requeue is None
    assert run(tmp_path, [], body="#SBATCH --requeue\n", env={"SBATCH_NO_REQUEUE": "1"}).requeue is False
    assert run(tmp_path, ["--requeue"], body="", env={"SBATCH_NO_REQUEUE": "1"}).requeue is True
    sub = run(tmp_path, [], body="#SBATCH --exclusive\n", env={"SBATCH_EXCLUSIVE": "user"})
    assert sub.exclusive_mode == "user"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SBATCH_TIMELIMIT": "bad"}, "SBATCH_TIMELIMIT='bad': invalid time"),
        ({"SBATCH_TIMELIMIT": ""}, "SBATCH_TIMELIMIT='': invalid time"),
        ({"SBATCH_EXCLUSIVE": "junk"}, "SBATCH_EXCLUSIVE='junk'"),
        ({"SBATCH_ARRAY_INX": "bad"}, "SBATCH_ARRAY_INX='bad'"),
        ({"SBATCH_MEM_PER_NODE": "1x"}, "SBATCH_MEM_PER_NODE='1x'"),
        ({"SBATCH_OPEN_MODE": "bad"}, "SBATCH_OPEN_MODE='bad'"),
        ({"SBATCH_SIGNAL": "bad"}, "SBATCH_SIGNAL='bad'"),
        ({"SBATCH_NO_KILL": "junk"}, "SBATCH_NO_KILL='junk'"),
        ({"SBATCH_GRES": "gpu:x:y:z"}, "SBATCH_GRES='gpu:x:y:z'"),
        ({"SBATCH_MEM_PER_CPU": "10", "SBATCH_MEM_PER_NODE": "5"}, "are mutually exclusive"),
    ],
)
def test_environment_rejections(tmp_path: Path, job: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(SbatchError) as info:
        run(tmp_path, ["job.sh"], env=env)
    assert message in str(info.value)


# --- memory ---------------------------------------------------------------------------------------------


def test_memory_options_are_mutually_exclusive_on_the_command_line_and_in_the_script(tmp_path: Path) -> None:
    with pytest.raises(SbatchError, match="mutually exclusive"):
        run(tmp_path, ["--mem=100", "--mem-per-cpu=10"], body="")
    with pytest.raises(SbatchError, match="mutually exclusive"):
        run(tmp_path, ["--mem-per-cpu=10"], body="#SBATCH --mem=200\n")
    with pytest.raises(SbatchError, match="mutually exclusive"):
        run(tmp_path, ["--mem=1", "--mem-per-gpu=1", "--gpus=1"], body="")


def test_memory_from_the_script_beats_a_different_memory_variable(tmp_path: Path) -> None:
    # sbatch 22.05: a --mem set in the script counts as "set on the command line", so the
    # SBATCH_MEM_PER_CPU variable is dropped (MinMemoryNode=200M was shown).
    sub = run(tmp_path, [], body="#SBATCH --mem=200\n", env={"SBATCH_MEM_PER_CPU": "10"})
    assert (sub.mem_per_node_mb, sub.mem_per_cpu_mb) == (200, None)
    sub = run(tmp_path, ["--mem=300"], body="", env={"SBATCH_MEM_PER_CPU": "10"})
    assert (sub.mem_per_node_mb, sub.mem_per_cpu_mb) == (300, None)
    sub = run(tmp_path, [], body="#SBATCH --mem=200\n", env={"SBATCH_MEM_PER_NODE": "5"})
    assert sub.mem_per_node_mb == 5


def test_mem_per_gpu_needs_a_gpu(tmp_path: Path) -> None:
    with pytest.raises(SbatchError, match="no GPU was requested"):
        run(tmp_path, ["--mem-per-gpu=10"], body="")
    assert run(tmp_path, ["--mem-per-gpu=1G", "--gres=gpu:1"], body="").mem_per_gpu_mb == 1024
    assert run(tmp_path, ["--mem-per-gpu=1G", "--gpus-per-task=1", "-n", "2"], body="").mem_per_gpu_mb == 1024


# --- gres and gpus --------------------------------------------------------------------------------------


def test_gpus_per_node_folds_into_the_per_node_request(tmp_path: Path) -> None:
    c = contract(tmp_path, ["--gpus-per-node=h100:2", "--gres=gpu:h100:1"], body="")
    assert c["gres_per_node"] == ["gpu:h100:2", "gpu:h100:1"]
    c = contract(tmp_path, ["--gpus-per-node=2", "--gres=gpu:1"], body="")
    assert c["gres_per_node"] == ["gpu:2", "gpu:1"]


@pytest.mark.parametrize(
    ("argv", "env", "body"),
    [
        (["--gpus-per-node=2", "--gres=gpu:h100:1"], {}, ""),
        (["--gres=gpu:h100:1"], {"SBATCH_GPUS_PER_NODE": "2"}, ""),
        (["--gpus-per-node=h100:1"], {}, "#SBATCH --gres=gpu:2\n"),
    ],
)
def test_typed_and_untyped_gpus_are_rejected(
    tmp_path: Path, argv: list[str], env: dict[str, str], body: str
) -> None:
    with pytest.raises(SbatchError, match="both with and without a type"):
        run(tmp_path, argv, body=body, env=env)


def test_some_values_are_only_checked_once_all_sources_are_applied(tmp_path: Path, job: Path) -> None:
    # seen with sbatch 22.05.8: these pass when a later value replaces the bad one ...
    for argv in (
        ["--gres=gpu:h100:x", "--gres=gpu:2"],
        ["--gpus=h100:x:1", "--gpus=2"],
        ["--gpus-per-node=a:b:c", "--gpus-per-node=2"],
        ["-a", "bad", "-a", "1-2"],
        ["-a", "0-5000", "-a", "1"],
        ["-d", "foo:1", "-d", "singleton"],
        ["-w", "gpu-[2-1]", "-w", "gpu-001"],
        ["-x", "gpu-[2-1]", "-x", "gpu-001"],
        ["--hint=zz", "--hint=multithread"],
        ["--propagate=zz", "--propagate=CORE"],
    ):
        run(tmp_path, [*argv, "job.sh"])
    # ... while these fail at once
    for argv in (
        ["-t", "bad", "-t", "5"],
        ["--mem=x", "--mem=5"],
        ["-N", "x", "-N", "2"],
        ["-n", "0", "-n", "2"],
    ):
        with pytest.raises(SbatchError):
            run(tmp_path, [*argv, "job.sh"])
    with pytest.raises(SbatchError, match=r"^d.sh line 2: --gres='gpu:x:y:z'"):
        run(tmp_path, [], body="#SBATCH --gres=gpu:x:y:z\n")


def test_gpu_types_are_checked_across_all_gpu_requests(tmp_path: Path) -> None:
    with pytest.raises(SbatchError, match="both with and without a type"):
        run(tmp_path, ["--gpus=a100:2"], body="#SBATCH --gpus-per-node=2\n")
    with pytest.raises(SbatchError, match="both with and without a type"):
        run(tmp_path, ["--gres=gpu:2"], body="#SBATCH --gpus=a100:2\n")
    assert run(tmp_path, ["--gpus=a100:2", "--gpus-per-node=a100:1"], body="").gpus[0].type == "a100"


@pytest.mark.parametrize(
    ("argv", "nodes", "ntasks", "ntasks_per_node"),
    [
        (["-G", "2", "-N", "2"], (2, 2), 2, None),
        (["-G", "3", "-N", "2"], (2, 2), 2, None),
        (["--gpus=4", "--gpus-per-node=2"], (2, 2), 2, None),
        (["--gpus=4", "--gpus-per-node=2", "-N", "1-3"], (2, 2), 2, None),
        (["--gpus=4", "--gres=gpu:2"], (2, 2), 2, None),
        (["-G", "2", "-N", "1-2"], (1, 2), 1, None),
        (["-G", "1", "-N", "1-2"], (1, 1), 1, None),
        (["-G", "2", "--gpus-per-task=1"], (1, None), 2, None),
        (["--gpus-per-task=1", "-n", "2"], (1, None), 2, None),
        (["--gpus-per-task=1", "-N", "2"], (2, 2), 2, None),
        # slurmctld showed NumTasks=2 with NtasksPerN=4 here: the task count comes from -N 2
        (["--gpus-per-node=4", "--gpus-per-task=1", "-N", "2"], (2, 2), 2, 4),
        (["--gpus-per-node=2", "--gpus-per-task=1", "-n", "4"], (2, None), 4, 2),
        (["-G", "8", "--gpus-per-node=4", "-n", "2"], (2, 2), 2, None),
        (["-G", "h100:4", "--gpus-per-node=a100:2"], (1, None), 1, None),
        (["-N", "0", "-n", "5"], (1, None), 5, None),
        (["-N", "0-2", "-n", "3"], (1, 2), 3, None),
    ],
)
def test_gpu_counts_fix_nodes_and_tasks(
    tmp_path: Path,
    job: Path,
    argv: list[str],
    nodes: tuple[int, int | None],
    ntasks: int,
    ntasks_per_node: int | None,
) -> None:
    sub = run(tmp_path, [*argv, "job.sh"])
    assert ((sub.nodes_min, sub.nodes_max), sub.ntasks, sub.ntasks_per_node) == (
        nodes,
        ntasks,
        ntasks_per_node,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["-G", "1", "-N", "2"],
        ["--gpus=3", "--gpus-per-node=2"],
        ["--gpus=1", "--gpus-per-node=2"],
        ["--gpus=4", "--gpus-per-node=2", "-N", "3"],
        ["-G", "2", "-n", "3", "--gpus-per-task=1"],
        ["--gpus-per-task=1"],
        ["--gpus-per-node=4", "--gpus-per-task=2"],
        ["--gpus-per-node=4", "--gpus-per-task=3", "-N", "1"],
        ["--gpus-per-node=4", "--gpus-per-task=1", "--ntasks-per-node=2", "-N1"],
        ["--gpus-per-socket=1"],
        ["-G", "1", "-w", "gpu-[001-002]"],
        ["--gres=gpu:2", "--gpus-per-task=1"],
    ],
)
def test_gpu_counts_that_do_not_add_up(tmp_path: Path, job: Path, argv: list[str]) -> None:
    with pytest.raises(SbatchError, match=r"^GPU request does not add up: "):
        run(tmp_path, [*argv, "job.sh"])


# --- script location, stdin and --wrap ------------------------------------------------------------------


def test_job_name_defaults(tmp_path: Path, job: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.sh").write_text(SCRIPT)
    assert run(tmp_path, ["sub/x.sh"]).job_name == "x.sh"
    assert run(tmp_path, [str(job)]).job_name == "job.sh"
    assert run(tmp_path, [], stdin=SCRIPT.encode()).job_name == "sbatch"
    assert run(tmp_path, ["--wrap=hostname"]).job_name == "wrap"
    assert run(tmp_path, ["--job-name=", "job.sh"]).job_name == ""


def test_script_found_on_path(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "inpath.sh").write_text(SCRIPT)
    sub = resolve(["inpath.sh"], {"PATH": str(bindir)}, str(tmp_path))
    assert sub.script_path == str(bindir / "inpath.sh")


def test_stdin_script_with_directives(tmp_path: Path) -> None:
    sub = run(tmp_path, ["-N", "2"], stdin=b"#!/bin/sh\n#SBATCH -t 5\n")
    assert (sub.nodes_min, sub.time_limit_minutes, sub.script_path) == (2, 5, None)


def test_wrap(tmp_path: Path, job: Path) -> None:
    sub = run(tmp_path, ["--wrap", "echo a b"])
    assert sub.wrap == "echo a b"
    assert sub.script == "#!/bin/sh\n# This script was created by sbatch --wrap.\n\necho a b\n"
    assert run(tmp_path, ["--wrap=a", "--wrap=b"]).wrap == "b"
    assert run(tmp_path, ["--wrap=hostname", "--"]).wrap == "hostname"
    with pytest.raises(SbatchError, match="script arguments are not permitted with --wrap"):
        run(tmp_path, ["--wrap=hostname", "job.sh"])


def test_sbatch_lines_inside_wrap_text_are_not_directives(tmp_path: Path) -> None:
    sub = run(tmp_path, ["--wrap", "#SBATCH -N 4\necho hi"])
    assert (sub.nodes_min, sub.nodes_max, sub.ntasks) == (1, None, 1)


def test_early_options_are_ignored_in_directives(tmp_path: Path) -> None:
    sub = run(tmp_path, [], body="#SBATCH --wrap=hostname --help --usage --version\n")
    assert sub.wrap is None and sub.job_name == "d.sh"


@pytest.mark.parametrize("flag", ["--help", "-h", "--usage", "--version", "-V"])
def test_info_requests(tmp_path: Path, flag: str) -> None:
    with pytest.raises(SbatchInfoRequest):
        run(tmp_path, [flag, "missing.sh"])


# --- output, chdir --------------------------------------------------------------------------------------


def test_chdir_is_joined_like_sbatch(tmp_path: Path, job: Path) -> None:
    assert run(tmp_path, ["-D", "/tmp", "job.sh"]).chdir == "/tmp"
    assert run(tmp_path, ["-D", "sub", "job.sh"]).chdir == f"{tmp_path}/sub"
    assert run(tmp_path, ["-D", "./sub/../sub", "job.sh"]).chdir == f"{tmp_path}/./sub/../sub"


def test_output_patterns_are_kept_as_given(tmp_path: Path, job: Path) -> None:
    sub = run(tmp_path, ["-o", "out-%j.txt", "-e", "none", "job.sh"])
    assert (sub.output, sub.error) == ("out-%j.txt", "none")


# --- rejections -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "body", "message"),
    [
        (["--bogus"], "", "unrecognized option '--bogus'"),
        (["--nod=2"], "", "is ambiguous"),
        (["--time"], None, "requires a value"),
        (["--time=x"], "", "--time='x': invalid time"),
        (["--array=0-1001"], "", "MaxArraySize=1001"),
        (["--mem=1.5G"], "", "invalid memory size"),
        (["-w", "gpu-[2-1]"], "", "runs backwards"),
        (["--gres=gpu:h100:x"], "", "invalid count"),
        (["--dependency=foo:1"], "", "unknown dependency"),
        (["-N", "2-1"], "", "below the minimum"),
        (["-n", "0"], "", "-n/--ntasks='0'"),
        (["-c", "0"], "", "-c/--cpus-per-task='0'"),
        (["--exclusive=foo"], "", "--exclusive='foo'"),
        (["-N", "1", ":", "-N", "2"], "", "heterogeneous job"),
        ([], "#SBATCH --bogus=1\n", "d.sh line 2: unrecognized option '--bogus'"),
        ([], "#SBATCH --nod=2\n", "d.sh line 2: option '--nod' is ambiguous"),
        ([], "#SBATCH --time\n", "d.sh line 2: option '--time' requires a value"),
        ([], "#SBATCH --time\n#SBATCH -N 2\n", "d.sh line 2: --time='-N': invalid time"),
        ([], "#SBATCH foo -N 2\n", "d.sh line 2: invalid directive 'foo'"),
        ([], "#SBATCH -N 2 foo --time=5\n", "d.sh line 2: invalid directive 'foo'"),
        ([], "#SBATCH -- -N 2\n", "invalid directive '-N'"),
        ([], "#PBS -N name\n", "d.sh line 2: #PBS directives are not translated"),
        ([], "#BSUB -J name\n", "#BSUB directives"),
    ],
)
def test_rejections(tmp_path: Path, argv: list[str], body: str | None, message: str) -> None:
    with pytest.raises(SbatchError) as info:
        run(tmp_path, argv, body=body)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_pbs_lines_are_skipped_with_ignore_pbs(tmp_path: Path) -> None:
    # seen with sbatch 22.05.8: the option may be abbreviated; a script argument does not count;
    # SBATCH_IGNORE_PBS follows the flag rules ("0" and "no" leave #PBS lines active)
    assert run(tmp_path, ["--ignore-pbs"], body="#PBS -N x\n").job_name == "d.sh"
    assert run(tmp_path, ["--ignore-p"], body="#PBS -N x\n").job_name == "d.sh"
    assert run(tmp_path, [], body="#PBS -N x\n", env={"SBATCH_IGNORE_PBS": "1"}).job_name == "d.sh"
    assert run(tmp_path, [], body="#PBS -N x\n", env={"SBATCH_IGNORE_PBS": ""}).job_name == "d.sh"
    assert run(tmp_path, [], body="#SBATCH --ignore-pbs\n#PBS -N x\n").job_name == "d.sh"
    for env in ({"SBATCH_IGNORE_PBS": "0"}, {"SBATCH_IGNORE_PBS": "no"}):
        with pytest.raises(SbatchError, match="#PBS directives"):
            run(tmp_path, [], body="#PBS -N x\n", env=env)
    (tmp_path / "p.sh").write_text("#!/bin/sh\n#PBS -N x\n")
    with pytest.raises(SbatchError, match="#PBS directives"):
        run(tmp_path, ["p.sh", "--ignore-pbs"])


def test_missing_and_unreadable_scripts(tmp_path: Path) -> None:
    with pytest.raises(SbatchError, match=r"^nonexist.sh: unable to open the batch script"):
        run(tmp_path, ["nonexist.sh"])
    with pytest.raises(SbatchError, match="is a directory"):
        run(tmp_path, [str(tmp_path)])
    with pytest.raises(SbatchError, match="no batch script given"):
        run(tmp_path, [])
    (tmp_path / "dos.sh").write_bytes(b"#!/bin/sh\r\necho\r\n")
    with pytest.raises(SbatchError, match="DOS line breaks"):
        run(tmp_path, ["dos.sh"])
    (tmp_path / "bin.sh").write_bytes(b"\x7fELF\x02\x01\x01\x00")
    with pytest.raises(SbatchError, match="does not look like a batch script"):
        run(tmp_path, ["bin.sh"])
    with pytest.raises(SbatchError, match="batch script is empty"):
        run(tmp_path, [], stdin=b"")


def test_container_extension_does_not_disturb_other_options(tmp_path: Path) -> None:
    body = "#SBATCH --container-image=img:1 --container-workdir=/w -N 2\n#SBATCH --contai=/bundle\n"
    sub = run(tmp_path, [], body=body)
    assert (sub.container_image, sub.container_workdir, sub.container, sub.nodes_min) == (
        "img:1",
        "/w",
        "/bundle",
        2,
    )
    with pytest.raises(SbatchError, match="unrecognized option '--container-name'"):
        run(tmp_path, ["--container-name=x"], body="")


def test_max_array_size_parameter(tmp_path: Path, job: Path) -> None:
    sub = resolve(["--array=0-2000", "job.sh"], {}, str(tmp_path), max_array_size=2001)
    assert sub.array is not None and len(sub.array.indices) == 2001
