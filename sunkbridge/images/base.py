"""Debian base images made with debootstrap and imported into the local engine (no registry needed)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from sunkbridge.images.engine import ensure_engine
from sunkbridge.lanes.daemons import LaneError
from sunkbridge.paths import cache_root

MIRROR = "http://deb.debian.org/debian"
SUITES = ("bookworm", "trixie", "sid")


def base_tag(suite: str) -> str:
    """The local tag of the base image for a Debian suite."""
    return f"local/debian:{suite}"


def image_exists(tag: str) -> bool:
    """True when the local engine holds `tag`."""
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def ensure_base(suite: str = "bookworm", *, rebuild: bool = False,
                on_step: Callable[[str], None] = lambda _s: None) -> str:
    """Make `local/debian:<suite>` from a cached debootstrap tarball (made when missing or asked)."""
    if suite not in SUITES:
        raise LaneError(f"unknown Debian suite {suite!r}; choose one of {', '.join(SUITES)}")
    ensure_engine()
    tag = base_tag(suite)
    if image_exists(tag) and not rebuild:
        return tag
    tarball = cache_root() / "images" / f"debian-{suite}-minbase-v2.tar"
    if rebuild or not tarball.exists():
        _debootstrap(suite, tarball, on_step)
    on_step(f"importing {tarball.name} as {tag}")
    with tarball.open("rb") as fh:
        proc = subprocess.run(["docker", "import", "--change", "CMD [\"/bin/bash\"]", "-", tag], stdin=fh,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise LaneError(f"`docker import` of {tarball} failed: {proc.stderr.strip()}; delete the file and "
                        f"run `sunk images base --suite {suite} --rebuild`")
    return tag


def _debootstrap(suite: str, tarball: Path, on_step: Callable[[str], None]) -> None:
    root = tarball.with_suffix(".rootfs")
    shutil.rmtree(root, ignore_errors=True)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    on_step(f"debootstrap --variant=minbase {suite} (about a minute)")
    log = tarball.with_suffix(".log")
    with log.open("w") as out:
        proc = subprocess.run(["debootstrap", "--variant=minbase", suite, str(root), MIRROR],
                              stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise LaneError(f"debootstrap of Debian {suite} failed (log {log}); check that {MIRROR} is "
                        f"reachable and that debootstrap knows the suite (`ls /usr/share/debootstrap/scripts`)")
    # Debian's mirror may serve a frozen snapshot whose Release files have passed their Valid-Until date
    # (seen with sid); apt inside the images must still accept them.
    (root / "etc/apt/apt.conf.d/99sunk-snapshot").write_text('Acquire::Check-Valid-Until "false";\n')
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
    partial.rename(tarball)
    shutil.rmtree(root, ignore_errors=True)
