"""sbatch → pod group on real kubelets: Slurm allocates, pods run, Slurm's interface stays intact.

The Slurm lane's nodes carry the names of real Kubernetes nodes (site 3), so Slurm's allocation is exactly
the set of nodes the pods land on. The shared volume is a directory under /dev/shm: the node containers
bind the host's /dev, so it has the same path on the "login" host (this process), under slurmd and in pods.
States and exit codes are compared with plain jobs of the same script in the lane's plain partition, through
``scontrol show job`` and through ``sacct`` (the lane runs slurmdbd with a private MariaDB).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, watch

from sunkbridge.images.base import ensure_base
from sunkbridge.jobs.builders import BridgeSettings, SharedVolume
from sunkbridge.jobs.controller import Controller, slurm_running_jobs
from sunkbridge.jobs.identity import write_launcher_kubeconfig
from sunkbridge.jobs.install import build_spank_plugin, install, launcher_command
from sunkbridge.k8s.client import api_client
from sunkbridge.lanes.daemons import free_port
from sunkbridge.lanes.k8s import KubeLane, KubeLaneConfig
from sunkbridge.lanes.nodes import RealNodes, Site
from sunkbridge.lanes.slurm import NodeSpec, PartitionSpec, SlurmLane, SlurmLaneConfig, make_base_dir

pytestmark = pytest.mark.e2e

IMAGE = "local/sunk-job-python:2"
NO_PYTHON = "local/debian:bookworm"
CRD = Path(__file__).parents[2] / "manifests" / "base" / "crds" / "sunkbridge.io_slurmjobs.yaml"
SLURM_NODE_MEMORY_MB = 1_000_000
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


def ensure_job_image() -> None:
    """The test image: the Debian base plus python3 (cached by tag)."""
    ensure_base("bookworm")
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode == 0:
        return
    dockerfile = ("FROM local/debian:bookworm\nRUN apt-get update && apt-get install -y --no-install-recommends "
                  "python3-minimal libpython3.11-stdlib && rm -rf /var/lib/apt/lists/*\n")
    subprocess.run(["docker", "build", "-q", "-t", IMAGE, "-"], input=dockerfile.encode(), check=True,
                   capture_output=True)


@dataclass
class Bridge:
    slurm: SlurmLane
    kube: KubeLane
    core: client.CoreV1Api
    shared: Path
    kube_api: client.ApiClient

    def sbatch(self, *argv: str, cwd: Path | None = None) -> int:
        out = self.slurm.run("sbatch", "--parsable", f"--chdir={cwd or self.shared}", *argv, timeout=60).stdout
        return int(out.strip().split(";")[0])

    def show(self, job: int) -> dict[str, str]:
        line = self.slurm.run("scontrol", "show", "job", "-o", str(job)).stdout.strip()
        fields = dict(m.groups() for m in re.finditer(r"(\S+?)=(\S*)", line))
        comment = re.search(r"Comment=(.*?) (?:StdErr|StdIn|Power|MailUser|NtasksPerTRES|$)", line)
        if comment:
            fields["Comment"] = comment.group(1)
        return fields

    def sacct(self, job: int, timeout: float = 60) -> dict[str, tuple[str, str]]:
        """`sacct` of `job` once slurmdbd has its end: {step suffix ('' for the job): (State, ExitCode)}."""
        deadline = time.monotonic() + timeout
        rows: list[list[str]] = []
        while time.monotonic() < deadline:
            out = self.slurm.run("sacct", "-n", "-P", "-j", str(job), "-o", "JobID,State,ExitCode,Partition").stdout
            rows = [line.split("|") for line in out.splitlines() if line.strip()]
            ended = rows and all(r[1].split()[0] in FINAL for r in rows)
            # right after a job ends slurmdbd may hold a stand-in row without the partition for a moment
            if ended and any(r[0] == str(job) and r[3] for r in rows):
                return {r[0][len(str(job)):]: (r[1], r[2]) for r in rows}
            time.sleep(0.5)
        raise AssertionError(f"sacct has no final record of job {job} after {timeout}s: {rows}")

    def wait_state(self, job: int, states: tuple[str, ...], timeout: float = 120) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        fields: dict[str, str] = {}
        while time.monotonic() < deadline:
            fields = self.show(job)
            if fields.get("JobState") in states:
                return fields
            time.sleep(0.5)
        raise AssertionError(f"job {job} not in {states} after {timeout}s: {fields}")

    def wait_array(self, array: int, tasks: int, timeout: float = 180) -> list[str]:
        """The final states of an array's tasks, once all `tasks` have ended."""
        deadline = time.monotonic() + timeout
        states: list[str] = []
        while time.monotonic() < deadline:
            out = self.slurm.run("scontrol", "show", "job", "-o", str(array)).stdout
            states = re.findall(r"JobState=(\S+)", out)
            if len(states) == tasks and all(state in FINAL for state in states):
                return states
            time.sleep(0.5)
        raise AssertionError(f"array {array} did not end in {timeout}s: {states}")

    def job_pods(self, job: int) -> list[client.V1Pod]:
        return list(self.core.list_namespaced_pod("default", label_selector=f"sunkbridge.io/job-id={job}").items)

    def leftovers(self, job: int) -> list[str]:
        sel = f"sunkbridge.io/job-id={job}"
        names = [p.metadata.name for p in self.core.list_namespaced_pod("default", label_selector=sel).items]
        names += [s.metadata.name for s in self.core.list_namespaced_service("default", label_selector=sel).items]
        names += [s.metadata.name for s in self.core.list_namespaced_secret("default", label_selector=sel).items]
        names += [c.metadata.name for c in self.core.list_namespaced_config_map("default", label_selector=sel).items]
        return names

    def wait_clean(self, job: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.leftovers(job) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert self.leftovers(job) == []


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    ensure_job_image()
    kube = KubeLane(KubeLaneConfig(base_dir=tmp_path_factory.mktemp("k8s-jobs"), api_port=free_port(),
                                   etcd_port=free_port(), etcd_peer_port=free_port()))
    kube.start()
    nodes = RealNodes(kube, Site(3, "sunk-job-node-"))
    slurm: SlurmLane | None = None
    controller: Controller | None = None
    shared = Path(tempfile.mkdtemp(prefix="sunk-jobs-", dir="/dev/shm"))
    shared.chmod(0o777)
    try:
        subprocess.run([str(kube.kubectl()), "--kubeconfig", str(kube.kubeconfig), "apply", "-f", str(CRD)],
                       check=True, capture_output=True)
        real = nodes.up(2, images=(IMAGE, NO_PYTHON))
        api = api_client(kube.kubeconfig)
        core = client.CoreV1Api(api)
        base = make_base_dir("sunk-slurm-bridge-")
        kubeconfig = write_launcher_kubeconfig(api, "default", kube.server, kube.pki_dir / "ca.crt",
                                               base / "launcher.kubeconfig")
        # More memory and GPUs than the kubelets have: what Slurm allocates, Kubernetes may still refuse.
        specs = tuple(NodeSpec(n.name, cpus=2, memory_mb=SLURM_NODE_MEMORY_MB, gpus=1) for n in real)
        names = tuple(n.name for n in real)
        config = SlurmLaneConfig(base_dir=base / "lane", cluster_name="bridge", nodes=specs, def_mem_per_cpu_mb=100,
                                 partitions=(PartitionSpec("pg", names, default=True), PartitionSpec("plain", names)))
        slurm = SlurmLane(config)
        config.extra_conf = install(slurm.paths.etc, "bridge", ["pg"], "pg",
                                    launcher_command(kubeconfig, "default", "bridge", default_image=IMAGE),
                                    build_spank_plugin(base / "spank"))
        slurm.start()
        lane = slurm
        settings = BridgeSettings(namespace="default", image_pull_policy="Never",
                                  shared_volumes=(SharedVolume("shared", str(shared)),))
        controller = Controller(api, settings, slurm_running=lambda ids: slurm_running_jobs(ids, lane.client_env()),
                                gc_interval=5, gc_min_age=10).start()
        yield Bridge(slurm, kube, core, shared, api)
    finally:
        if controller is not None:
            controller.stop()
        if slurm is not None:
            slurm.stop()
        nodes.down()
        kube.stop()
        shutil.rmtree(shared, ignore_errors=True)


def _env_block(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line.startswith("SLURM") and "=" in line)


SHAPE = """#!/bin/bash
#SBATCH --nodes=2 --ntasks-per-node=1 --job-name=shape
#SBATCH --output=shape-%x-%j.out
env | grep -E '^SLURM' | sort
echo ---
srun printenv SLURMD_NODENAME | sort
echo ---
srun -l printenv SLURM_PROCID SLURM_LOCALID SLURM_NODEID | sort
echo ---
scontrol show hostnames "$SLURM_JOB_NODELIST"
"""

# Variables Slurm sets that legitimately differ between two jobs of the same shape, or that describe the
# host process rather than the job (the pods have no slurm.conf, and the batch pid is the pod's).
_DIFFERENT = {"SLURM_JOB_ID", "SLURM_JOBID", "SLURM_JOB_PARTITION", "SLURM_TASK_PID", "SLURM_CONF",
              "SLURM_SCRIPT_CONTEXT", "SLURM_JOB_START_TIME", "SLURM_JOB_END_TIME"}


def test_two_node_job_matches_what_slurm_gives_a_plain_job(bridge: Bridge) -> None:
    script = bridge.shared / "shape.sh"
    script.write_text(SHAPE)
    pg = bridge.sbatch(str(script))
    plain = bridge.sbatch("--partition=plain", str(script))
    assert bridge.wait_state(pg, FINAL)["JobState"] == "COMPLETED", bridge.show(pg)
    assert bridge.wait_state(plain, FINAL)["JobState"] == "COMPLETED"
    pg_out = (bridge.shared / f"shape-shape-{pg}.out").read_text().split("---\n")
    plain_out = (bridge.shared / f"shape-shape-{plain}.out").read_text().split("---\n")
    pg_env, plain_env = _env_block(pg_out[0]), _env_block(plain_out[0])
    assert {k: v for k, v in pg_env.items() if k not in _DIFFERENT} == \
        {k: v for k, v in plain_env.items() if k not in _DIFFERENT}
    assert pg_env["SLURM_JOB_ID"] == str(pg) and pg_env["SLURM_JOB_PARTITION"] == "pg"
    def steps(blocks: list[str]) -> list[str]:  # real srun may add "srun: ... retrying" notes on stderr
        return ["".join(ln for ln in b.splitlines(True) if not ln.startswith("srun: ")) for b in blocks]

    assert steps(pg_out[1:]) == steps(plain_out[1:])
    nodes = bridge.slurm.node_names
    assert pg_out[1].split() == nodes
    assert pg_out[3].split() == nodes
    bridge.wait_clean(pg)


def test_exit_codes_and_signals_reach_slurm(bridge: Bridge) -> None:
    failing = bridge.shared / "exit3.sh"
    failing.write_text("#!/bin/sh\necho bye\nexit 3\n")
    killed = bridge.shared / "kill.sh"
    killed.write_text("#!/bin/sh\nkill -9 $$\n")
    jobs = {"pg3": bridge.sbatch(str(failing)), "plain3": bridge.sbatch("--partition=plain", str(failing)),
            "pg9": bridge.sbatch(str(killed)), "plain9": bridge.sbatch("--partition=plain", str(killed))}
    shown = {k: bridge.wait_state(j, FINAL) for k, j in jobs.items()}
    assert (shown["pg3"]["JobState"], shown["pg3"]["ExitCode"]) == ("FAILED", "3:0")
    assert (shown["pg3"]["JobState"], shown["pg3"]["ExitCode"]) == \
        (shown["plain3"]["JobState"], shown["plain3"]["ExitCode"])
    assert (shown["pg9"]["JobState"], shown["pg9"]["ExitCode"]) == ("FAILED", "0:9"), \
        (bridge.shared / f"slurm-{jobs['pg9']}.out").read_text()
    assert (shown["pg9"]["JobState"], shown["pg9"]["ExitCode"]) == \
        (shown["plain9"]["JobState"], shown["plain9"]["ExitCode"]) == ("FAILED", "0:9")
    # accounting records them as it records plain jobs, the batch step included
    acct = {k: bridge.sacct(j) for k, j in jobs.items()}
    assert acct["pg3"][""] == ("FAILED", "3:0") and acct["pg3"] == acct["plain3"], acct
    assert acct["pg9"][""] == ("FAILED", "0:9") and acct["pg9"] == acct["plain9"], acct
    for job in jobs.values():
        bridge.wait_clean(job)


def test_output_of_jobs_that_exit_at_once_reaches_their_files(bridge: Bridge) -> None:
    """Four at once: a container that ends before the launcher opens its log still has its output copied."""
    script = bridge.shared / "quick.sh"
    script.write_text("#!/bin/sh\necho bye\necho err >&2\nexit 3\n")
    jobs = [bridge.sbatch(str(script)) for _ in range(4)]
    outputs = {}
    for job in jobs:
        bridge.wait_state(job, FINAL)
        outputs[job] = sorted((bridge.shared / f"slurm-{job}.out").read_text().splitlines(keepends=True))
    # containerd copies stdout and stderr apart, so the order between the two is not kept
    assert outputs == {job: ["bye\n", "err\n"] for job in jobs}
    for job in jobs:
        bridge.wait_clean(job)


SPLIT = """#!/bin/sh
#SBATCH --job-name=split --output=%x-%j.out --error=%x-%j.err
echo out one
echo err one >&2
echo out two
printf 'err two, no newline' >&2
"""

SPLIT_ARRAY = """#!/bin/sh
#SBATCH --job-name=splitarr --array=0-1 --output=%x-%A_%a.out --error=%x-%A_%a.err
echo "out $SLURM_ARRAY_TASK_ID"
echo "err $SLURM_ARRAY_TASK_ID" >&2
"""


def _files(folder: Path, pattern: str) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.glob(pattern))}


def test_error_goes_to_its_own_file_as_on_a_plain_slurm_job(bridge: Bridge) -> None:
    folders = {name: bridge.shared / f"split-{name}" for name in ("pg", "plain")}
    jobs: dict[str, tuple[int, int]] = {}
    for name, folder in folders.items():
        folder.mkdir()
        (folder / "split.sh").write_text(SPLIT)
        (folder / "splitarr.sh").write_text(SPLIT_ARRAY)
        jobs[name] = (bridge.sbatch(f"--partition={name}", str(folder / "split.sh"), cwd=folder),
                      bridge.sbatch(f"--partition={name}", str(folder / "splitarr.sh"), cwd=folder))
    for single, array in jobs.values():
        assert bridge.wait_state(single, FINAL)["JobState"] == "COMPLETED"
        assert bridge.wait_array(array, 2) == ["COMPLETED", "COMPLETED"]
    seen = {}
    for name, folder in folders.items():
        single, array = jobs[name]
        files = _files(folder, "split*.*")
        files.pop("split.sh"), files.pop("splitarr.sh")
        # Slurm's own pattern expansion names the files: %x-%j and %x-%A_%a
        assert sorted(files) == sorted([f"split-{single}.out", f"split-{single}.err",
                                        f"splitarr-{array}_0.out", f"splitarr-{array}_0.err",
                                        f"splitarr-{array}_1.out", f"splitarr-{array}_1.err"]), files
        seen[name] = {k.replace(f"-{single}.", "-J.").replace(f"-{array}_", "-A_"): v for k, v in files.items()}
    assert seen["pg"] == seen["plain"]
    assert seen["pg"]["split-J.out"] == "out one\nout two\n"
    assert seen["pg"]["split-J.err"] == "err one\nerr two, no newline"
    assert seen["pg"]["splitarr-A_1.err"] == "err 1\n"


def test_scancel_removes_the_pods_and_cancels(bridge: Bridge) -> None:
    script = bridge.shared / "sleep.sh"
    script.write_text("#!/bin/sh\n#SBATCH --nodes=2\necho started\nsleep 300\n")
    job = bridge.sbatch(str(script))
    bridge.wait_state(job, ("RUNNING",))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        pods = bridge.job_pods(job)
        if len(pods) == 2 and all(p.status.phase == "Running" for p in pods):
            break
        time.sleep(0.5)
    assert sorted(p.spec.node_name for p in bridge.job_pods(job)) == bridge.slurm.node_names
    bridge.slurm.run("scancel", str(job))
    cancelled = time.monotonic()
    assert bridge.wait_state(job, FINAL)["JobState"] == "CANCELLED"
    assert bridge.sacct(job)[""][0].startswith("CANCELLED")  # sacct adds "by <uid>"
    bridge.wait_clean(job, timeout=30)
    assert time.monotonic() - cancelled < 30


def test_time_limit_gives_timeout(bridge: Bridge) -> None:
    script = bridge.shared / "long.sh"
    script.write_text("#!/bin/sh\n#SBATCH --time=1\nsleep 600\n")
    job = bridge.sbatch(str(script))
    assert bridge.wait_state(job, FINAL, timeout=180)["JobState"] == "TIMEOUT"
    assert bridge.sacct(job)[""][0] == "TIMEOUT"
    bridge.wait_clean(job)


def test_array_with_max_running_and_afterok_dependency(bridge: Bridge) -> None:
    script = bridge.shared / "array.sh"
    script.write_text("#!/bin/sh\n#SBATCH --array=0-3%2 --output=arr-%A_%a.out\necho $SLURM_ARRAY_TASK_ID\n"
                      "sleep 8\n")
    array = bridge.sbatch(str(script))
    after = bridge.shared / "after.sh"
    after.write_text("#!/bin/sh\necho after\n")
    dependent = bridge.sbatch(f"--dependency=afterok:{array}", str(after))
    most = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal most
        while not stop.is_set():
            out = bridge.slurm.run("squeue", "-h", "-r", "-j", str(array), "-t", "RUNNING", "-o", "%i",
                                   check=False).stdout.split()
            most = max(most, len(out))
            time.sleep(0.3)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert bridge.show(dependent)["Reason"] == "Dependency"
    states = bridge.wait_array(array, 4)
    outputs = {task: (bridge.shared / f"arr-{array}_{task}.out") for task in range(4)}
    assert states == ["COMPLETED"] * 4, {task: f.read_text() if f.exists() else None for task, f in outputs.items()}
    assert bridge.wait_state(dependent, FINAL, timeout=60)["JobState"] == "COMPLETED"
    stop.set()
    sampler.join()
    assert most == 2
    for task in range(4):
        assert (bridge.shared / f"arr-{array}_{task}.out").read_text() == f"{task}\n"
    assert (bridge.shared / f"slurm-{dependent}.out").read_text() == "after\n"


def test_bad_input_fails_fast_with_a_reason_and_leaves_nothing(bridge: Bridge) -> None:
    script = bridge.shared / "any.sh"
    script.write_text("#!/bin/sh\necho never\n")
    unknown = bridge.sbatch("--container-image=local/does-not-exist:1", str(script))
    nopython = bridge.sbatch(f"--container-image={NO_PYTHON}", str(script))
    for job, reason in ((unknown, "ErrImageNeverPull"), (nopython, "no python3")):
        fields = bridge.wait_state(job, FINAL, timeout=90)
        assert fields["JobState"] == "FAILED"
        assert reason in fields.get("Comment", ""), fields
        assert reason in (bridge.shared / f"slurm-{job}.out").read_text()
        bridge.wait_clean(job)


def test_resources_no_kubelet_has_fail_fast_with_a_reason_and_leave_nothing(bridge: Bridge) -> None:
    """Slurm's node claims more memory than the kubelet has: the kubelet refuses the pod, the job fails at once."""
    script = bridge.shared / "big.sh"
    script.write_text("#!/bin/sh\necho never\n")
    custom = client.CustomObjectsApi(bridge.kube_api)
    statuses: dict[int, dict[str, object]] = {}
    stop = threading.Event()

    def record() -> None:  # the SlurmJob goes with the job: keep the last status it had
        while not stop.is_set():
            for event in watch.Watch().stream(custom.list_namespaced_custom_object, "sunkbridge.io", "v1alpha1",
                                              "default", "slurmjobs", timeout_seconds=2):
                item = event["object"]
                if item.get("status"):
                    statuses[int(item["spec"]["jobId"])] = item["status"]

    recorder = threading.Thread(target=record, daemon=True)
    recorder.start()
    memory_gb = SLURM_NODE_MEMORY_MB // 2048  # half of what Slurm thinks the node has; far above the host's
    jobs = {bridge.sbatch(f"--mem={memory_gb}G", str(script)): "memory"}
    try:
        for job, resource in jobs.items():
            bridge.wait_state(job, ("RUNNING", *FINAL))
            started = time.monotonic()
            fields = bridge.wait_state(job, FINAL, timeout=120)
            took = time.monotonic() - started
            assert fields["JobState"] == "FAILED" and took < 30, (fields, took)
            assert resource in fields.get("Comment", ""), fields
            squeue = bridge.slurm.run("squeue", "-h", "-t", "all", "-j", str(job), "-o", "%k").stdout
            assert resource in squeue and squeue.startswith("sunk: ")
            status = statuses[job]
            assert status["phase"] == "Failed" and resource in str(status["message"]), status
            assert (bridge.shared / f"slurm-{job}.out").read_text().count("never") == 0
            bridge.wait_clean(job, timeout=30)
    finally:
        stop.set()
        recorder.join()


def test_gpus_the_kubernetes_node_lacks_fail_the_job(bridge: Bridge) -> None:
    script = bridge.shared / "gpu.sh"
    script.write_text("#!/bin/sh\necho ran\nsleep 3\n")
    job = bridge.sbatch("--gres=gpu:1", str(script))
    fields = bridge.wait_state(job, FINAL, timeout=120)
    bridge.wait_clean(job)
    assert fields["JobState"] == "FAILED" and "nvidia.com/gpu" in fields.get("Comment", ""), fields


def test_submitit_style_submission(bridge: Bridge) -> None:
    """The shape of submitit's generated script: srun with per-task --output/--error patterns."""
    folder = bridge.shared / "submitit"
    folder.mkdir()
    script = folder / "submission.sh"
    script.write_text(f"""#!/bin/bash
#SBATCH --job-name=submitit
#SBATCH --nodes=2 --ntasks-per-node=1 --open-mode=append
#SBATCH --output={folder}/%j_0_log.out --error={folder}/%j_0_log.err
#SBATCH --signal=USR2@90
srun --unbuffered --output {folder}/%j_%t_log.out --error {folder}/%j_%t_log.err \\
  python3 -u -c 'import os; print("task", os.environ["SLURM_PROCID"], "of", os.environ["SLURM_NTASKS"])'
""")
    job = bridge.sbatch(str(script), cwd=folder)
    assert bridge.wait_state(job, FINAL)["JobState"] == "COMPLETED"
    assert (folder / f"{job}_0_log.out").read_text() == "task 0 of 2\n"
    assert (folder / f"{job}_1_log.out").read_text() == "task 1 of 2\n"


def _wait_pods_running(bridge: Bridge, job: int, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = bridge.job_pods(job)
        if len(pods) == count and all(p.status.phase == "Running" for p in pods):
            return
        time.sleep(0.5)
    raise AssertionError(f"pods of job {job} not running: {[p.status.phase for p in bridge.job_pods(job)]}")


def test_pods_of_a_job_that_ended_behind_the_launchers_back_are_collected(bridge: Bridge) -> None:
    """The launcher dies without cleaning up (SIGKILL); the controller asks Slurm and removes the pods."""
    script = bridge.shared / "orphan.sh"
    script.write_text("#!/bin/sh\n#SBATCH --nodes=2\nsleep 300\n")
    job = bridge.sbatch(str(script))
    bridge.wait_state(job, ("RUNNING",))
    _wait_pods_running(bridge, job, 2)
    pids = bridge.slurm.run("scontrol", "listpids", str(job)).stdout.split("\n")[1:]
    for line in filter(None, pids):
        subprocess.run(["kill", "-9", line.split()[0]], check=False)
    assert bridge.wait_state(job, FINAL)["JobState"] in ("FAILED", "CANCELLED")
    bridge.wait_clean(job, timeout=60)


def test_requeue_after_node_failure_runs_the_job_again(bridge: Bridge) -> None:
    script = bridge.shared / "requeue.sh"
    script.write_text("#!/bin/sh\n#SBATCH --nodes=2 --requeue --open-mode=append\n"
                      "echo run $SLURM_RESTART_COUNT\n[ \"${SLURM_RESTART_COUNT:-0}\" -ge 1 ] || sleep 300\n")
    job = bridge.sbatch(str(script))
    bridge.wait_state(job, ("RUNNING",))
    _wait_pods_running(bridge, job, 2)
    out = bridge.shared / f"slurm-{job}.out"
    deadline = time.monotonic() + 30
    while "run" not in (out.read_text() if out.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.2)  # the first run's output has reached the file
    node = bridge.slurm.node_names[1]
    bridge.slurm.run("scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=e2e-node-failure")
    try:
        bridge.wait_state(job, ("PENDING", "REQUEUED", "REQUEUE_HOLD"), timeout=60)
        bridge.wait_clean(job, timeout=60)
    finally:
        bridge.slurm.run("scontrol", "update", f"NodeName={node}", "State=RESUME", check=False)
    fields = bridge.wait_state(job, FINAL, timeout=300)
    assert fields["JobState"] == "COMPLETED" and fields["Restarts"] == "1"
    lines = out.read_text().splitlines()
    assert lines.index("run") < lines.index("run 1")  # SLURM_RESTART_COUNT is unset on the first run
    assert any("DUE TO NODE FAILURE" in line for line in lines)  # slurmstepd's own note, as on any cluster


def test_a_held_job_waits_for_release(bridge: Bridge) -> None:
    script = bridge.shared / "held.sh"
    script.write_text("#!/bin/sh\necho released\n")
    job = bridge.sbatch("--hold", str(script))
    time.sleep(3)
    fields = bridge.show(job)
    assert (fields["JobState"], fields["Reason"]) == ("PENDING", "JobHeldUser")
    assert bridge.job_pods(job) == []
    bridge.slurm.run("scontrol", "release", str(job))
    assert bridge.wait_state(job, FINAL)["JobState"] == "COMPLETED"
    assert (bridge.shared / f"slurm-{job}.out").read_text() == "released\n"
