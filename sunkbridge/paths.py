"""Where sunkbridge keeps caches and sandbox state on the local machine."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Build caches (Go binaries, base images); `SUNK_CACHE` overrides ~/.cache/sunkbridge."""
    return Path(os.environ.get("SUNK_CACHE") or Path.home() / ".cache" / "sunkbridge")


def state_root() -> Path:
    """Runtime state of the local sandbox; `SUNK_STATE` overrides the default.

    The default, /var/lib/sunkbridge for root, lies outside the home folder because munged and
    slurmrestd run as other users and must reach the sandbox's sockets and keys.
    """
    if env := os.environ.get("SUNK_STATE"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/sunkbridge")
    return Path.home() / ".local" / "state" / "sunkbridge"
