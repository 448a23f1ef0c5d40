"""The SlurmJob controller: one pod per allocated node, a headless Service, a Secret, and the status.

Level-triggered: SlurmJob and pod watch events only name a SlurmJob to reconcile; ``reconcile`` reads
the current objects and makes the world match. Every object it creates is owned by the SlurmJob, so
deleting the SlurmJob (the launcher does on exit or SIGTERM) removes everything. A garbage collector
asks Slurm about exactly the job ids of the SlurmJobs it holds and deletes those Slurm no longer runs.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from sunkbridge.jobs.builders import (
    LABEL_JOB,
    BridgeSettings,
    JobView,
    build_pod,
    build_runtime_configmap,
    build_secret,
    build_service,
    job_status,
    pod_state,
)
from sunkbridge.jobs.launcher import GROUP, PLURAL, TERMINAL, VERSION

log = logging.getLogger("sunkbridge.jobs")
ACTIVE_STATES = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "SIGNALING",
                           "STAGE_OUT", "RESIZING"})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def slurm_running_jobs(ids: Sequence[int], env: Mapping[str, str] | None = None) -> set[int]:
    """Which of `ids` Slurm still runs: one ``squeue -j`` call for exactly those ids."""
    if not ids:
        return set()
    proc = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(str(i) for i in sorted(set(ids))),
                           "-o", "%A %T"], capture_output=True, text=True, env=dict(env) if env else None,
                          timeout=30, check=False)
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:
            return set()
        raise RuntimeError(f"squeue failed: {proc.stderr.strip()}")
    running: set[int] = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1] in ACTIVE_STATES:
            running.add(int(parts[0]))
    return running


@dataclass
class Controller:
    """Reconciles the SlurmJobs of one namespace."""

    api: client.ApiClient
    settings: BridgeSettings = field(default_factory=BridgeSettings)
    slurm_running: Callable[[Sequence[int]], set[int]] | None = None
    gc_interval: float = 10.0
    gc_min_age: float = 20.0
    workers: int = 8
    _queue: queue.Queue[str] = field(default_factory=queue.Queue)
    _pending: set[str] = field(default_factory=set)
    _busy: set[str] = field(default_factory=set)
    _again: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _runtime_ready: bool = False

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    @property
    def ns(self) -> str:
        return self.settings.namespace

    # -- loop ------------------------------------------------------------------------------------------

    def start(self) -> Controller:
        """Start the watches, the workers and the garbage collector in daemon threads."""
        targets: list[Callable[[], None]] = [self._watch_jobs, self._watch_pods]
        targets += [self._worker] * self.workers
        if self.slurm_running is not None:
            targets.append(self._gc_loop)
        for target in targets:
            t = threading.Thread(target=target, daemon=True, name=f"sunk-jobs-{target.__name__}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for _ in range(self.workers):
            self._queue.put("")

    def enqueue(self, name: str) -> None:
        with self._lock:
            if name in self._busy:
                self._again.add(name)
                return
            if name in self._pending:
                return
            self._pending.add(name)
        self._queue.put(name)

    def _worker(self) -> None:
        while not self._stop.is_set():
            name = self._queue.get()
            if not name:
                continue
            with self._lock:
                self._pending.discard(name)
                self._busy.add(name)
            try:
                self.reconcile(name)
            except Exception:
                log.exception("reconcile %s failed", name)
                time.sleep(0.5)
                with self._lock:
                    self._again.add(name)
            finally:
                with self._lock:
                    self._busy.discard(name)
                    again = name in self._again
                    self._again.discard(name)
                if again:
                    self.enqueue(name)

    def _watch_loop(self, lister: Callable[..., Any], key: Callable[[dict[str, Any]], str | None],
                    **kwargs: Any) -> None:
        while not self._stop.is_set():
            try:
                listing = lister(**kwargs)
                items = listing["items"] if isinstance(listing, dict) else self.api.sanitize_for_serialization(
                    listing)["items"]
                rv = listing["metadata"]["resourceVersion"] if isinstance(listing, dict) else \
                    listing.metadata.resource_version
                for item in items:
                    k = key(item)
                    if k:
                        self.enqueue(k)
                w = watch.Watch()
                for event in w.stream(lister, resource_version=rv, timeout_seconds=60, **kwargs):
                    if self._stop.is_set():
                        w.stop()
                        return
                    obj = event["object"]
                    if not isinstance(obj, dict):
                        obj = self.api.sanitize_for_serialization(obj)
                    k = key(obj)
                    if k:
                        self.enqueue(k)
            except Exception as exc:
                if not self._stop.is_set():
                    log.info("watch restarts: %s", exc)
                    time.sleep(1)

    def _watch_jobs(self) -> None:
        def lister(**kw: Any) -> Any:
            return self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, **kw)
        lister.__name__ = "list_slurmjobs"
        self._watch_loop(lister, lambda o: str(o["metadata"]["name"]))

    def _watch_pods(self) -> None:
        def lister(**kw: Any) -> Any:
            return self.core.list_namespaced_pod(self.ns, label_selector=LABEL_JOB, **kw)
        lister.__name__ = "list_pods"
        self._watch_loop(lister, lambda o: (o["metadata"].get("labels") or {}).get(LABEL_JOB))

    def _gc_loop(self) -> None:
        while not self._stop.wait(self.gc_interval):
            try:
                self.collect_garbage()
            except Exception:
                log.exception("garbage collection failed")

    # -- reconcile -------------------------------------------------------------------------------------

    def _create(self, fn: Callable[..., Any], body: dict[str, Any]) -> None:
        try:
            fn(self.ns, body)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _ensure_runtime(self) -> None:
        if not self._runtime_ready:
            self._create(self.core.create_namespaced_config_map, build_runtime_configmap(self.settings))
            self._runtime_ready = True

    def reconcile(self, name: str) -> None:
        """Make the pods, Service and Secret of SlurmJob `name` exist and its status match its pods."""
        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        if obj["metadata"].get("deletionTimestamp"):
            return
        job = JobView.of(obj)
        previous = obj.get("status") or {}
        pods = self.core.list_namespaced_pod(self.ns, label_selector=f"{LABEL_JOB}={name}").items
        raw = [self.api.sanitize_for_serialization(p) for p in pods]
        if previous.get("phase") in TERMINAL:
            self._delete_unfinished(raw)
            return
        existing = {p["metadata"]["name"] for p in raw}
        if len(existing) < len(job.nodes):
            self._ensure_runtime()
            self._create(self.core.create_namespaced_secret, build_secret(job, self.settings))
            self._create(self.core.create_namespaced_service, build_service(job, self.settings))
            for rank in range(len(job.nodes)):
                if job.pod_name(rank) not in existing:
                    self._create(self.core.create_namespaced_pod, build_pod(job, rank, self.settings))
        status = job_status([pod_state(p) for p in raw], len(job.nodes), previous, now=_now())
        if status != previous:
            self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, self.ns, PLURAL, name,
                                                              {"status": status})
        if status.get("phase") in TERMINAL:
            self._delete_unfinished(raw)

    def _delete_unfinished(self, pods: Iterable[dict[str, Any]]) -> None:
        """Delete the pods that still run or wait (peers, pods that cannot start) of a finished job."""
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase")
            if phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp"):
                with contextlib.suppress(ApiException):
                    self.core.delete_namespaced_pod(pod["metadata"]["name"], self.ns, grace_period_seconds=0)

    # -- garbage collection ----------------------------------------------------------------------------

    def collect_garbage(self) -> list[str]:
        """Delete SlurmJobs (and so their pods) whose Slurm job no longer runs; return their names."""
        assert self.slurm_running is not None
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL)["items"]
        now = datetime.now(UTC)
        candidates: dict[str, int] = {}
        for item in items:
            created = datetime.strptime(item["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ") \
                .replace(tzinfo=UTC)
            if (now - created).total_seconds() >= self.gc_min_age:
                candidates[item["metadata"]["name"]] = int(item["spec"]["jobId"])
        if not candidates:
            return []
        running = self.slurm_running(sorted(set(candidates.values())))
        gone = [name for name, jid in candidates.items() if jid not in running]
        for name in gone:
            log.info("slurm no longer runs the job of %s: deleting it", name)
            with contextlib.suppress(ApiException):
                self.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, self.ns, PLURAL, name,
                    body=client.V1DeleteOptions(propagation_policy="Background"))
        return gone
