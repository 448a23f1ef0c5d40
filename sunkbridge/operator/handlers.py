"""kopf handlers: one reconcile loop (a daemon) per SlurmCluster, woken by spec, node and pod changes.

The loop is level-triggered: each pass reads the world and calls `reconcile`, then sleeps until something
relevant changes (a spec edit, a node joining, leaving or changing labels/allocatable, a slurmd or
slurmctld pod changing phase or address) or the requeue time passes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import kopf

from sunkbridge.operator.builders import CLUSTER_LABEL, COMPONENT_LABEL, jobs_nodes_binding_name
from sunkbridge.operator.kube import Kube, load_client
from sunkbridge.operator.reconcile import reconcile, write_status
from sunkbridge.operator.spec import GROUP, PLURAL, VERSION

log = logging.getLogger("sunkbridge.operator")

_wake: dict[tuple[str, str], threading.Event] = {}
_node_prints: dict[str, tuple[Any, ...]] = {}
_pod_prints: dict[str, tuple[Any, ...]] = {}
_kube: Kube | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube(load_client())
    return _kube


def wake_all() -> None:
    for event in list(_wake.values()):
        event.set()


@kopf.on.startup()  # type: ignore[untyped-decorator]
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)


@kopf.on.probe(id="clusters")  # type: ignore[untyped-decorator]
def clusters_probe(**_: Any) -> int:
    return len(_wake)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)  # type: ignore[untyped-decorator]
def cluster_loop(stopped: kopf.DaemonStopped, name: str, namespace: str, logger: logging.Logger,
                 **_: Any) -> None:
    """Reconcile one SlurmCluster until it is deleted or the operator stops."""
    event = _wake.setdefault((namespace, name), threading.Event())
    try:
        while not stopped:
            event.clear()
            requeue = 10.0
            try:
                body = kube().custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
                result = reconcile(kube(), body)
                write_status(kube(), namespace, name, result.status)
                for message in result.events:
                    logger.info(message)
                requeue = result.requeue
                logger.debug("reconciled in %.3fs", result.status.get("reconcileSeconds", 0.0))
            except Exception as exc:  # the loop must survive anything one pass throws
                logger.exception("reconcile failed: %s", exc)
            deadline = time.monotonic() + requeue
            while not stopped and not event.is_set() and time.monotonic() < deadline:
                event.wait(0.5)
    finally:
        _wake.pop((namespace, name), None)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")  # type: ignore[untyped-decorator]
def spec_changed(name: str, namespace: str, **_: Any) -> None:
    """Edits apply at once rather than at the next requeue."""
    event = _wake.get((namespace, name))
    if event is not None:
        event.set()


@kopf.on.delete(GROUP, VERSION, PLURAL)  # type: ignore[untyped-decorator]
def cluster_deleted(uid: str, **_: Any) -> None:
    """The one object of a cluster its owner reference cannot take along: the bridge's ClusterRoleBinding."""
    kube().delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{jobs_nodes_binding_name(uid)}")


@kopf.on.event("", "v1", "nodes")  # type: ignore[untyped-decorator]
def node_changed(event: dict[str, Any], body: kopf.Body, **_: Any) -> None:
    """Nodes joining, leaving, or changing what the pools read from them."""
    name = body.get("metadata", {}).get("name", "")
    if event.get("type") == "DELETED":
        _node_prints.pop(name, None)
        wake_all()
        return
    status = body.get("status", {})
    fingerprint = (tuple(sorted((body.get("metadata", {}).get("labels") or {}).items())),
                   tuple(sorted((status.get("allocatable") or {}).items())),
                   body.get("spec", {}).get("unschedulable"),
                   body.get("metadata", {}).get("deletionTimestamp"))
    if _node_prints.get(name) != fingerprint:
        _node_prints[name] = fingerprint
        wake_all()


@kopf.on.event("", "v1", "pods", labels={COMPONENT_LABEL: kopf.PRESENT, CLUSTER_LABEL: kopf.PRESENT})  # type: ignore[untyped-decorator]
def pod_changed(event: dict[str, Any], body: kopf.Body, namespace: str, **_: Any) -> None:
    """slurmd and slurmctld pods getting an address, becoming ready, or going away."""
    meta = body.get("metadata", {})
    key = f"{namespace}/{meta.get('name')}"
    status = body.get("status", {})
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    fingerprint = (status.get("podIP"), status.get("phase"), ready, meta.get("deletionTimestamp"))
    if event.get("type") == "DELETED":
        _pod_prints.pop(key, None)
    elif _pod_prints.get(key) == fingerprint:
        return
    else:
        _pod_prints[key] = fingerprint
    wake = _wake.get((namespace, (meta.get("labels") or {}).get(CLUSTER_LABEL, "")))
    if wake is not None:
        wake.set()

