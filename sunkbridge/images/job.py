"""The job image of the sandbox and the e2e lane: the Debian base plus python3, built locally (no registry).

The bridge's in-pod agent is stdlib-only Python, so a job image needs python3 and nothing else.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from sunkbridge.images.base import base_tag, ensure_base, image_exists
from sunkbridge.lanes.daemons import LaneError

JOB_IMAGE = "local/sunk-job-python:2"

_DOCKERFILE = (f"FROM {base_tag('bookworm')}\n"
               "RUN apt-get update && apt-get install -y --no-install-recommends python3-minimal "
               "libpython3.11-stdlib && rm -rf /var/lib/apt/lists/*\n")


def ensure_job_image(on_step: Callable[[str], None] = lambda _s: None) -> str:
    """Build `JOB_IMAGE` when missing (cached by tag) and return its tag."""
    ensure_base("bookworm", on_step=on_step)
    if image_exists(JOB_IMAGE):
        return JOB_IMAGE
    on_step(f"building the job image {JOB_IMAGE} (Debian base + python3)")
    proc = subprocess.run(["docker", "build", "-q", "-t", JOB_IMAGE, "-"], input=_DOCKERFILE.encode(),
                          capture_output=True)
    if proc.returncode != 0:
        detail = " | ".join(proc.stderr.decode(errors="replace").strip().splitlines()[-3:])
        raise LaneError(f"building the job image {JOB_IMAGE} failed ({detail}); check that Debian's mirror is "
                        "reachable from containers, then retry")
    return JOB_IMAGE
