"""Helpers of the sync lane tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from sunkbridge.cluster import NodePool
from sunkbridge.k8s.pools import POOL_LABEL, RACK_LABEL


def pool(name: str, **kw: object) -> NodePool:
    """A pool selected by the sandbox's pool label, racks as features and switches."""
    return NodePool(name, {POOL_LABEL: name}, feature_labels=(RACK_LABEL,), topology_label=RACK_LABEL,
                    **kw)  # type: ignore[arg-type]


def wait_for(check: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    """Poll `check` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # lanes restarting: keep trying until the deadline
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
