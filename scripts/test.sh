#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine, then run the lanes: lint, unit, slurm, k8s, sync, e2e.
# Usage: scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null; then
  echo "scripts/test.sh: Go 1.26+ is needed to build the Kubernetes lane (install it, then rerun)" >&2
  exit 1
fi
python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'
# Debian's Slurm 22.05 + munge; kube-*, etcd, kwok, CoreDNS from Go modules (cached by version);
# Docker engine, Debian base images and the real-node image
python3 -m sunkbridge dev prepare --real-nodes

python3 -m ruff check .
python3 -m mypy
python3 -m pytest tests/unit tests/slurm tests/k8s tests/sync tests/e2e "$@"
