#!/bin/bash
# Start containerd, then run the kubelet in the foreground. Configuration comes from /etc/sunk-node.
set -euo pipefail
: "${NODE_NAME:?NODE_NAME must be set}" "${NODE_IP:?NODE_IP must be set}" "${CGROUP_ROOT:?CGROUP_ROOT must be set}"

mount --make-rshared /
for controller in /sys/fs/cgroup/*/; do
  [ -L "${controller%/}" ] || mkdir -p "${controller}${CGROUP_ROOT#/}"
done
sysctl -qw net.ipv4.ip_forward=1 || true

mkdir -p /var/log/sunk-node
containerd --config /etc/sunk-node/containerd.toml >/var/log/sunk-node/containerd.log 2>&1 &
for _ in $(seq 200); do
  [ -S /run/containerd/containerd.sock ] && break
  sleep 0.1
done
[ -S /run/containerd/containerd.sock ] || { echo "containerd did not start:"; tail -5 /var/log/sunk-node/containerd.log; exit 1; }
for image in /etc/sunk-node/images/*.tar; do
  [ -e "$image" ] && ctr -n k8s.io images import --no-unpack=false "$image" >/dev/null
done

exec /usr/local/bin/kubelet \
  --config=/etc/sunk-node/kubelet.yaml \
  --kubeconfig=/etc/sunk-node/kubeconfig \
  --hostname-override="$NODE_NAME" \
  --node-ip="$NODE_IP" \
  --node-labels="${NODE_LABELS:-}" \
  --v=1
