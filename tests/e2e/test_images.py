"""The project's images build on the local engine from the debootstrap base, cached, with clear errors."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sunkbridge.images.build import (
    IMAGE_NAMES,
    INPUTS_LABEL,
    ImageBuildError,
    build_image,
    build_slurm_images,
    image_info,
    image_tag,
    list_images,
)

pytestmark = pytest.mark.e2e


def _run(image: str, *argv: str, entrypoint: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["docker", "run", "--rm"]
    if entrypoint is not None:
        cmd += ["--entrypoint", entrypoint]
    return subprocess.run([*cmd, image, *argv], capture_output=True, text=True, timeout=120)


@pytest.fixture
def scratch_tag() -> Iterator[str]:
    """A throwaway tag, removed afterwards (with whatever the test built under it)."""
    tag = f"local/sunk-e2e-scratch:{uuid.uuid4().hex[:10]}"
    yield tag
    subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)


def test_bookworm_images_build_then_are_cached() -> None:
    built = build_slurm_images("bookworm")
    assert [b.name for b in built] == list(IMAGE_NAMES)
    for image in built:
        assert image.tag == image_tag(image.name, "bookworm")
        assert image.tag.endswith(":22.05")
        info = image_info(image.tag)
        assert info is not None and image.size_bytes > 0
    again = build_slurm_images("bookworm")
    assert all(b.cached for b in again), [b.name for b in again if not b.cached]
    assert [b.image_id for b in again] == [b.image_id for b in built]
    listed = {b.tag for b in list_images()}
    assert {b.tag for b in built} <= listed


def test_bookworm_images_hold_slurm_22_05_and_no_baked_munge_key() -> None:
    build_slurm_images("bookworm")
    version = _run(image_tag("slurmctld"), "-V", entrypoint="/usr/sbin/slurmctld")
    assert version.stdout.startswith("slurm") and "22.05" in version.stdout, version
    for name in ("slurmctld", "slurmd", "login", "slurmrestd", "slurmdbd"):
        key = _run(image_tag(name), "-e", "/etc/munge/munge.key", entrypoint="test")
        assert key.returncode == 1, f"{name} image ships a munge key"
    who = _run(image_tag("base"), "-c", "id -u slurm; id -u munge; id -u slurmrestd", entrypoint="bash")
    assert who.stdout.split() == ["64030", "64031", "64032"]
    sunk = _run(image_tag("login"), "--version", entrypoint="sunk")
    assert "0.1.0" in sunk.stdout, sunk
    controller = _run(image_tag("controller"), "--version")
    assert "0.1.0" in controller.stdout, controller
    kopf = _run(image_tag("controller"), "-c", "import kopf, kubernetes, sunkbridge", entrypoint="python3")
    assert kopf.returncode == 0, kopf.stderr


def test_entrypoint_names_a_missing_slurm_conf() -> None:
    build_slurm_images("bookworm", ["slurmctld"])
    proc = _run(image_tag("slurmctld"))
    assert proc.returncode == 64
    assert "no readable slurm.conf at /etc/slurm/slurm.conf" in proc.stderr
    assert "mount" in proc.stderr


def test_changed_context_rebuilds_and_unchanged_is_cached(tmp_path: Path, scratch_tag: str) -> None:
    (tmp_path / "Dockerfile").write_text("FROM local/debian:bookworm\nCOPY hello /hello\n")
    (tmp_path / "hello").write_text("one\n")
    first = build_image(tmp_path, scratch_tag)
    assert not first.cached
    assert build_image(tmp_path, scratch_tag).cached
    again = build_image(tmp_path, scratch_tag, rebuild=True)
    assert not again.cached and again.replaced == first.image_id
    assert image_info(first.image_id) is None, "the replaced image was left behind"
    (tmp_path / "hello").write_text("two\n")
    changed = build_image(tmp_path, scratch_tag)
    assert not changed.cached and changed.image_id != first.image_id
    assert image_info(again.image_id) is None
    assert not build_image(tmp_path, scratch_tag, {"UNUSED": "x"}).cached
    info = image_info(scratch_tag)
    assert info is not None and INPUTS_LABEL in str(info.get("Config"))


def test_failed_apt_step_names_image_step_and_fix(tmp_path: Path, scratch_tag: str) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM local/debian:bookworm\n"
        "RUN true\n"
        "RUN apt-get update -qq && apt-get install -y --no-install-recommends sunk-no-such-package\n")
    with pytest.raises(ImageBuildError) as caught:
        build_image(tmp_path, scratch_tag)
    err = caught.value
    message = str(err)
    assert "\n" not in message
    assert message.startswith(f"building image {scratch_tag} failed at step 3/3 `RUN apt-get update")
    assert "Debian bookworm has no package `sunk-no-such-package`" in message
    assert "apt-cache search sunk-no-such-package" in message
    assert str(tmp_path / "Dockerfile") in message
    assert err.log is not None and err.log.is_file() and f"log: {err.log}" in message
    assert "Unable to locate package sunk-no-such-package" in err.log.read_text()
    assert image_info(scratch_tag) is None


def test_failed_command_step_names_the_command(tmp_path: Path, scratch_tag: str) -> None:
    (tmp_path / "Dockerfile").write_text("FROM local/debian:bookworm\nRUN echo about to fail && exit 3\n")
    with pytest.raises(ImageBuildError) as caught:
        build_image(tmp_path, scratch_tag)
    message = str(caught.value)
    assert "failed at step 2/2 `RUN echo about to fail && exit 3`" in message
    assert "the RUN command exited 3 (about to fail)" in message


def test_missing_parent_images_are_named(tmp_path: Path, scratch_tag: str) -> None:
    (tmp_path / "Dockerfile").write_text("ARG SUITE=nosuchsuite\nFROM local/debian:${SUITE}\n")
    with pytest.raises(ImageBuildError) as caught:
        build_image(tmp_path, scratch_tag)
    message = str(caught.value)
    assert "parent image local/debian:nosuchsuite does not exist" in message
    assert "bookworm, trixie, sid" in message
    (tmp_path / "Dockerfile").write_text("FROM local/sunk-never-built:0.0\n")
    with pytest.raises(ImageBuildError, match=r"parent image local/sunk-never-built:0\.0 does not exist.*"
                                              r"sunk images build"):
        build_image(tmp_path, scratch_tag)


def test_unknown_line_and_image_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown Slurm line 'buster'.*bookworm \(22.05\)"):
        build_slurm_images("buster")
    with pytest.raises(ValueError, match=r"unknown image\(s\) slurmfoo"):
        build_slurm_images("bookworm", ["slurmfoo"])
