"""Accounting on the real Slurm lane: slurmdbd and MariaDB record every job, and `sacct` reads them back.

Each test reads what Slurm stored through `sacct`; without slurmdbd, sacct answers "Slurm accounting storage
is disabled" and every one of them fails.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sunkbridge.lanes.slurm import NodeSpec, PartitionSpec, SlurmLane, SlurmLaneConfig, make_base_dir

pytestmark = pytest.mark.slurm

FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "DEADLINE")


def _submit(lane: SlurmLane, *argv: str) -> str:
    return lane.run("sbatch", "--parsable", "-o", "/dev/null", *argv).stdout.strip().split(";")[0]


def _rows(lane: SlurmLane, job: str, *extra: str, fields: str = "JobID,State,ExitCode") -> list[list[str]]:
    """`sacct -j JOB -n -P -o FIELDS` split into fields, one list per row."""
    out = lane.run("sacct", "-j", job, "-n", "-P", "-o", fields, *extra).stdout
    return [line.split("|") for line in out.splitlines() if line]


def _started(lane: SlurmLane, job: str) -> bool:
    """True once slurmdbd has the job's start record: every job row names its partition.

    slurmctld sends records asynchronously and the end of a short job may arrive first; until the start
    follows, sacct shows a stand-in row (JobName `allocation`, user root, no partition).
    """
    rows = _rows(lane, job, "-X", fields="Partition")
    return bool(rows) and all(row[0] for row in rows)


def _settled(lane: SlurmLane, job: str, done: Callable[[list[list[str]]], bool], timeout: float = 60.0,
             *extra: str) -> list[list[str]]:
    """Rows of `job` once its start is recorded and `done(rows)` holds."""
    deadline = time.monotonic() + timeout
    rows: list[list[str]] = []
    while time.monotonic() < deadline:
        rows = _rows(lane, job, *extra)
        if rows and done(rows) and _started(lane, job):
            return rows
        time.sleep(0.5)
    raise AssertionError(f"sacct rows of job {job} never settled within {timeout:.0f}s: {rows}")


def _final(rows: list[list[str]]) -> bool:
    return all(row[1].split()[0] in FINAL for row in rows)


def _row(rows: list[list[str]], job_id: str) -> list[str]:
    matching = [row for row in rows if row[0] == job_id]
    assert len(matching) == 1, f"no single row {job_id} in {rows}"
    return matching[0]


@pytest.fixture(scope="module")
def time_limited_job(slurm_lane: SlurmLane) -> str:
    """A job over its one-minute limit (Slurm's smallest), submitted first so other tests run meanwhile."""
    return _submit(slurm_lane, "--time=1", "--wrap", "sleep 600")


@pytest.mark.usefixtures("time_limited_job")
def test_a_failing_job_is_failed_with_its_exit_code(slurm_lane: SlurmLane) -> None:
    job = _submit(slurm_lane, "--wrap", "exit 3")
    rows = _settled(slurm_lane, job, _final)
    assert _row(rows, job) == [job, "FAILED", "3:0"]
    assert _row(rows, f"{job}.batch") == [f"{job}.batch", "FAILED", "3:0"]


def test_a_job_killed_by_a_signal_shows_the_signal(slurm_lane: SlurmLane) -> None:
    job = _submit(slurm_lane, "--wrap", "kill -9 $$")
    rows = _settled(slurm_lane, job, _final)
    # ExitCode is `code:signal`; a step that a signal ended is CANCELLED, the job it failed is FAILED.
    assert _row(rows, job) == [job, "FAILED", "0:9"]
    assert _row(rows, f"{job}.batch") == [f"{job}.batch", "CANCELLED", "0:9"]


def test_scancel_leaves_a_cancelled_job(slurm_lane: SlurmLane) -> None:
    job = _submit(slurm_lane, "--wrap", "sleep 600")
    _settled(slurm_lane, job, lambda rows: _row(rows, job)[1] == "RUNNING")
    slurm_lane.run("scancel", job)
    rows = _settled(slurm_lane, job, lambda rows: _row(rows, job)[1].startswith("CANCELLED"), 30.0, "-X")
    assert _row(rows, job)[1].split()[0] == "CANCELLED"


def test_every_array_task_has_its_own_row(slurm_lane: SlurmLane) -> None:
    job = _submit(slurm_lane, "--array=0-2", "--wrap", "exit $SLURM_ARRAY_TASK_ID")
    rows = _settled(slurm_lane, job, lambda rows: len(rows) == 3 and _final(rows), 60.0, "-X")
    assert sorted(rows) == [[f"{job}_0", "COMPLETED", "0:0"], [f"{job}_1", "FAILED", "1:0"],
                            [f"{job}_2", "FAILED", "2:0"]]


def test_jobs_of_a_user_without_an_association_are_recorded(slurm_lane: SlurmLane) -> None:
    # AccountingStorageEnforce is unset: a user the database does not know may submit, and sacct has the job.
    user = pwd.getpwnam("nobody")
    proc = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "--chdir=/tmp", "--wrap", "true"],
                          env=slurm_lane.client_env(), capture_output=True, text=True, timeout=30,
                          user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip()
    rows = _settled(slurm_lane, job, _final, 60.0, "-X")
    assert rows == [[job, "COMPLETED", "0:0"]]
    owner = slurm_lane.run("sacct", "-j", job, "-X", "-n", "-P", "-o", "User").stdout.split()
    assert owner == ["nobody"]


def test_sacct_prints_its_default_columns(slurm_lane: SlurmLane) -> None:
    job = _submit(slurm_lane, "-J", "acct-cols", "-A", "vision", "--wrap", "exit 3")
    _settled(slurm_lane, job, _final)
    lines = slurm_lane.run("sacct", "-j", job).stdout.splitlines()
    header, dashes, *body = lines
    # sacct's default format: a header, a line of dashes as wide as each column, one row per job and step.
    assert header.split() == ["JobID", "JobName", "Partition", "Account", "AllocCPUS", "State", "ExitCode"]
    spans = [m.span() for m in re.finditer(r"-+", dashes)]
    assert [end - start for start, end in spans] == [12, 10, 10, 10, 10, 10, 8]
    fields = [[line[start:end].strip() for start, end in spans] for line in body]
    assert fields == [
        [job, "acct-cols", "h100", "vision", "1", "FAILED", "3:0"],
        [f"{job}.batch", "batch", "", "vision", "1", "FAILED", "3:0"],
    ]
    for line in [header, *body]:
        first, *rest = [line[start:end] for start, end in spans]
        assert first == first.strip().ljust(12), f"JobID is left-aligned: {line!r}"
        assert all(cell == cell.strip().rjust(len(cell)) for cell in rest), f"right-aligned: {line!r}"


def _listening(port: int | None) -> bool:
    assert port is not None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"


@pytest.fixture
def small_lane() -> Iterator[SlurmLane]:
    base = make_base_dir("sunk-slurm-acct-")
    lane = SlurmLane(SlurmLaneConfig(base_dir=base / "lane", cluster_name="acct",
                                     nodes=(NodeSpec("n1", cpus=2, memory_mb=2000),),
                                     partitions=(PartitionSpec("p", ("n1",), default=True),)))
    try:
        yield lane
    finally:
        lane.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_accounting_survives_a_slurmctld_restart_and_stops_clean(small_lane: SlurmLane) -> None:
    lane = small_lane.start()
    assert lane.ports is not None
    # slurmdbd.conf holds the database password: mode 0600, owned by SlurmUser (the lane's slurmctld's, root).
    conf = lane.paths.slurmdbd_conf
    assert (conf.stat().st_mode & 0o777, conf.stat().st_uid) == (0o600, 0)
    daemons = {_comm(pid): pid for pid in lane.processes()}
    assert {"mariadbd", "slurmdbd"} <= set(daemons)
    assert pwd.getpwuid(os.stat(f"/proc/{daemons['mariadbd']}").st_uid).pw_name == "mysql"
    clusters = lane.run("sacctmgr", "-n", "-P", "show", "cluster", "format=cluster").stdout.split()
    assert clusters == ["acct"]
    # No user has an association, so a job keeps the account it asked for.
    assert lane.run("sacctmgr", "-n", "-P", "show", "assoc", "format=cluster,account,user").stdout.split() == \
        ["acct|root|"]

    before = _submit(lane, "--wrap", "exit 5")
    assert _settled(lane, before, _final, 60.0, "-X") == [[before, "FAILED", "5:0"]]
    lane.restart_slurmctld()
    after = _submit(lane, "--wrap", "exit 6")
    assert _settled(lane, after, _final, 60.0, "-X") == [[after, "FAILED", "6:0"]]
    assert _rows(lane, before, "-X") == [[before, "FAILED", "5:0"]]

    lane.stop()
    assert lane.processes() == []
    assert {_state(pid) for pid in daemons.values()} <= {"gone", "Z"}
    assert not _listening(lane.ports.slurmdbd) and not _listening(lane.ports.mariadb)
    assert not lane.paths.db_socket.exists()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def test_accounting_can_be_turned_off(small_lane: SlurmLane) -> None:
    lane = SlurmLane(dataclasses.replace(small_lane.config, accounting=False)).start()
    assert {_comm(pid) for pid in lane.processes()}.isdisjoint({"mariadbd", "slurmdbd"})
    assert not lane.paths.db.exists()
    proc = lane.run("sacct", "-n", check=False)
    assert proc.returncode != 0 and "accounting storage is disabled" in proc.stderr


def test_a_job_over_its_time_limit_times_out(slurm_lane: SlurmLane, time_limited_job: str) -> None:
    # slurmctld checks time limits every 30 s: the job ends between 60 and 90 s after it started.
    job = time_limited_job
    rows = _settled(slurm_lane, job, _final, 150.0, "-X")
    assert _row(rows, job)[1] == "TIMEOUT"
