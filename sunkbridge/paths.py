"""Where sunkbridge keeps caches and sandbox state on the local machine."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Build caches (Go binaries, base images); `SUNK_CACHE` overrides ~/.cache/sunkbridge."""
    return Path(os.environ.get("SUNK_CACHE") or Path.home() / ".cache" / "sunkbridge")


def state_root() -> Path:
    """Runtime state of the local sandbox; `SUNK_STATE` overrides ~/.local/state/sunkbridge."""
    return Path(os.environ.get("SUNK_STATE") or Path.home() / ".local" / "state" / "sunkbridge")
