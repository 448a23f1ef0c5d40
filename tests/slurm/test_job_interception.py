"""job_submit.lua on the real Slurm lane: podgroup jobs get the launcher, the submitted script intact,
and nothing else about the job changes; pyxis' options reach the job; filename patterns match slurmd."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sunkbridge.jobs.install import build_spank_plugin, install
from sunkbridge.jobs.launcher import PatternContext, expand_pattern
from sunkbridge.lanes.slurm import NodeSpec, PartitionSpec, SlurmLane, SlurmLaneConfig, make_base_dir

pytestmark = pytest.mark.slurm

STUB = """#!/bin/sh
# Stands in for the launcher: records what slurmd gave it.
d=%s
[ "$1" = "--" ] && shift
cat > "$d/script.$SLURM_JOB_ID"
env > "$d/env.$SLURM_JOB_ID"
printf '%%s\\n' "$@" > "$d/args.$SLURM_JOB_ID"
"""


@pytest.fixture(scope="module")
def lane() -> Iterator[tuple[SlurmLane, Path]]:
    base = make_base_dir("sunk-slurm-jobs-")
    record = base / "record"
    record.mkdir()
    record.chmod(0o777)
    stub = base / "stub-launcher"
    stub.write_text(STUB % record)
    stub.chmod(0o755)
    nodes = (NodeSpec("pg-1", cpus=2, memory_mb=2000), NodeSpec("pg-2", cpus=2, memory_mb=2000))
    parts = (PartitionSpec("pg", ("pg-1", "pg-2"), default=True), PartitionSpec("plain", ("pg-1", "pg-2")))
    config = SlurmLaneConfig(base_dir=base / "lane", cluster_name="jobs", nodes=nodes, partitions=parts)
    lane = SlurmLane(config)
    extra = install(lane.paths.etc, "jobs", ["pg"], "pg", f"{stub} --", build_spank_plugin(base / "spank"))
    config.extra_conf = extra
    lane.start()
    try:
        yield lane, record
    finally:
        lane.stop()


def _submit(lane: SlurmLane, *argv: str, cwd: Path) -> int:
    proc = lane.run("sbatch", "--parsable", f"--chdir={cwd}", *argv)
    return int(proc.stdout.strip().split(";")[0])


def _wait_done(lane: SlurmLane, job: int, timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fields = _show(lane, job)
        if fields.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
            return fields
        time.sleep(0.3)
    raise AssertionError(f"job {job} did not finish: {_show(lane, job)}")


def _show(lane: SlurmLane, job: int) -> dict[str, str]:
    line = lane.run("scontrol", "show", "job", "-o", str(job)).stdout.strip()
    return dict(m.groups() for m in re.finditer(r"(\S+?)=(\S*)", line))


SCRIPT = """#!/bin/bash
#SBATCH --job-name=intercepted
#SBATCH --nodes=2 --time=5
#SBATCH --output=out-%j.txt
echo "args: $@"   # a comment with 'quotes' and a $VAR and SUNK_ORIGINAL_SCRIPT
cat <<'EOF'
nested heredoc
EOF
"""


def test_podgroup_jobs_run_the_launcher_with_the_script_intact(lane: tuple[SlurmLane, Path],
                                                              tmp_path: Path) -> None:
    slurm, record = lane
    tmp_path.chmod(0o755)
    script = tmp_path / "job.sh"
    script.write_text(SCRIPT)
    pg = _submit(slurm, str(script), "one", "two words", cwd=tmp_path)
    plain = _submit(slurm, "--partition=plain", str(script), "one", "two words", cwd=tmp_path)
    pg_fields, plain_fields = _wait_done(slurm, pg), _wait_done(slurm, plain)
    assert (record / f"script.{pg}").read_text() == SCRIPT
    assert (record / f"args.{pg}").read_text().splitlines() == ["one", "two words"]
    env = dict(line.split("=", 1) for line in (record / f"env.{pg}").read_text().splitlines() if "=" in line)
    assert env["SLURM_JOB_NODELIST"] == "pg-[1-2]" and env["SLURM_JOB_NAME"] == "intercepted"
    assert not (record / f"script.{plain}").exists()  # other partitions keep their scripts
    assert (tmp_path / f"out-{plain}.txt").read_text() == "args: one two words\nnested heredoc\n"
    batch = slurm.run("scontrol", "write", "batch_script", str(pg), "-").stdout
    assert batch.startswith("#!/bin/sh\n# sunkbridge") and SCRIPT in batch
    # Nothing else about the job changed: compare with the same submission to a plain partition.
    differs = {"JobId", "Partition", "SubmitTime", "EligibleTime", "StartTime", "EndTime", "AccrueTime",
               "LastSchedEval", "RunTime", "StdOut", "StdErr", "Priority", "Reason"}
    same = {k: v for k, v in pg_fields.items() if k not in differs}
    assert same == {k: v for k, v in plain_fields.items() if k not in differs}
    assert pg_fields["StdOut"] == str(tmp_path / f"out-{pg}.txt")
    assert plain_fields["StdOut"] == str(tmp_path / f"out-{plain}.txt")


def test_slurmrestd_submissions_are_intercepted_too(lane: tuple[SlurmLane, Path], tmp_path: Path) -> None:
    slurm, record = lane
    tmp_path.chmod(0o755)
    body = {"script": "#!/bin/sh\necho from rest\n",
            "job": {"name": "rest", "partition": "pg", "current_working_directory": str(tmp_path),
                    "environment": {"PATH": "/usr/bin:/bin"}, "nodes": 1}}
    req = urllib.request.Request(f"{slurm.restd_url}/slurm/v0.0.38/job/submit", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "X-SLURM-USER-NAME": "root",
                                          "X-SLURM-USER-TOKEN": slurm.token()}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        job = int(json.load(resp)["job_id"])
    _wait_done(slurm, job)
    assert (record / f"script.{job}").read_text() == "#!/bin/sh\necho from rest\n"


def test_pyxis_options_reach_the_job_and_bad_ones_fail_at_submission(lane: tuple[SlurmLane, Path],
                                                                     tmp_path: Path) -> None:
    slurm, record = lane
    tmp_path.chmod(0o755)
    script = tmp_path / "c.sh"
    script.write_text("#!/bin/sh\n#SBATCH --container-mounts=/data:/data:ro\ntrue\n")
    job = _submit(slurm, "--container-image=local/app:1", "--container-workdir=/w", str(script), cwd=tmp_path)
    _wait_done(slurm, job)
    env = (record / f"env.{job}").read_text().splitlines()
    prefix = "SLURM_SPANK__SLURM_SPANK_OPTION_pyxis_"
    assert f"{prefix}container_image=local/app:1" in env
    assert f"{prefix}container_mounts=/data:/data:ro" in env
    assert f"{prefix}container_workdir=/w" in env
    bad = slurm.run("sbatch", f"--chdir={tmp_path}", "--container-mounts=data:/x", str(script), check=False)
    assert bad.returncode != 0 and "container-mounts" in bad.stderr


@pytest.mark.parametrize(("pattern", "array"), [
    ("p-%x-%u-%N-%n-%t-%s-%j-%J-%A-%a-%5j-%%.out", False),
    ("a-%A_%a-%3a-%j.out", True),
])
def test_filename_patterns_match_slurmd(lane: tuple[SlurmLane, Path], tmp_path: Path, pattern: str,
                                        array: bool) -> None:
    slurm, _ = lane
    tmp_path.chmod(0o777)
    script = tmp_path / "p.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    extra = ["--array=3"] if array else []
    job = _submit(slurm, "--partition=plain", "--job-name=pat", f"--output={pattern}", *extra, str(script),
                  cwd=tmp_path)
    time.sleep(0.5)
    fields = _show(slurm, job)
    task_job = int(fields["JobId"])
    _wait_done(slurm, task_job)
    ctx = PatternContext(job_id=task_job, job_name="pat", user="root", node=socket.gethostname().split(".")[0],
                         array_job_id=job if array else None, array_task_id=3 if array else None)
    written = sorted(p.name for p in tmp_path.iterdir() if p.name != "p.sh")
    assert written == [expand_pattern(pattern, ctx)]
