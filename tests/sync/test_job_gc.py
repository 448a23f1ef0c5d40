"""The SlurmJob controller collects SlurmJobs whose Slurm job ended, asking a real slurmctld, from its cache."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from sunkbridge.bench.submit import CRD, ensure_namespace, slurmjob_for
from sunkbridge.jobs.builders import BridgeSettings
from sunkbridge.jobs.controller import Controller, slurm_running_jobs
from sunkbridge.jobs.launcher import GROUP, PLURAL, VERSION
from sunkbridge.lanes.k8s import KubeLane
from sunkbridge.lanes.slurm import SlurmLane

NS = "sunk-jobs-gc"


@pytest.fixture()
def controller(kube: KubeLane, kube_api: client.ApiClient, slurm_lane: SlurmLane) -> Iterator[Controller]:
    subprocess.run([str(kube.kubectl()), "--kubeconfig", str(kube.kubeconfig), "apply", "-f", str(CRD)],
                   check=True, capture_output=True)
    ensure_namespace(client.CoreV1Api(kube_api), NS)
    time.sleep(1)  # the CRD is established
    ctl = Controller(kube_api, BridgeSettings(namespace=NS),
                     slurm_running=lambda ids: slurm_running_jobs(ids, slurm_lane.client_env()),
                     gc_interval=1, gc_min_age=1).start()
    yield ctl
    ctl.stop()


def _until(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def test_slurmjobs_of_ended_slurm_jobs_are_collected(controller: Controller, kube_api: client.ApiClient,
                                                     slurm_lane: SlurmLane) -> None:
    custom = client.CustomObjectsApi(kube_api)
    running = int(slurm_lane.run("sbatch", "--parsable", "-N1", "-o", "/dev/null", "--wrap", "sleep 300")
                  .stdout.split(";")[0])
    ended = int(slurm_lane.run("sbatch", "--parsable", "-N1", "-o", "/dev/null", "--wrap", "true")
                .stdout.split(";")[0])
    try:
        _until(f"job {running} to run", lambda: "RUNNING" in slurm_lane.run(
            "squeue", "-h", "-j", str(running), "-o", "%T").stdout)
        _until(f"job {ended} to end", lambda: slurm_lane.run("squeue", "-h", "-t", "all", "-j", str(ended), "-o",
                                                             "%T").stdout.strip() not in ("PENDING", "RUNNING",
                                                                                          "COMPLETING", "CONFIGURING"))
        names = {}
        for job_id in (running, ended):
            body = slurmjob_for(job_id, ["static-001"], NS)
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
            names[job_id] = body["metadata"]["name"]

        def present() -> set[str]:
            return {o["metadata"]["name"] for o in custom.list_namespaced_custom_object(GROUP, VERSION, NS,
                                                                                        PLURAL)["items"]}

        _until("the ended job's SlurmJob to be collected", lambda: names[ended] not in present())
        time.sleep(3)  # several more collection rounds
        assert names[running] in present()
        slurm_lane.run("scancel", str(running))
        _until("the cancelled job's SlurmJob to be collected", lambda: names[running] not in present())
    finally:
        slurm_lane.run("scancel", str(running), check=False)
