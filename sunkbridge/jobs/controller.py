"""The SlurmJob controller: one pod per allocated node, a Secret, a headless Service (jobs of several
nodes), and the status.

Level-triggered: one informer per kind (SlurmJobs, the bridge's pods) keeps a local cache, and each
event only names a SlurmJob to reconcile; ``reconcile`` reads the cached objects and makes the world
match. A job's missing objects are created in parallel, and objects created but not yet seen in the
cache are remembered for a while (expectations) so a burst of events never creates twice. Status is
patched only when it changed: at once when the phase becomes Running or final, otherwise at most once
per ``status_interval`` per job. Every object created is owned by the SlurmJob, so deleting the SlurmJob
(the launcher does on exit or SIGTERM) removes everything. A garbage collector asks Slurm about exactly
the job ids of the cached SlurmJobs and deletes those Slurm no longer runs.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import queue
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
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
    node_unfit,
    pod_state,
)
from sunkbridge.jobs.informer import MERGE_PATCH, Informer, JsonApi
from sunkbridge.jobs.launcher import GROUP, PLURAL, TERMINAL, VERSION

log = logging.getLogger("sunkbridge.jobs")
ACTIVE_STATES = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "SIGNALING",
                           "STAGE_OUT", "RESIZING"})
URGENT_PHASES = frozenset({"Running", *TERMINAL})


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
class _JobState:
    """What the controller remembers about one SlurmJob between reconciles (never the source of truth)."""

    uid: str
    first_seen: float
    support_made: bool = False
    expected: dict[str, float] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    written: dict[str, Any] | None = None
    last_patch: float = 0.0


@dataclass
class Controller:
    """Reconciles the SlurmJobs of one namespace."""

    api: client.ApiClient
    settings: BridgeSettings = field(default_factory=BridgeSettings)
    slurm_running: Callable[[Sequence[int]], set[int]] | None = None
    gc_interval: float = 10.0
    gc_min_age: float = 20.0
    workers: int = 8
    status_interval: float = 10.0
    create_parallelism: int = 16
    expectation_ttl: float = 30.0
    calls: Counter[str] = field(default_factory=Counter)  # API writes by kind, for tests and benchmarks
    _queue: queue.Queue[str] = field(default_factory=queue.Queue)
    _pending: set[str] = field(default_factory=set)
    _busy: set[str] = field(default_factory=set)
    _again: set[str] = field(default_factory=set)
    _later: list[tuple[float, str]] = field(default_factory=list)
    _due: dict[str, float] = field(default_factory=dict)
    _states: dict[str, _JobState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _runtime_lock: threading.Lock = field(default_factory=threading.Lock)
    _runtime_ready: bool = False

    def __post_init__(self) -> None:
        self.rest = JsonApi(self.api)
        self.jobs = Informer(self.rest, f"/apis/{GROUP}/{VERSION}/namespaces/{self.ns}/{PLURAL}",
                             on_change=lambda o: self.enqueue(str(o["metadata"]["name"])))
        self.pods = Informer(self.rest, f"/api/v1/namespaces/{self.ns}/pods", label_selector=LABEL_JOB,
                             index=_job_of, on_change=self._pod_changed)
        self.nodes = Informer(self.rest, "/api/v1/nodes", on_change=lambda _node: None)
        self._informers = (self.jobs, self.pods, self.nodes)
        self._pool = ThreadPoolExecutor(self.create_parallelism, thread_name_prefix="sunk-jobs-create")

    @property
    def ns(self) -> str:
        return self.settings.namespace

    # -- loop ------------------------------------------------------------------------------------------

    def start(self, sync_timeout: float = 60.0) -> Controller:
        """Start the informers, wait for their first listing, then the workers and the garbage collector."""
        for informer in self._informers:
            informer.start()
        deadline = time.monotonic() + sync_timeout
        for informer in self._informers:
            if not informer.synced.wait(max(0.0, deadline - time.monotonic())):
                self.stop()
                raise TimeoutError(f"no listing of {informer.path} within {sync_timeout}s (last error: "
                                   f"{informer.last_error or 'none'}); check that the API server is up and that "
                                   f"the controller's identity may list and watch it")
        targets: list[Callable[[], None]] = [self._worker] * self.workers + [self._delay_loop]
        if self.slurm_running is not None:
            targets.append(self._gc_loop)
        for target in targets:
            t = threading.Thread(target=target, daemon=True, name=f"sunk-jobs-{target.__name__}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for informer in self._informers:
            informer.stop()
        with self._wake:
            self._wake.notify_all()
        for _ in range(self.workers):
            self._queue.put("")
        self._pool.shutdown(wait=False, cancel_futures=True)

    def enqueue(self, name: str) -> None:
        with self._lock:
            if name in self._busy:
                self._again.add(name)
                return
            if name in self._pending:
                return
            self._pending.add(name)
        self._queue.put(name)

    def enqueue_after(self, name: str, delay: float) -> None:
        """Reconcile `name` again in `delay` seconds (once, however often this is asked meanwhile)."""
        due = time.monotonic() + delay
        with self._wake:
            if self._due.get(name, float("inf")) <= due:
                return
            self._due[name] = due
            heapq.heappush(self._later, (due, name))
            self._wake.notify()

    def _delay_loop(self) -> None:
        with self._wake:
            while not self._stop.is_set():
                now = time.monotonic()
                while self._later and self._later[0][0] <= now:
                    due, name = heapq.heappop(self._later)
                    if self._due.get(name) == due:
                        del self._due[name]
                        self.enqueue(name)
                self._wake.wait(self._later[0][0] - now if self._later else None)

    def _pod_changed(self, pod: dict[str, Any]) -> None:
        job = _job_of(pod)
        if job:
            self.enqueue(job)

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

    def _gc_loop(self) -> None:
        while not self._stop.wait(self.gc_interval):
            try:
                self.collect_garbage()
            except Exception:
                log.exception("garbage collection failed")

    # -- API calls -------------------------------------------------------------------------------------

    def _create(self, path: str, body: dict[str, Any]) -> None:
        """Create `body` under the namespace's collection `path`; an object that exists already is fine."""
        self._count(f"create {path}")
        try:
            self.rest.call("POST", f"/api/v1/namespaces/{self.ns}/{path}", body)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _create_all(self, bodies: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Create the objects in parallel; the first failure other than 'exists' is raised."""
        if len(bodies) == 1:
            self._create(*bodies[0])
            return
        for future in [self._pool.submit(self._create, path, body) for path, body in bodies]:
            future.result()

    def _ensure_runtime(self) -> None:
        with self._runtime_lock:
            if not self._runtime_ready:
                self._create("configmaps", build_runtime_configmap(self.settings))
                self._runtime_ready = True

    def _patch_status(self, name: str, status: dict[str, Any]) -> None:
        self._count("patch status")
        self.rest.call("PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{self.ns}/{PLURAL}/{name}/status",
                       {"status": status}, content_type=MERGE_PATCH)

    def _count(self, call: str) -> None:
        with self._lock:
            self.calls[call] += 1

    # -- reconcile -------------------------------------------------------------------------------------

    def _state(self, name: str, uid: str) -> _JobState:
        with self._lock:
            state = self._states.get(name)
            if state is None or state.uid != uid:
                state = self._states[name] = _JobState(uid=uid, first_seen=time.monotonic())
            return state

    def reconcile(self, name: str) -> None:
        """Make the pods, Service and Secret of SlurmJob `name` exist and its status match its pods."""
        obj = self.jobs.get(name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            with self._lock:
                self._states.pop(name, None)
            return
        job = JobView.of(obj)
        state = self._state(name, job.uid)
        raw = [p for p in self.pods.indexed(name) if _owner_uid(p) in (job.uid, None)]
        previous = state.written if state.written is not None else (obj.get("status") or {})
        if previous.get("phase") in TERMINAL:
            self._delete_unfinished(state, raw)
            return
        now = time.monotonic()
        existing = {p["metadata"]["name"] for p in raw}
        state.expected = {n: t for n, t in state.expected.items()
                          if n not in existing and now - t < self.expectation_ttl}
        missing = [r for r in range(len(job.nodes))
                   if job.pod_name(r) not in existing and job.pod_name(r) not in state.expected]
        pods = [build_pod(job, r, self.settings) for r in missing]
        if pods and not state.support_made and (unfit := self._unfit(pods)):
            self._fail_before_start(name, state, unfit)
            return
        if missing:
            bodies: list[tuple[str, dict[str, Any]]] = []
            if not state.support_made:
                self._ensure_runtime()
                bodies.append(("secrets", build_secret(job, self.settings)))
                if len(job.nodes) > 1:  # a lone pod finds its own name in /etc/hosts: no peers to resolve
                    bodies.append(("services", build_service(job, self.settings)))
            bodies += [("pods", pod) for pod in pods]
            self._create_all(bodies)
            state.support_made = True
            state.expected.update((job.pod_name(r), now) for r in missing)
        status = job_status([pod_state(p) for p in raw], len(job.nodes), previous, now=_now())
        if status != previous:
            urgent = status.get("phase") != previous.get("phase") and status.get("phase") in URGENT_PHASES
            due = max(state.last_patch, state.first_seen) + self.status_interval
            if urgent or now >= due:
                try:
                    self._patch_status(name, status)
                except ApiException as exc:
                    if exc.status == 404:  # deleted meanwhile: its watch event comes next
                        return
                    raise
                state.written, state.last_patch = status, time.monotonic()
            else:
                self.enqueue_after(name, due - now)
        if status.get("phase") in TERMINAL:
            self._delete_unfinished(state, raw)

    def _unfit(self, pods: Sequence[dict[str, Any]]) -> str | None:
        """The first reason a node cannot run its pod of `pods` that the kubelet would not report itself."""
        for pod in pods:
            if reason := node_unfit(pod, self.nodes.get(pod["spec"]["nodeName"])):
                return reason
        return None

    def _fail_before_start(self, name: str, state: _JobState, reason: str) -> None:
        """Fail a job whose pods cannot run as asked, before any object of it exists."""
        log.info("%s cannot run: %s", name, reason)
        status = {"phase": "Failed", "exitCode": 1, "signal": 0, "exitStatus": "1:0", "completionTime": _now(),
                  "reason": "Unfit", "message": reason, "pods": []}
        with contextlib.suppress(ApiException):
            self._patch_status(name, status)
        state.written, state.last_patch = status, time.monotonic()

    def _delete_unfinished(self, state: _JobState, pods: Iterable[dict[str, Any]]) -> None:
        """Delete the pods that still run or wait (peers, pods that cannot start) of a finished job.

        A pod whose main container has ended stays, though the kubelet may still call it Running while it
        tears it down: the launcher is reading its log, and deletes the SlurmJob (and so the pod) after.
        """
        for pod in pods:
            name = pod["metadata"]["name"]
            phase = (pod.get("status") or {}).get("phase")
            if (phase in ("Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp")
                    or name in state.deleted or pod_state(pod).exit_code is not None):
                continue
            self._count("delete pod")
            with contextlib.suppress(ApiException):
                self.rest.call("DELETE", f"/api/v1/namespaces/{self.ns}/pods/{name}",
                               {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
            state.deleted.add(name)

    # -- garbage collection ----------------------------------------------------------------------------

    def collect_garbage(self) -> list[str]:
        """Delete SlurmJobs (and so their pods) whose Slurm job no longer runs; return their names."""
        assert self.slurm_running is not None
        now = datetime.now(UTC)
        candidates: dict[str, int] = {}
        for item in self.jobs.items():
            created = datetime.strptime(item["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ") \
                .replace(tzinfo=UTC)
            if (now - created).total_seconds() >= self.gc_min_age and not item["metadata"].get("deletionTimestamp"):
                candidates[item["metadata"]["name"]] = int(item["spec"]["jobId"])
        if not candidates:
            return []
        running = self.slurm_running(sorted(set(candidates.values())))
        gone = [name for name, jid in candidates.items() if jid not in running]
        for name in gone:
            log.info("slurm no longer runs the job of %s: deleting it", name)
            with contextlib.suppress(ApiException):
                self.rest.call("DELETE", f"/apis/{GROUP}/{VERSION}/namespaces/{self.ns}/{PLURAL}/{name}",
                               {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
        return gone


def _job_of(pod: Mapping[str, Any]) -> str | None:
    return (pod["metadata"].get("labels") or {}).get(LABEL_JOB)


def _owner_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the SlurmJob that owns `obj` (None when it names none)."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "SlurmJob":
            return str(ref.get("uid"))
    return None
