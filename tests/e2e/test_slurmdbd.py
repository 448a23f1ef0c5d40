"""The slurmdbd image keeps accounting in a real MariaDB (Debian's mariadb-server, built for the test)."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sunkbridge.images.build import build_image, build_slurm_images, image_tag

pytestmark = pytest.mark.e2e

MARIADB_TAG = "local/sunk-e2e-mariadb:bookworm"

MARIADB_DOCKERFILE = """\
FROM local/debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends mariadb-server \\
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY start.sh /start.sh
ENTRYPOINT ["/bin/sh", "/start.sh"]
"""

# Creates the accounting database and its user (password from the mounted secret), then serves.
MARIADB_START = """\
set -eu
pass="$(cat /secret/storage-pass)"
install -d -o mysql -g mysql /run/mysqld
[ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
mariadbd --user=mysql --bootstrap <<SQL
FLUSH PRIVILEGES;
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'%' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'%';
SQL
exec mariadbd --user=mysql --bind-address=0.0.0.0
"""

SLURMDBD_CONF = """\
AuthType=auth/munge
DbdHost=slurmdbd
DbdPort=6819
SlurmUser=slurm
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=db
StoragePort=3306
StorageUser=slurm
StorageLoc=slurm_acct_db
# StoragePass comes from the mounted secret (SLURMDBD_STORAGE_PASS_FILE).
"""

SLURM_CONF = """\
ClusterName=e2e
SlurmctldHost=slurmctld
AuthType=auth/munge
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
"""


def _docker(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *argv], capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture
def network() -> Iterator[str]:
    """A private network; the containers on it are removed with it."""
    name = f"sunk-e2e-dbd-{os.getpid()}"
    _docker("network", "create", name)
    yield name
    ids = _docker("ps", "-aq", "--filter", f"network={name}", check=False).stdout.split()
    if ids:
        _docker("rm", "-f", "-v", *ids, check=False)
    _docker("network", "rm", name, check=False)


def _wait(check: Callable[[], bool], what: str, container: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if _docker("inspect", "-f", "{{.State.Running}}", container, check=False).stdout.strip() != "true":
            break
        time.sleep(1)
    logs = _docker("logs", "--tail", "20", container, check=False)
    pytest.fail(f"{what} not ready: {(logs.stdout + logs.stderr)[-2500:]}")


def test_slurmdbd_stores_accounting_in_mariadb(tmp_path: Path, network: str) -> None:
    build_slurm_images("bookworm", ["slurmdbd"])
    db_ctx = tmp_path / "mariadb"
    db_ctx.mkdir()
    (db_ctx / "Dockerfile").write_text(MARIADB_DOCKERFILE)
    (db_ctx / "start.sh").write_text(MARIADB_START)
    build_image(db_ctx, MARIADB_TAG)

    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "storage-pass").write_text(secrets.token_hex(16) + "\n")
    (secret / "munge.key").write_bytes(secrets.token_bytes(1024))
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "slurmdbd.conf").write_text(SLURMDBD_CONF)
    (etc / "slurm.conf").write_text(SLURM_CONF)

    db = f"{network}-db"
    _docker("run", "-d", "--name", db, "--network", network, "--network-alias", "db",
            "-v", f"{secret}:/secret:ro", MARIADB_TAG)
    _wait(lambda: _docker("exec", db, "mariadb-admin", "ping", check=False).returncode == 0,
          "mariadb", db)

    dbd = f"{network}-slurmdbd"
    _docker("run", "-d", "--name", dbd, "--hostname", "slurmdbd", "--network", network, "--init",
            "-v", f"{etc}:/etc/slurm:ro", "-v", f"{secret}:/etc/munge-key:ro",
            "-v", f"{secret}:/etc/slurmdbd-secret:ro", image_tag("slurmdbd"))
    _wait(lambda: _docker("exec", dbd, "sunk-healthcheck", check=False).returncode == 0, "slurmdbd", dbd)

    added = _docker("exec", dbd, "sacctmgr", "-i", "add", "cluster", "e2e", check=False)
    assert added.returncode == 0, added.stdout + added.stderr
    clusters = _docker("exec", dbd, "sacctmgr", "-n", "-P", "show", "cluster", "format=cluster").stdout
    assert clusters.split() == ["e2e"]
    owner = _docker("exec", dbd, "bash", "-c", "stat -c '%U %a' /run/slurmdbd-conf/slurmdbd.conf "
                    "&& stat -c %U /proc/$(cat /run/slurm/slurmdbd.pid)").stdout.split()
    assert owner == ["slurm", "600", "slurm"]
    tables = _docker("exec", db, "mariadb", "-N", "-e", "SHOW TABLES FROM slurm_acct_db").stdout
    assert "cluster_table" in tables
