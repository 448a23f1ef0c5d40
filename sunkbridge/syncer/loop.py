"""The syncer's loop: Kubernetes Nodes in, Slurm nodes and partitions out, and back.

Three threads share two caches (Kubernetes nodes by name, Slurm nodes by name) and one work set:

- the Kubernetes watcher lists Nodes, then watches from the list's resourceVersion (bookmarks on); a
  `410 Gone` or a broken connection re-lists. Every event puts the node's name in the work set.
- the Slurm poller reads node state every `slurm_poll_interval` seconds. Slurm 22.05 has no change stream
  for nodes (strigger runs programs on the controller host, not a feed), so the syncer polls *node* state
  only, never jobs; over slurmrestd an unchanged cluster answers `304` to `update_time`. Changed nodes go
  into the work set; partitions are compared on every poll, so a `scontrol reconfigure` that drops them
  is repaired.
- the worker takes the whole work set at once and reconciles it with the pure decisions of
  `sunkbridge.syncer.decide`. Every `resync_interval` seconds (and after a re-list or when slurmctld comes
  back) every node is reconciled again: the loop is level-triggered, so a restart of anything converges.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sunkbridge.cluster import NodePool
from sunkbridge.slurm.client import NewNode, SlurmClient, SlurmError, SlurmNode, SlurmPartition
from sunkbridge.syncer.decide import (
    CONDITION_TYPE,
    DEFAULT_BAD_CONDITIONS,
    REASON_ANNOTATION,
    SLURM_NAME_ANNOTATION,
    STATE_ANNOTATION,
    TAINT_KEY,
    DesiredNode,
    K8sNode,
    Marking,
    PoolChoice,
    choose_pool,
    desired_node,
    feature_value,
    k8s_cause,
    k8s_marking,
    marking_matches,
    node_pool_of,
    render_topology,
    slurm_action,
    slurm_node_name,
    valid_k8s_node_name,
)

log = logging.getLogger("sunkbridge.syncer")
COMPONENT = "sunkbridge-syncer"


@dataclass
class SyncerConfig:
    """What the syncer keeps in step, and how often it looks at Slurm."""

    pools: Sequence[NodePool]
    bad_conditions: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_BAD_CONDITIONS))
    slurm_poll_interval: float = 1.0
    resync_interval: float = 300.0
    namespace: str = "default"
    status_configmap: str = "sunkbridge-syncer"
    topology_path: Path | None = None
    watch_timeout: int = 240
    #: NodeAddr for the Slurm nodes the syncer creates; None lets slurmctld resolve node names. Pools of
    #: simulated nodes (no slurmd, names no resolver knows) set a local address so slurmctld never waits on DNS.
    node_addr: str | None = None


@dataclass
class SyncStatus:
    """What the syncer last saw and did (also written to the status ConfigMap)."""

    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    synced_at: float = 0.0
    k8s_nodes: int = 0
    slurm_nodes: int = 0
    slurm_reachable: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"pools": self.pools, "warnings": self.warnings, "synced_at": self.synced_at,
                "k8s_nodes": self.k8s_nodes, "slurm_nodes": self.slurm_nodes,
                "slurm_reachable": self.slurm_reachable}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Syncer:
    """Keeps Kubernetes GPU node pools and Slurm partitions in step, both ways."""

    def __init__(self, config: SyncerConfig, kube: client.ApiClient, slurm: SlurmClient) -> None:
        self.config = config
        self.core = client.CoreV1Api(kube)
        self.slurm = slurm
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._dirty: set[str] = set()
        self._all_dirty = True
        self._k8s: dict[str, K8sNode] = {}
        self._slurm_nodes: dict[str, SlurmNode] = {}
        self._partitions: dict[str, SlurmPartition] = {}
        self._k8s_listed = False
        self._slurm_read = False
        self._slurm_gen = 0  # bumped when the worker stores what it read after a change
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._events_sent: set[tuple[str, str, str]] = set()
        self._status = SyncStatus()
        self._status_written = ""
        self._topology_written = ""
        self._converged = threading.Event()
        # (node name, resourceVersion) -> its pool and desired shape; pools are fixed for a syncer's life
        self._desired_cache: dict[tuple[str, str], tuple[PoolChoice, DesiredNode | None]] = {}
        self.applied = 0  # state changes sent to Slurm (for tests and the benchmark)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> Syncer:
        """Start the watcher, the poller and the worker threads."""
        for target, name in ((self._watch_k8s, "k8s-watch"), (self._poll_slurm, "slurm-poll"),
                             (self._work, "worker")):
            thread = threading.Thread(target=target, name=f"syncer-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop the threads (the watch ends at its next event or timeout)."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=2)

    def run_forever(self) -> None:
        """Start and block until interrupted."""
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()

    def wait_converged(self, timeout: float) -> bool:
        """Wait until a reconcile pass finished with nothing left to do."""
        return self._converged.wait(timeout)

    def status(self) -> SyncStatus:
        with self._lock:
            return self._status

    def _enqueue(self, names: Iterator[str] | Sequence[str] | set[str], everything: bool = False) -> None:
        with self._wake:
            self._dirty.update(names)
            self._all_dirty = self._all_dirty or everything
            self._converged.clear()
            self._wake.notify()

    # -- Kubernetes watcher ---------------------------------------------------------------------------------

    def _watch_k8s(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                version = self._list_nodes()
                backoff = 0.5
                self._watch_nodes(version)
            except Exception as exc:  # apiserver restarts, broken connections: re-list after a pause
                if self._stop.is_set():
                    return
                log.warning("kubernetes watch interrupted (%s); re-listing in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _list_nodes(self) -> str:
        resp = self.core.list_node(_preload_content=False, _request_timeout=120)
        data = json.loads(resp.data)
        nodes = {n.name: n for n in map(K8sNode.from_json, data.get("items") or [])}
        with self._lock:
            gone = set(self._k8s) - set(nodes)
            self._k8s = nodes
            self._k8s_listed = True
        self._enqueue(set(nodes) | gone, everything=True)
        return str(data["metadata"]["resourceVersion"])

    def _watch_nodes(self, version: str) -> None:
        resp = self.core.list_node(watch=True, resource_version=version, allow_watch_bookmarks=True,
                                   timeout_seconds=self.config.watch_timeout, _preload_content=False,
                                   _request_timeout=(10, self.config.watch_timeout + 30))
        try:
            buffer = b""
            for chunk in resp.stream(65536, decode_content=True):
                if self._stop.is_set():
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        version = self._on_event(json.loads(line), version)
        finally:
            resp.release_conn()
        # The server ended the watch (timeout): continue from the last version without a re-list.
        if not self._stop.is_set():
            self._watch_nodes(version)

    def _on_event(self, event: Mapping[str, Any], version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind == "BOOKMARK":
            return new_version
        node = K8sNode.from_json(obj)
        with self._lock:
            if kind == "DELETED":
                self._k8s.pop(node.name, None)
            else:
                self._k8s[node.name] = node
        self._enqueue([node.name])
        return new_version

    # -- Slurm poller ---------------------------------------------------------------------------------------

    def _poll_slurm(self) -> None:
        since = 0.0
        reachable = True
        while not self._stop.is_set():
            started = time.time()
            with self._lock:
                gen = self._slurm_gen
            try:
                nodes = self.slurm.nodes_if_changed(since) if self._slurm_read else self.slurm.nodes()
                parts = self.slurm.partitions()
                if not reachable:
                    log.info("slurmctld answers again; resyncing every node")
                reachable = True
                self._absorb_slurm(nodes, parts, full=not self._slurm_read, gen=gen)
                since = started - 1
            except SlurmError as exc:
                if reachable:
                    log.warning("slurm unreachable (%s); retrying every %.1fs", exc, self.config.slurm_poll_interval)
                reachable = False
                self._slurm_read = False
                with self._lock:
                    self._status.slurm_reachable = False
            self._stop.wait(self.config.slurm_poll_interval)

    def _absorb_slurm(self, nodes: dict[str, SlurmNode] | None, parts: dict[str, SlurmPartition],
                      full: bool, gen: int) -> None:
        changed: set[str] = set()
        with self._lock:
            if gen != self._slurm_gen:
                return  # the worker changed Slurm (and re-read it) while this read was under way
            if nodes is not None:
                old = self._slurm_nodes
                changed = {n for n in set(old) | set(nodes) if old.get(n) != nodes.get(n)}
                self._slurm_nodes = nodes
            parts_changed = parts != self._partitions
            self._partitions = parts
            self._slurm_read = True
            self._status.slurm_reachable = True
            by_slurm = {slurm_node_name(k): k for k in self._k8s}
        keys = {by_slurm.get(n, n) for n in changed}
        if full or parts_changed or keys:
            self._enqueue(keys, everything=full or parts_changed)

    # -- worker ---------------------------------------------------------------------------------------------

    def _work(self) -> None:
        last_full = time.monotonic()
        while not self._stop.is_set():
            with self._wake:
                while not self._stop.is_set() and not (self._dirty or self._all_dirty):
                    self._wake.wait(timeout=1.0)
                    if time.monotonic() - last_full > self.config.resync_interval:
                        self._all_dirty = True
                if self._stop.is_set():
                    return
                ready = self._k8s_listed and self._slurm_read
                if not ready:
                    self._wake.wait(timeout=0.2)
                    continue
                names, everything = set(self._dirty), self._all_dirty
                self._dirty.clear()
                self._all_dirty = False
            if everything:
                last_full = time.monotonic()
            try:
                more = self.reconcile(names, everything)
            except SlurmError as exc:
                log.warning("slurm command failed (%s); retrying", exc)
                self._enqueue(names, everything)
                self._stop.wait(self.config.slurm_poll_interval)
                continue
            except Exception:
                log.exception("reconcile failed; retrying")
                self._enqueue(names, everything)
                self._stop.wait(1.0)
                continue
            if more:
                self._enqueue(more)
            else:
                with self._lock:
                    if not self._dirty and not self._all_dirty:
                        self._converged.set()

    # -- one reconcile pass ---------------------------------------------------------------------------------

    def reconcile(self, names: set[str], everything: bool) -> set[str]:
        """Bring the named nodes (all when `everything`) and the pools' partitions in line.

        Returns names to look at again (nodes just created or waiting for their jobs to leave).
        """
        with self._lock:
            k8s = dict(self._k8s)
            slurm = dict(self._slurm_nodes)
            parts = dict(self._partitions)
        pools = list(self.config.pools)
        warnings: list[str] = []
        # Every node's pool and Slurm name; collisions and conflicts are reported, not guessed.
        desired: dict[str, DesiredNode] = {}
        owner_of: dict[str, str] = {}
        fresh_cache: dict[tuple[str, str], tuple[PoolChoice, DesiredNode | None]] = {}
        for name in sorted(k8s):
            k_node = k8s[name]
            key = (name, k_node.resource_version)
            cached = self._desired_cache.get(key)
            if cached is None:
                choice = choose_pool(k_node, pools)
                cached = (choice, desired_node(k_node, choice.pool) if choice.pool else None)
            fresh_cache[key] = cached
            choice, shape = cached
            if choice.problem:
                self._event(k_node, "PoolConflict", choice.problem)
                warnings.append(choice.problem)
            if shape is None:
                continue
            if shape.slurm_name in owner_of:
                problem = (f"node {name} would be Slurm node {shape.slurm_name}, already used by "
                           f"{owner_of[shape.slurm_name]}; rename one of them")
                self._event(k_node, "SlurmNameCollision", problem)
                warnings.append(problem)
                continue
            owner_of[shape.slurm_name] = name
            desired[name] = shape
            if shape.slurm_name != name:
                self._event(k_node, "SlurmNameSanitised",
                            f"Kubernetes node {name} is Slurm node {shape.slurm_name}", warning=False)
            for problem in shape.problems:
                self._event(k_node, "BadNodeInput", f"node {name}: {problem}")
                warnings.append(f"node {name}: {problem}")
        self._desired_cache = fresh_cache  # shapes depend only on the node's content and its pool
        for pool in pools:
            if not any(d.pool == pool.name for d in desired.values()):
                warnings.append(f"pool {pool.name}: selector {pool.selector} matches no Kubernetes node")
        k8s_of = {d.slurm_name: k for k, d in desired.items()}
        for k_name in k8s:
            k8s_of.setdefault(slurm_node_name(k_name), k_name)

        todo = set(k8s) | {k8s_of.get(s, s) for s in slurm} if everything else set(names)
        pool_features = {feature_value(p.name) for p in pools}
        creates: list[NewNode] = []
        again: set[str] = set()
        removable: list[str] = []
        actions: dict[tuple[str, str], list[str]] = {}
        for name in sorted(todo):
            node: K8sNode | None = k8s.get(name)
            want: DesiredNode | None = desired.get(name)
            sname = want.slurm_name if want else slurm_node_name(name)
            snode = slurm.get(sname)
            if want is not None:
                if snode is None:
                    creates.append(replace(want.new_node(), addr=self.config.node_addr))
                    again.add(name)
                    continue
                if not snode.dynamic and node_pool_of(snode) is None:
                    # A node slurm.conf declares: state only, its shape belongs to the config.
                    pass
                else:
                    if tuple(snode.features) != want.features:
                        self.slurm.set_features(sname, want.features)
                    if snode.gres != want.gres and (want.gres or snode.gres):
                        self.slurm.set_gres(sname, want.gres)
                cause = k8s_cause(node, True, self.config.bad_conditions)
            elif snode is not None and node_pool_of(snode) in pool_features:
                cause = k8s_cause(node, False, self.config.bad_conditions, left_pool=node_pool_of(snode))
                if (snode.drained or snode.down) and not snode.busy:
                    removable.append(sname)
                    continue
            else:
                cause = None
                if snode is None or node is None:
                    if node is not None:
                        self._mark(node, None)
                    continue
            if snode is not None:
                act = slurm_action(snode, cause)
                if act.action != "none":
                    actions.setdefault((act.action, act.reason), []).append(sname)
                    if want is None:
                        again.add(name)  # leaving: look again once drained, to take it out
            if node is not None:
                self._mark(node, k8s_marking(snode))
        for (action, reason), snames in actions.items():
            if action == "drain":
                self.slurm.drain(snames, reason)
            elif action == "down":
                self.slurm.down(snames, reason)
            else:
                self.slurm.resume(snames)
            self.applied += len(snames)
            log.info("slurm %s %s %s", action, ",".join(snames[:5]) + ("..." if len(snames) > 5 else ""), reason)
        if creates:
            self.slurm.create_nodes(creates)
            log.info("created %d slurm node(s)", len(creates))
        # Partitions: the pool's nodes, plus nodes still leaving, plus members the syncer does not manage.
        # After state changes alone the cached view is updated in place (the next poll confirms it); node
        # creation and removal need a fresh read.
        refreshed = self.slurm.nodes() if creates or removable else _with_actions(slurm, actions)
        partitions_set = False
        managed = {n for n, s in refreshed.items() if node_pool_of(s) in pool_features}
        leaving = set(removable)
        for pool in pools:
            members = {d.slurm_name for d in desired.values() if d.pool == pool.name and d.slurm_name in refreshed}
            marker = feature_value(pool.name)
            staying = {n for n, s in refreshed.items() if node_pool_of(s) == marker and n not in leaving}
            current = set(parts[pool.partition_name].nodes) if pool.partition_name in parts else None
            keep = {n for n in (current or set()) if n not in managed and n in refreshed}
            want_members = members | {n for n in staying if n in (current or set())} | keep
            want_members -= leaving
            if current is None or want_members != current:
                self.slurm.set_partition_nodes(pool.partition_name, sorted(want_members))
                partitions_set = True
                log.info("partition %s: %d node(s)", pool.partition_name, len(want_members))
        if removable:
            self.slurm.delete_nodes(removable)
            log.info("removed %d slurm node(s) that left their pool", len(removable))
        if creates or removable or actions or partitions_set:
            nodes_now = refreshed if not removable else self.slurm.nodes()
            parts_now = self.slurm.partitions() if creates or removable or partitions_set else parts
            with self._lock:
                self._slurm_gen += 1
                self._slurm_nodes = nodes_now
                self._partitions = parts_now
            # This read replaces the poller's: whatever else changed in Slurm meanwhile is looked at next.
            changed = {n for n in set(slurm) | set(nodes_now) if slurm.get(n) != nodes_now.get(n)}
            again |= {k8s_of.get(n, n) for n in changed}
        self._report(k8s, refreshed, desired, warnings)
        return again

    # -- Slurm -> Kubernetes ------------------------------------------------------------------------------

    def _mark(self, node: K8sNode, want: Marking | None) -> None:
        """Show (or clear) a drain someone else set in Slurm: annotation, NoSchedule taint, condition."""
        if marking_matches(node, want):
            return
        taints = [dict(t) for t in node.taints if t.get("key") != TAINT_KEY]
        if want is not None:
            taints.append(want.taint)
        annotations: dict[str, str | None] = dict(want.annotations) if want else \
            {STATE_ANNOTATION: None, REASON_ANNOTATION: None}
        body = {"metadata": {"resourceVersion": node.resource_version, "annotations": annotations},
                "spec": {"taints": taints or None}}
        if want is not None:
            condition: dict[str, Any] = {
                "type": CONDITION_TYPE, "status": "True", "reason": "SlurmDrain" if not want.user else
                _condition_reason(want.user), "message": f"Slurm {want.state.upper()}: {want.reason}",
                "lastTransitionTime": _now(), "lastHeartbeatTime": _now()}
        else:
            condition = {"type": CONDITION_TYPE, "$patch": "delete"}
        try:
            self.core.patch_node(node.name, body)
            self.core.patch_node_status(node.name, {"status": {"conditions": [condition]}})
        except ApiException as exc:
            if exc.status in (404, 409):  # gone, or changed meanwhile: its next event brings it back
                return
            raise
        log.info("node %s: slurm marking %s", node.name, f"{want.state} ({want.reason})" if want else "cleared")

    # -- reporting --------------------------------------------------------------------------------------------

    def _event(self, node: K8sNode, reason: str, message: str, warning: bool = True) -> None:
        key = (node.name, reason, message)
        if key in self._events_sent:
            return
        self._events_sent.add(key)
        (log.warning if warning else log.info)("%s: %s", reason, message)
        body = {
            "metadata": {"generateName": f"{node.name}.sunk-", "namespace": self.config.namespace},
            "involvedObject": {"kind": "Node", "name": node.name, "uid": node.uid, "apiVersion": "v1"},
            "reason": reason, "message": message, "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT}, "firstTimestamp": _now(), "lastTimestamp": _now(), "count": 1,
        }
        with contextlib.suppress(ApiException):
            self.core.create_namespaced_event(self.config.namespace, body)

    def _report(self, k8s: Mapping[str, K8sNode], slurm: Mapping[str, SlurmNode],
                desired: Mapping[str, DesiredNode], warnings: list[str]) -> None:
        pools: dict[str, dict[str, Any]] = {}
        for pool in self.config.pools:
            names = [d for d in desired.values() if d.pool == pool.name]
            pools[pool.name] = {"partition": pool.partition_name, "k8s_nodes": len(names),
                                "slurm_nodes": sum(1 for d in names if d.slurm_name in slurm)}
        known = {d.slurm_name for d in desired.values()} | set(k8s)
        for sname, snode in sorted(slurm.items()):
            if sname in known or not (snode.drained or snode.down):
                continue
            if not valid_k8s_node_name(sname):
                warnings.append(f"Slurm node {sname} is {snode.display_state} ({snode.reason}) but its name is "
                                "not a valid Kubernetes node name, so no Kubernetes node can show it")
        status = SyncStatus(pools, sorted(set(warnings)), time.time(), len(k8s), len(slurm), True)
        if self.config.topology_path is not None:
            switches: dict[str, list[str]] = {}
            for d in desired.values():
                if d.switch and d.slurm_name in slurm:
                    switches.setdefault(d.switch, []).append(d.slurm_name)
            text = render_topology(switches)
            if text != self._topology_written:
                self.config.topology_path.write_text(text)
                self._topology_written = text
        with self._lock:
            self._status = status
        doc = json.dumps({k: v for k, v in status.to_json().items() if k != "synced_at"}, sort_keys=True)
        if doc == self._status_written:
            return
        body = {"metadata": {"name": self.config.status_configmap, "namespace": self.config.namespace,
                             "labels": {"app.kubernetes.io/managed-by": COMPONENT}},
                "data": {"status.json": json.dumps(status.to_json(), indent=1)}}
        try:
            try:
                self.core.replace_namespaced_config_map(self.config.status_configmap, self.config.namespace, body)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self.core.create_namespaced_config_map(self.config.namespace, body)
            self._status_written = doc
        except ApiException as exc:
            log.warning("could not write status ConfigMap: %s", exc.reason)


def _with_actions(nodes: Mapping[str, SlurmNode],
                  actions: Mapping[tuple[str, str], list[str]]) -> dict[str, SlurmNode]:
    """The node view after the drain/down/resume commands just sent to Slurm succeeded."""
    view = dict(nodes)
    for (action, reason), names in actions.items():
        for name in names:
            node = view.get(name)
            if node is None:
                continue
            if action == "drain":
                view[name] = replace(node, flags=node.flags | {"DRAIN"}, reason=reason)
            elif action == "down":
                view[name] = replace(node, state="down", reason=reason)
            else:
                state = "idle" if node.down else node.state
                view[name] = replace(node, state=state, flags=node.flags - {"DRAIN", "FAIL"}, reason="",
                                     reason_user="")
    return view


def _condition_reason(user: str) -> str:
    """A condition reason (CamelCase identifier) naming who set the drain."""
    clean = "".join(ch for ch in user.title() if ch.isalnum())
    return f"SetBy{clean}" if clean else "SlurmDrain"


def annotate_slurm_name(core: client.CoreV1Api, node: K8sNode) -> None:
    """Record a sanitised Slurm name on the Kubernetes node (`sunkbridge.io/slurm-node`)."""
    core.patch_node(node.name, {"metadata": {"annotations": {SLURM_NAME_ANNOTATION: slurm_node_name(node.name)}}})
