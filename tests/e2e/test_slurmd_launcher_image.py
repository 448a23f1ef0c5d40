"""The slurmd image carries the pod-group launcher, and the launcher's token identity works with the image's
Debian kubernetes client; a job that cannot read the token fails with the reason."""

from __future__ import annotations

import subprocess

import pytest

from sunkbridge.images.build import build_slurm_images, image_tag

pytestmark = pytest.mark.e2e

LAUNCHER = "/usr/local/libexec/sunk/launcher"
ARGS = "--token-dir /run/tok --namespace ns --cluster c --default-image local/app:1 -- a b"
SCRIPT = "#!/bin/sh\necho hi\n"
JOB_ENV = {
    "SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "node-1", "SLURM_JOB_UID": "65534",
    # No Slurm controller here: the launcher's Comment update (scontrol) then fails at once, where a missing
    # slurm.conf would have scontrol retry for a minute. The Comment itself is not checked here.
    "SLURM_CONF": "/dev/null",
}


@pytest.fixture(scope="module")
def slurmd_image() -> str:
    build_slurm_images("bookworm", ["slurmd"])
    return image_tag("slurmd", "bookworm")


def _sh(image: str, shell: str) -> subprocess.CompletedProcess[str]:
    """`shell` as root in a slurmd container without network, with Slurm's job variables and SCRIPT on stdin."""
    cmd = ["docker", "run", "--rm", "-i", "--network", "none", "--entrypoint", "sh"]
    for key, value in JOB_ENV.items():
        cmd += ["-e", f"{key}={value}"]
    return subprocess.run([*cmd, image, "-c", shell], input=SCRIPT, capture_output=True, text=True, timeout=120)


def test_the_launcher_runs_in_the_slurmd_image_and_names_a_missing_token(slurmd_image: str) -> None:
    proc = _sh(slurmd_image, f"{LAUNCHER} --help && exec {LAUNCHER} {ARGS}")
    assert proc.stdout.startswith("usage: sunk-launcher") and "--token-dir" in proc.stdout, proc
    assert proc.returncode == 1, proc
    assert proc.stderr.strip() == (
        "sunk-launcher: job 7: cannot read the launcher's token /run/tok/token (No such file or directory): "
        "the slurmd pod must mount the launcher's ServiceAccount token there (pools of mode podgroup get it "
        "from the operator), or the launcher needs --kubeconfig"), proc


def test_a_job_user_meets_the_root_only_token_with_the_reason(slurmd_image: str) -> None:
    """The token mode of the operator's projected volume (0400, root); slurmd runs the job as its user."""
    proc = _sh(slurmd_image, "mkdir /run/tok && echo secret > /run/tok/token && touch /run/tok/ca.crt "
                             f"&& chmod 0400 /run/tok/token && exec runuser -u nobody -- {LAUNCHER} {ARGS}")
    assert proc.returncode == 1, proc
    assert proc.stderr.strip() == (
        "sunk-launcher: job 7: cannot read the launcher's token /run/tok/token as uid 65534: pod-group jobs "
        "of this cluster can only be submitted by root until the controller verifies job owners"), proc


def test_the_image_client_sends_the_token_and_follows_its_rotation(slurmd_image: str) -> None:
    """The Configuration hooks of Debian's python3-kubernetes (not the test host's client) re-read the token."""
    program = (
        "import sys; sys.path.insert(0, '/usr/local/lib/sunk')\n"
        "from pathlib import Path\n"
        "from kubernetes import client\n"
        "from launcher import token_configuration\n"
        "cfg = token_configuration(Path('/run/tok'), 'https://10.0.0.1:6443')\n"
        "api = client.ApiClient(cfg)\n"
        "headers = {}; api.update_params_for_auth(headers, [], ['BearerToken']); print(cfg.host, headers)\n"
        "Path('/run/tok/token.new').write_text('second'); Path('/run/tok/token.new').replace('/run/tok/token')\n"
        "headers = {}; api.update_params_for_auth(headers, [], ['BearerToken']); print(cfg.host, headers)\n"
    )
    proc = _sh(slurmd_image, "mkdir /run/tok && echo first > /run/tok/token && touch /run/tok/ca.crt "
                             f"&& python3 -I -c \"{program}\"")
    assert proc.returncode == 0, proc
    assert proc.stdout.splitlines() == ["https://10.0.0.1:6443 {'authorization': 'Bearer first'}",
                                        "https://10.0.0.1:6443 {'authorization': 'Bearer second'}"]
