"""The operator on real pods: a SlurmCluster over two real kubelet nodes becomes a working Slurm cluster.

A control plane of its own, two real nodes on site 2 (`sunk-op-node-1`, `-2`) with the locally built
22.05 images loaded, stand-in GPUs advertised by patching the nodes' status, and the operator running as
`sunk operator run` (kopf) in a separate process. The tests run in order and share the cluster.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sunkbridge.images.build import build_image, build_slurm_images, image_tag
from sunkbridge.images.job import ensure_job_image
from sunkbridge.jobs.builders import LABEL_JOB
from sunkbridge.k8s.client import api_client
from sunkbridge.lanes.daemons import LaneError, free_port
from sunkbridge.lanes.k8s import KubeLane, KubeLaneConfig
from sunkbridge.lanes.nodes import REAL_POOL, RealNodes, Site
from sunkbridge.operator.kube import Kube
from sunkbridge.operator.spec import GROUP, PLURAL, VERSION
from sunkbridge.operator.tools import kubectl

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MARIADB_IMAGE = "local/sunk-mariadb:bookworm"
IMAGES = (*(f"local/sunk-{role}:22.05" for role in ("slurmctld", "slurmd", "login", "slurmrestd", "slurmdbd")),
          MARIADB_IMAGE)
NODES = ("sunk-op-node-1", "sunk-op-node-2")
SITE = Site(2, "sunk-op-node-")
SHARED = Path("/dev/shm/sunk-op-shared")  # /dev is the host's in the node containers: one folder for all pods
NS = "default"
STORAGE_CLASS = "sunk-local"
NAME = "op"


@dataclass
class Env:
    lane: KubeLane
    kube: Kube
    core: client.CoreV1Api
    operator_log: Path
    nodes: RealNodes
    operator: subprocess.Popen[bytes] | None = None
    ready_seconds: float = 0.0

    def stop_operator(self) -> None:
        """Stop the operator process the fixture started."""
        if self.operator is not None:
            self.operator.terminate()
            try:
                self.operator.wait(20)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait(10)
            self.operator = None

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        proc = subprocess.run([str(kubectl()), "--kubeconfig", str(self.lane.kubeconfig), *args],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def apply(self, docs: list[dict[str, Any]]) -> None:
        proc = subprocess.run([str(kubectl()), "--kubeconfig", str(self.lane.kubeconfig), "apply", "-f", "-"],
                              input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr

    def login(self, script: str, check: bool = True) -> str:
        return self.kubectl("exec", f"deploy/{NAME}-login", "--", "bash", "-c", script, check=check)

    def cluster(self) -> dict[str, Any]:
        return dict(self.kube.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME))

    def condition(self, kind: str) -> dict[str, Any]:
        return next((c for c in self.cluster().get("status", {}).get("conditions", []) if c["type"] == kind), {})

    def ctld_boot_time(self) -> str:
        """When the running slurmctld started (it restarts inside its container, so this is the clock)."""
        config = self.login("scontrol show config")
        return next(line.split("=", 1)[1].strip() for line in config.splitlines() if line.startswith("BOOT_TIME"))


def wait_for(what: str, check: Callable[[], bool], timeout: float = 180, interval: float = 2) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (AssertionError, client.ApiException, subprocess.SubprocessError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f}s" + (f" (last error: {last})" if last else ""))


# A batch script that runs until the test releases it (no sleep races with a loaded machine).
HOLD = shlex.quote('while [ ! -e "/tmp/release-$SLURM_JOB_ID" ]; do sleep 1; done')


def release(env: Env, node: str, job: str) -> None:
    """Let job `job`, whose batch script runs in the slurmd pod of `node`, finish."""
    env.kubectl("exec", f"{NAME}-slurmd-{node}", "--", "touch", f"/tmp/release-{job}")


def wait_job(env: Env, job: str, state: str = "COMPLETED", timeout: float = 120) -> None:
    """Wait until Slurm shows job `job` in `state`; on timeout say what Slurm shows instead."""
    def reached() -> bool:
        return f"JobState={state} " in env.login(f"scontrol show job {job} -o", check=False)

    try:
        wait_for(f"job {job} {state}", reached, timeout=timeout)
    except AssertionError as exc:
        shown = env.login(f"scontrol show job {job} -o; sinfo -h -N -o '%N %t %E'; sacct -n -P -X -j {job} "
                          "-o JobID,State,ExitCode,NodeList", check=False)
        raise AssertionError(f"{exc}; Slurm shows: {shown}") from exc


def _cluster_body() -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SlurmCluster", "metadata": {"name": NAME, "namespace": NS},
            "spec": {"imagePullPolicy": "Never",
                     "controller": {"persistence": {"storageClassName": STORAGE_CLASS, "size": "1Gi"}},
                     "restapi": {"enabled": True},
                     "accounting": {"enabled": True, "database": {
                         "host": f"{NAME}-mariadb", "passwordSecretRef": {"name": f"{NAME}-db", "key": "password"}}},
                     "pools": [{"name": "real", "default": True, "mode": "slurmd",
                                "nodeSelector": {"sunkbridge.io/pool": REAL_POOL},
                                "partitionOptions": {"MaxTime": "1:00:00"}}]}}


def _local_storage(e: Env) -> None:
    """slurmctld's state volume without a provisioner: a StorageClass that provisions nothing and one local
    PersistentVolume on a folder of sunk-op-node-1, bound by node affinity (as an admin prepares a disk)."""
    path = f"/var/lib/sunk-local/{NAME}-slurmctld"
    subprocess.run(["docker", "exec", NODES[0], "install", "-d", "-m", "0755", path], check=True, timeout=30)
    docs: list[dict[str, Any]] = [
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": STORAGE_CLASS},
         "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer",
         "reclaimPolicy": "Retain"},
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{NAME}-slurmctld-state"},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORAGE_CLASS,
                  "local": {"path": path},
                  "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                      {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODES[0]]}]}]}}}},
    ]
    e.apply(docs)


def _mariadb(e: Env) -> None:
    """The accounting database as a user would run it beside the cluster: a Secret, a pod, a Service."""
    labels = {"app.kubernetes.io/name": f"{NAME}-mariadb"}
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{NAME}-db", "namespace": NS},
         "stringData": {"password": secrets.token_hex(16)}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{NAME}-mariadb", "namespace": NS},
         "spec": {"clusterIP": "None", "selector": labels, "ports": [{"name": "mysql", "port": 3306}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"{NAME}-mariadb", "namespace": NS},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"containers": [{
                 "name": "mariadb", "image": MARIADB_IMAGE, "imagePullPolicy": "Never",
                 "ports": [{"containerPort": 3306}],
                 "volumeMounts": [{"name": "pass", "mountPath": "/etc/mariadb-secret", "readOnly": True}],
                 "readinessProbe": {"exec": {"command": ["mariadb-admin", "ping"]}, "periodSeconds": 3}}],
                 "volumes": [{"name": "pass", "secret": {"secretName": f"{NAME}-db"}}]}}}},
    ]
    e.apply(docs)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    build_slurm_images("bookworm", ["slurmctld", "slurmd", "login", "slurmrestd", "slurmdbd", "controller"])
    build_image(ROOT / "slurm-images" / "mariadb", MARIADB_IMAGE, name="mariadb")
    base = tmp_path_factory.mktemp("k8s-operator")
    for attempt in range(3):  # a free port can be taken by another lane before the daemon binds it
        lane = KubeLane(KubeLaneConfig(base_dir=base, api_port=free_port(), etcd_port=free_port(),
                                       etcd_peer_port=free_port(), pod_api_ip=SITE.dns_ip))
        try:
            lane.start()
            break
        except LaneError as exc:
            lane.stop()
            if "address already in use" not in str(exc) or attempt == 2:
                raise
    nodes = RealNodes(lane, SITE)
    e: Env | None = None
    try:
        nodes.up(2, images=(*IMAGES, image_tag("controller"), ensure_job_image()))
        api = api_client(lane.kubeconfig)
        e = Env(lane, Kube(api), client.CoreV1Api(api), base / "operator.log", nodes)
        for node in NODES:  # two stand-in GPUs per node, as a device plugin would advertise them
            e.kubectl("patch", "node", node, "--subresource=status", "--type=merge", "-p",
                      '{"status":{"capacity":{"nvidia.com/gpu":"2"},"allocatable":{"nvidia.com/gpu":"2"}}}')
            e.kubectl("label", "node", node, "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3", "--overwrite")
        e.kubectl("apply", "--server-side", "-f", str(ROOT / "manifests" / "base" / "crds"))
        e.kubectl("apply", "-f", str(ROOT / "manifests" / "base" / "rbac" / "bridge_roles.yaml"))
        e.kubectl("wait", "--for=condition=Established", "crd/slurmclusters.sunkbridge.io")
        _local_storage(e)
        _mariadb(e)
        with e.operator_log.open("wb") as sink:
            e.operator = subprocess.Popen([sys.executable, "-m", "sunkbridge", "operator", "run", "-A", "--liveness",
                                         ""], env={**os.environ, "KUBECONFIG": str(lane.kubeconfig),
                                                   "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "cli")))},
                                        stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
        time.sleep(3)
        started = time.monotonic()
        e.kube.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, _cluster_body())
        try:
            wait_for("SlurmCluster Ready", lambda: e.condition("Ready").get("status") == "True", timeout=240)
        except AssertionError as exc:
            pods = e.kubectl("get", "pods", "-o", "wide", check=False)
            raise AssertionError(f"{exc}: {e.condition('Ready').get('message')}\n{pods}\noperator log: "
                                 f"{e.operator_log.read_text(errors='replace')[-1500:]}") from exc
        e.ready_seconds = time.monotonic() - started
        yield e
        # Delete while the operator runs, so its finalizer goes too.
        e.kubectl("delete", "slurmcluster", NAME, "--timeout=60s", check=False)
    finally:
        if e is not None:
            e.stop_operator()
        nodes.down()
        lane.stop()


def test_cluster_is_ready_and_sinfo_shows_gpu_partition(env: Env) -> None:
    print(f"apply → Ready: {env.ready_seconds:.1f}s")
    out = env.login("sinfo -h -o '%P|%D|%G|%l|%t'").split()
    assert out == ["real*|2|gpu:h100:2|1:00:00|idle"]
    pods = {p.metadata.name: p for p in env.core.list_namespaced_pod(NS).items}
    assert {f"{NAME}-slurmctld-0", f"{NAME}-slurmd-sunk-op-node-1", f"{NAME}-slurmd-sunk-op-node-2"} <= set(pods)
    assert pods[f"{NAME}-slurmd-sunk-op-node-2"].spec.node_name == "sunk-op-node-2"
    shown = env.kubectl("get", "slurmclusters", NAME).splitlines()[1].split()
    assert shown[:6] == [NAME, "True", "2", "2", "0", "0"]


def test_two_node_sbatch_job_completes_in_slurmd_pods(env: Env) -> None:
    job = env.login("sbatch --parsable -N2 --gres=gpu:h100:2 -o /tmp/two-%j.out "
                    "--wrap 'srun hostname; echo gpus=$SLURM_GPUS_ON_NODE'").strip()

    def done() -> bool:
        return "JobState=COMPLETED" in env.login(f"scontrol show job {job} -o")

    wait_for(f"job {job} completed", done, timeout=90)
    assert "ExitCode=0:0" in env.login(f"scontrol show job {job} -o")
    out = env.kubectl("exec", f"{NAME}-slurmd-sunk-op-node-1", "--", "cat", f"/tmp/two-{job}.out").split()
    assert sorted(out[:2]) == list(NODES) and out[2] == "gpus=2"


REST_PROBE = r"""
import json, sys, urllib.request
base, token = sys.argv[1], sys.argv[2]
headers = {"X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": token}
def get(path):
    req = urllib.request.Request(base + path, headers=headers)
    with urllib.request.urlopen(req, timeout=20) as resp:
        return resp.status, json.load(resp)
_, spec = get("/openapi/v3")
diag = sorted(p for p in spec["paths"] if p.startswith("/slurm/v") and p.endswith("/diag"))[-1]
status, body = get(diag)
print(json.dumps({"path": diag, "status": status, "body": body}))
"""


def test_rest_api_answers_with_jwt_through_its_service(env: Env) -> None:
    assert env.condition("RestApiReady").get("status") == "True"
    token = env.login("scontrol token username=root lifespan=300").strip().removeprefix("SLURM_JWT=")
    url = f"http://{NAME}-restapi.{NS}.svc.cluster.local:6820"
    out = json.loads(env.login(f"python3 -c {shlex.quote(REST_PROBE)} {url} {shlex.quote(token)}"))
    print(f"slurmrestd served {out['path']}")
    assert out["status"] == 200 and out["path"].startswith("/slurm/v0.0.")
    assert not out["body"].get("errors"), out["body"]["errors"]
    assert out["body"]["statistics"]["server_thread_count"] >= 1
    # Without a token slurmrestd refuses the same request.
    refused = env.login(f"python3 -c \"import urllib.request as u; u.urlopen('{url}{out['path']}')\" 2>&1",
                        check=False)
    assert "HTTP Error 401" in refused or "HTTP Error 403" in refused, refused


def test_sacct_in_the_login_pod_shows_a_finished_job(env: Env) -> None:
    assert env.condition("AccountingReady").get("status") == "True"
    job = env.login("sbatch --parsable -N1 -o /dev/null --wrap 'exit 3'").strip()

    def recorded() -> bool:
        rows = env.login(f"sacct -n -P -X -j {job} -o JobID,State,ExitCode", check=False).split()
        return rows == [f"{job}|FAILED|3:0"]

    wait_for(f"job {job} in slurmdbd's records", recorded, timeout=120)
    # The records live in MariaDB, not only in slurmctld's memory.
    tables = env.kubectl("exec", f"deploy/{NAME}-mariadb", "--", "mariadb", "-N", "-e",
                         "SHOW TABLES FROM slurm_acct_db")
    assert f"{NAME}_job_table" in tables.split()


def test_held_job_survives_deletion_of_the_slurmctld_pod(env: Env) -> None:
    claim = env.core.read_namespaced_persistent_volume_claim(f"state-{NAME}-slurmctld-0", NS)
    assert claim.status.phase == "Bound" and claim.spec.volume_name == f"{NAME}-slurmctld-state"
    held = env.login("sbatch --parsable --hold -o /dev/null --wrap hostname").strip()
    old = env.core.read_namespaced_pod(f"{NAME}-slurmctld-0", NS)
    env.kubectl("delete", "pod", f"{NAME}-slurmctld-0", "--wait=false")

    def replaced() -> bool:
        pod = env.core.read_namespaced_pod(f"{NAME}-slurmctld-0", NS)
        return pod.metadata.uid != old.metadata.uid and any(
            c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])

    wait_for("a new slurmctld pod, ready", replaced, timeout=180)
    new = env.core.read_namespaced_pod(f"{NAME}-slurmctld-0", NS)
    assert new.spec.node_name == NODES[0], "the local volume pins slurmctld to its node"
    wait_for("slurmctld answers the login pod", lambda: "is UP" in env.login("scontrol ping", check=False))
    # Once Ready the operator has handed the new slurmctld its configuration and seen every node answer: a
    # job launched before that can race the slurmd nodes' re-registration, and Slurm then requeues it.
    wait_for("SlurmCluster Ready with the new slurmctld", lambda: env.condition("Ready").get("status") == "True",
             timeout=120)
    shown = env.login(f"scontrol show job {held} -o")
    assert f"JobId={held} " in shown and "JobState=PENDING" in shown and "Reason=JobHeldUser" in shown, shown
    after = env.login("sbatch --parsable -o /dev/null --wrap hostname").strip()
    assert int(after) > int(held), "job ids continue from the saved state"
    env.login(f"scontrol release {held}")
    wait_job(env, held)
    wait_job(env, after)


def slurmctld_container_restarts(env: Env) -> int:
    """How often the kubelet restarted slurmctld's container (each restart lengthens its back-off)."""
    pod = env.core.read_namespaced_pod(f"{NAME}-slurmctld-0", NS)
    return sum(c.restart_count for c in pod.status.container_statuses or [] if c.name == "slurmctld")


def test_slurmd_pods_are_replaced_one_node_at_a_time_after_running_jobs(env: Env) -> None:
    def slurmd_pods() -> dict[str, Any]:
        return {p.spec.node_name: p for p in env.core.list_namespaced_pod(
            NS, label_selector="sunkbridge.io/component=slurmd").items}

    before = {node: pod.metadata.uid for node, pod in slurmd_pods().items()}
    assert sorted(before) == list(NODES)
    job = env.login(f"sbatch --parsable -w {NODES[0]} -o /dev/null --wrap {HOLD}").strip()
    wait_for("job running", lambda: f"{job} R" in env.login("squeue -h -o '%i %t'"), timeout=60)
    env.kubectl("patch", "slurmcluster", NAME, "--type=json", "-p", json.dumps([
        {"op": "add", "path": "/spec/pools/0/slurmdResources",
         "value": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}}}]))
    wait_for(f"{NODES[0]} draining for the replacement",
             lambda: f"{NODES[0]} drng" in env.login("sinfo -h -N -o '%N %t'"), timeout=60)
    time.sleep(5)  # passes of the operator while the job runs: no pod may go, and only one node drains
    assert {node: pod.metadata.uid for node, pod in slurmd_pods().items()} == before
    assert f"{NODES[1]} idle" in env.login("sinfo -h -N -o '%N %t'")
    assert f"{job} R" in env.login("squeue -h -o '%i %t'")
    release(env, NODES[0], job)

    going: list[str] = []  # nodes in the order their old pod started to go
    new_ready: set[str] = set()  # nodes whose new pod has been seen ready
    overlaps: list[str] = []

    def all_replaced() -> bool:
        pods = slurmd_pods()
        for n, p in pods.items():
            if p.metadata.uid != before[n] and p.metadata.deletion_timestamp is None and any(
                    c.type == "Ready" and c.status == "True" for c in p.status.conditions or []):
                new_ready.add(n)
        for n in NODES:
            p = pods.get(n)
            if n not in going and (p is None or p.metadata.uid != before[n] or p.metadata.deletion_timestamp):
                if going and going[-1] not in new_ready:
                    overlaps.append(f"{n} went before {going[-1]} had a ready pod again")
                going.append(n)
        return new_ready == set(NODES)

    wait_for("both slurmd pods replaced and ready", all_replaced, timeout=360, interval=1)
    assert going == list(NODES) and not overlaps, (going, overlaps)
    for pod in slurmd_pods().values():
        assert pod.spec.containers[0].resources.requests == {"cpu": "50m", "memory": "64Mi"}
    rows = env.login(f"sacct -n -P -X -j {job} -o State,ExitCode").split()
    assert rows == ["COMPLETED|0:0"], rows
    wait_for("both nodes idle", lambda: env.login("sinfo -h -N -o '%N %t'", check=False).split() == [
        NODES[0], "idle", NODES[1], "idle"], timeout=120)
    wait_for("SlurmCluster Ready", lambda: env.condition("Ready").get("status") == "True", timeout=60)
    assert slurmctld_container_restarts(env) == 0, "the rollout's slurmctld restarts happen inside its container"


def test_partition_change_rolls_out_while_jobs_wait(env: Env) -> None:
    running = env.login(f"sbatch --parsable -N2 --exclusive -w sunk-op-node-[1-2] -o /dev/null --wrap {HOLD}").strip()
    queued = env.login("sbatch --parsable -N2 -o /dev/null --wrap 'hostname'").strip()
    wait_for("first job running", lambda: f"{running} R" in env.login("squeue -h -o '%i %t'"), timeout=60)
    booted = env.ctld_boot_time()
    env.kubectl("patch", "slurmcluster", NAME, "--type=json", "-p",
                '[{"op":"replace","path":"/spec/pools/0/partitionOptions/MaxTime","value":"2:00:00"}]')
    wait_for("MaxTime rolled out", lambda: "MaxTime=02:00:00" in env.login("scontrol show partition real -o"),
             timeout=60)
    states = env.login("squeue -h -o '%i %t'")
    assert f"{running} R" in states and f"{queued} PD" in states
    assert env.ctld_boot_time() == booted, "a partition option must apply with scontrol reconfigure"
    # A change Slurm only takes at start: slurmctld restarts from its saved state; the jobs stay.
    env.kubectl("patch", "slurmcluster", NAME, "--type=merge", "-p",
                '{"spec":{"slurmConf":{"overrides":{"SchedulerType":"sched/builtin"}}}}')
    wait_for("slurmctld restarted", lambda: env.ctld_boot_time() != booted, timeout=90)
    wait_for("new scheduler active", lambda: "sched/builtin" in env.login("scontrol show config"), timeout=90)
    states = env.login("squeue -h -o '%i %t'")
    assert running in states and queued in states
    release(env, "sunk-op-node-1", running)
    wait_for("both jobs finished", lambda: not env.login("squeue -h -o %i").strip(), timeout=120)
    assert "JobState=COMPLETED" in env.login(f"scontrol show job {queued} -o")


def test_override_slurm_refuses_is_reported_not_rolled_out(env: Env) -> None:
    before = env.kube.get_json(f"/api/v1/namespaces/{NS}/configmaps/{NAME}-slurm-conf")["data"]["slurm.conf"]
    env.kubectl("patch", "slurmcluster", NAME, "--type=merge", "-p",
                '{"spec":{"slurmConf":{"overrides":{"SchedulerParamters":"bf_interval=5"}}}}')
    try:
        wait_for("ConfigRendered False", lambda: env.condition("ConfigRendered").get("status") == "False", timeout=60)
        assert "SchedulerParamters" in env.condition("ConfigRendered")["message"]
        after = env.kube.get_json(f"/api/v1/namespaces/{NS}/configmaps/{NAME}-slurm-conf")["data"]["slurm.conf"]
        assert after == before
        wait_for("slurmctld's own files readable", lambda: "SchedulerParamters" not in env.kubectl(
            "exec", f"{NAME}-slurmctld-0", "-c", "slurmctld", "--", "cat", "/etc/slurm/slurm.conf"), timeout=60)
        assert env.login("scontrol ping").count("is UP") == 1
    finally:
        env.kubectl("patch", "slurmcluster", NAME, "--type=json", "-p",
                    '[{"op":"remove","path":"/spec/slurmConf/overrides/SchedulerParamters"}]')
    wait_for("ConfigRendered True again", lambda: env.condition("ConfigRendered").get("status") == "True",
             timeout=60)


def test_missing_image_appears_in_status(env: Env) -> None:
    body = _cluster_body()
    body["metadata"]["name"] = "noimage"
    body["spec"]["images"] = {"login": "local/sunk-absent:0"}
    body["spec"]["pools"][0]["nodeSelector"] = {"sunkbridge.io/pool": "none"}
    env.kube.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
    try:
        def reported() -> bool:
            obj = env.kube.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "noimage")
            cond = next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "ImagesAvailable"), {})
            return cond.get("status") == "False" and "local/sunk-absent:0" in cond.get("message", "")

        wait_for("ImagesAvailable False naming the image", reported, timeout=120)
    finally:
        env.kubectl("delete", "slurmcluster", "noimage", "--timeout=60s", check=False)


def test_node_leaving_the_pool_is_drained_before_its_pod_goes(env: Env) -> None:
    job = env.login(f"sbatch --parsable -w sunk-op-node-2 -o /dev/null --wrap {HOLD}").strip()
    wait_for("job running", lambda: f"{job} R" in env.login("squeue -h -o '%i %t'"), timeout=60)
    pod = f"{NAME}-slurmd-sunk-op-node-2"

    def busy() -> bool:
        labels = env.core.read_namespaced_pod(pod, NS).metadata.labels or {}
        return labels.get("sunkbridge.io/busy") == "true"

    wait_for("busy node's pod covered by the PodDisruptionBudget", busy, timeout=60)
    wait_for("PodDisruptionBudget allows no eviction of the busy pod", lambda: env.kubectl(
        "get", "pdb", f"{NAME}-busy", "-o", "jsonpath={.status.expectedPods} {.status.disruptionsAllowed}",
    ).split() == ["1", "0"], timeout=60)
    env.kubectl("label", "node", "sunk-op-node-2", "sunkbridge.io/pool=elsewhere", "--overwrite")

    def draining() -> bool:
        return "sunk-op-node-2 drng" in env.login("sinfo -h -N -o '%N %t'")

    wait_for("node draining", draining, timeout=60)
    assert env.core.read_namespaced_pod(pod, NS).metadata.deletion_timestamp is None
    reason = env.login("scontrol show node sunk-op-node-2 -o")
    assert "Reason=sunk: node left pool real" in reason
    pools = env.cluster()["status"]["pools"]
    assert pools[0].get("draining") == ["sunk-op-node-2"] or f"{job}" in env.login("squeue -h -o %i")
    assert f"{job} R" in env.login("squeue -h -o '%i %t'"), "the job keeps running while its node drains"
    time.sleep(5)  # a pass or two of the operator with the job still running: the pod must stay
    assert env.core.read_namespaced_pod(pod, NS).metadata.deletion_timestamp is None
    release(env, "sunk-op-node-2", job)

    def pod_gone() -> bool:
        return pod not in {p.metadata.name for p in env.core.list_namespaced_pod(NS).items}

    wait_for("slurmd pod deleted after the job", pod_gone, timeout=120)
    # The job's end is recorded in slurmdbd. (slurmctld drops finished jobs of a node that left its
    # configuration when it restarts for the removal, so its own memory is not the record here.)
    wait_for(f"job {job} recorded as completed", lambda: env.login(
        f"sacct -n -P -X -j {job} -o State,ExitCode,NodeList", check=False).split() == [
        "COMPLETED|0:0|sunk-op-node-2"], timeout=120)
    wait_for("node gone from Slurm", lambda: "sunk-op-node-2" not in env.login("sinfo -h -N -o %N"), timeout=120)
    assert slurmctld_container_restarts(env) == 0, "slurmctld restarts in place, not by a container restart"


def test_node_joining_the_pool_becomes_an_idle_slurm_node(env: Env) -> None:
    env.kubectl("label", "node", "sunk-op-node-2", f"sunkbridge.io/pool={REAL_POOL}", "--overwrite")

    def both_idle() -> bool:
        return env.login("sinfo -h -N -o '%N %t'", check=False).split() == [
            "sunk-op-node-1", "idle", "sunk-op-node-2", "idle"]

    try:
        wait_for("sunk-op-node-2 back in Slurm, idle", both_idle, timeout=180)
    except AssertionError as exc:
        shown = env.login("sinfo -h -N -o '%N %t %E'; scontrol show node sunk-op-node-2", check=False)
        pods = env.kubectl("get", "pods", "-o", "wide", check=False)
        raise AssertionError(f"{exc}; Slurm shows: {shown}\n{pods}") from exc
    wait_for("SlurmCluster Ready with 2 nodes", lambda: env.condition("Ready").get("status") == "True"
             and env.cluster()["status"].get("nodes") == 2, timeout=60)


def test_podgroup_pool_runs_sbatch_jobs_as_pod_groups(env: Env) -> None:
    """The pool turns podgroup: slurmd pods become agents with the launcher's token, the operator runs the
    SlurmJob controller, and a 2-node sbatch job from the login pod runs as one pod per allocated node."""
    shutil.rmtree(SHARED, ignore_errors=True)
    SHARED.mkdir(mode=0o777)
    job_image = ensure_job_image()
    env.kubectl("patch", "slurmcluster", NAME, "--type=merge", "-p", json.dumps({"spec": {
        "sharedVolumes": [{"name": "shared", "mountPath": "/shared",
                           "source": {"hostPath": {"path": str(SHARED), "type": "Directory"}}}],
        "podgroup": {"apiServer": f"https://{SITE.dns_ip}:{env.lane.config.api_port}"},
        "pools": [{"name": "real", "default": True, "mode": "podgroup", "image": job_image,
                   "nodeSelector": {"sunkbridge.io/pool": REAL_POOL}, "partitionOptions": {"MaxTime": "1:00:00"}}]}}))

    def agents_ready() -> bool:
        pods = env.core.list_namespaced_pod(NS, label_selector="sunkbridge.io/component=slurmd").items
        return sorted(p.spec.node_name for p in pods if p.spec.service_account_name == f"{NAME}-launcher"
                      and p.metadata.deletion_timestamp is None and any(
                          c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])) == list(NODES)

    wait_for("slurmd pods replaced by podgroup agents", agents_ready, timeout=420)
    wait_for("BridgeReady and Ready", lambda: env.condition("BridgeReady").get("status") == "True"
             and env.condition("Ready").get("status") == "True", timeout=180)
    wait_for("login pod with the shared volume", lambda: env.login("test -d /shared && echo yes",
                                                                    check=False).strip() == "yes", timeout=120)
    # /var/run/sunk is the job folder the controller mounts into job pods only.
    script = ('[ -d /var/run/sunk ] && echo "batch in the pod of $(hostname)"; srun hostname | sort; '
              "while [ ! -e /shared/release-$SLURM_JOB_ID ]; do sleep 1; done")
    # --mem: without it Slurm gives a job the node's whole memory, and the slurmd agent pod already asks some.
    job = env.login("cd /shared && sbatch --parsable -N2 --mem=200M -o /shared/pg-%j.out "
                    f"--wrap {shlex.quote(script)}").strip()

    def pods_running() -> bool:
        pods = env.core.list_namespaced_pod(NS, label_selector=LABEL_JOB).items
        return sorted(p.spec.node_name for p in pods if p.status.phase == "Running") == list(NODES)

    try:
        wait_for("one running pod per allocated node", pods_running, timeout=180)
    except AssertionError as exc:
        shown = env.login(f"scontrol show job {job} -o", check=False)
        jobs_log = env.kubectl("logs", f"deploy/{NAME}-jobs", "--tail=30", check=False)
        raise AssertionError(f"{exc}; Slurm: {shown}\ncontroller: {jobs_log}\n"
                             f"{env.kubectl('get', 'pods,slurmjobs', '-o', 'wide', check=False)}") from exc
    (SHARED / f"release-{job}").touch()
    wait_job(env, job, timeout=180)
    out = (SHARED / f"pg-{job}.out").read_text()
    assert out.splitlines() == [f"batch in the pod of {NODES[0]}", *NODES], out
    assert env.login(f"sacct -n -P -X -j {job} -o State,ExitCode,NodeList", check=False).split() == [
        "COMPLETED|0:0|sunk-op-node-[1-2]"]
    wait_for("the job's pods are gone", lambda: not env.core.list_namespaced_pod(
        NS, label_selector=LABEL_JOB).items, timeout=120)


OPERATOR_PATCH = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: sunkbridge-operator, namespace: sunkbridge-system}
spec:
  template:
    spec:
      containers:
        - name: operator
          args: [operator, run, --all-namespaces, "--liveness=http://0.0.0.0:%(health)d/healthz"]
          env: [{name: KUBERNETES_SERVICE_PORT, value: "%(api)d"}]
          livenessProbe: {httpGet: {path: /healthz, port: %(health)d}}
"""


def test_operator_deployment_from_the_manifests_reconciles_with_its_own_rbac(env: Env, tmp_path: Path) -> None:
    """The last test: the kustomize sandbox overlay deploys the operator image, which takes over."""
    image = image_tag("controller")
    build_slurm_images("bookworm", ["controller"])  # up to date with this checkout's sources
    env.nodes.load_image(image)
    env.kubectl("delete", "slurmcluster", NAME, "--timeout=180s")
    env.stop_operator()
    # The overlay as it is, with this lane's apiserver port and a free liveness port on the shared host network.
    (tmp_path / "kustomization.yaml").write_text(json.dumps({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(ROOT / "manifests" / "overlays" / "sandbox", tmp_path)],
        "patches": [{"path": "patch.yaml"}]}))
    health = free_port()
    (tmp_path / "patch.yaml").write_text(OPERATOR_PATCH % {"health": health, "api": env.lane.config.api_port})
    started = time.monotonic()
    env.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(tmp_path))
    try:
        def sandbox_ready() -> bool:
            obj = env.kube.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "sandbox")
            conds = obj.get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

        try:
            wait_for("SlurmCluster sandbox Ready under the in-cluster operator", sandbox_ready, timeout=300)
        except AssertionError as exc:
            logs = env.kubectl("logs", "-n", "sunkbridge-system", "deploy/sunkbridge-operator", "--tail=30",
                               check=False)
            pods = env.kubectl("get", "pods", "-A", "-o", "wide", check=False)
            raise AssertionError(f"{exc}\n{pods}\n{logs}") from exc
        print(f"in-cluster operator: apply -k → sandbox Ready: {time.monotonic() - started:.1f}s")
        pods = env.core.list_namespaced_pod("sunkbridge-system").items
        assert len(pods) == 1
        pod = pods[0]
        assert pod.spec.service_account_name == "sunkbridge-operator" and pod.spec.containers[0].image == image
        assert pod.spec.security_context.run_as_user == 65532
        restarts = sum(cs.restart_count for cs in pod.status.container_statuses or [])
        assert restarts == 0, env.kubectl("describe", "pod", "-n", "sunkbridge-system", pod.metadata.name)
        nodes = env.kubectl("exec", "deploy/sandbox-login", "--", "sinfo", "-h", "-N", "-o", "%N %t").split()
        assert nodes == [NODES[0], "idle", NODES[1], "idle"]
        logs = env.kubectl("logs", "-n", "sunkbridge-system", pod.metadata.name)
        assert "Forbidden" not in logs and "reconcile failed" not in logs, logs[-2000:]
        # The identity it ran as is the least-privilege one of manifests/base/rbac, not more.
        who = "--as=system:serviceaccount:sunkbridge-system:sunkbridge-operator"
        assert env.kubectl("auth", "can-i", "create", "pods/exec", who).strip() == "yes"
        for verb, resource in (("delete", "nodes"), ("create", "clusterroles"), ("get", "secrets.unknown.io")):
            assert env.kubectl("auth", "can-i", verb, resource, who, check=False).strip() == "no", resource
    finally:
        env.kubectl("delete", "slurmcluster", "sandbox", "--timeout=180s", check=False)
        env.kubectl("delete", "deployment", "-n", "sunkbridge-system", "sunkbridge-operator", "--timeout=60s",
                    check=False)
