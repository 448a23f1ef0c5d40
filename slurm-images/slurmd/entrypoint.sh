#!/bin/bash
# slurmd: install the munge key, start munged, create the node's stand-in GPU devices, then exec slurmd
# as root in the foreground. The node name is $SLURMD_NODENAME or the container's hostname.
# Extra arguments go to slurmd (e.g. -vvv, or -Z --conf "..." for a dynamic node).
. /usr/local/lib/sunk/sunk-lib.sh

sunk_require_conf
sunk_start_munged
sunk_install_jwt_key

node="${SLURMD_NODENAME:-$(hostname)}"
sunk_make_gpu_devices "$node"
spool="$(sunk_conf_value SlurmdSpoolDir /var/spool/slurmd)"
install -d -m 0755 "${spool//%n/$node}" /run/slurm
logfile="$(sunk_conf_value SlurmdLogFile)"
[ -z "$logfile" ] || install -d -m 0755 "$(dirname "${logfile//%n/$node}")"

args=(-D)
[ -z "${SLURMD_NODENAME:-}" ] || args+=(-N "$SLURMD_NODENAME")
sunk_log "Slurm $(sunk_slurm_version): slurmd for node $node"
sunk_exec_as root /usr/sbin/slurmd "${args[@]}" "$@"
