# Helpers shared by the entrypoints of the Slurm images (sourced, not run).
#
# Configuration comes from mounted files, the way Kubernetes ConfigMaps and Secrets deliver it:
#   /etc/slurm/                  slurm.conf, gres.conf, cgroup.conf, ... (may be read-only)
#   /etc/munge-key/munge.key     the cluster's munge key (copied to /etc/munge with munge's owner/mode)
#   /etc/slurm-jwt/jwt_hs256.key optional JWT key (copied to /var/lib/slurm, owner slurm, mode 0600)
# Every path can be moved with the variables below.

set -euo pipefail

: "${SLURM_CONF:=/etc/slurm/slurm.conf}"
: "${MUNGE_KEY_FILE:=/etc/munge-key/munge.key}"
: "${JWT_KEY_FILE:=/etc/slurm-jwt/jwt_hs256.key}"
: "${JWT_KEY_DEST:=/var/lib/slurm/jwt_hs256.key}"
export SLURM_CONF

sunk_log() {
    echo "sunk-entrypoint[${SUNK_ROLE:-?}]: $*" >&2
}

sunk_die() {
    sunk_log "error: $*"
    exit 64
}

# The Slurm release of this image, e.g. 22.05.8.
sunk_slurm_version() {
    dpkg-query -W -f '${Version}' slurm-client | sed 's/-.*//'
}

# True when this image's Slurm is at least MAJOR.MINOR (e.g. `sunk_slurm_at_least 23.02`).
sunk_slurm_at_least() {
    local have want
    have="$(sunk_slurm_version | cut -d. -f1-2)"
    want="$1"
    [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" = "$want" ]
}

sunk_conf_dir() {
    dirname "$SLURM_CONF"
}

# The value of KEY in slurm.conf (last one wins, case-insensitive key), or $2 when absent.
sunk_conf_value() {
    local value
    value="$(sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\([^[:space:]#]*\).*/\1/Ip" "$SLURM_CONF" | tail -n1)"
    echo "${value:-${2:-}}"
}

sunk_require_conf() {
    [ -r "$SLURM_CONF" ] || sunk_die "no readable slurm.conf at $SLURM_CONF;" \
        "mount the cluster's configuration there (a ConfigMap, or -v ./compose/etc:/etc/slurm:ro)"
}

# Copy the mounted munge key into place with the owner and mode munged insists on.
sunk_install_munge_key() {
    [ -r "$MUNGE_KEY_FILE" ] || sunk_die "no munge key at $MUNGE_KEY_FILE;" \
        "mount the cluster's munge key Secret there (the same key on every Slurm container)"
    local size
    size="$(stat -c %s "$MUNGE_KEY_FILE")"
    [ "$size" -ge 32 ] || sunk_die "munge key $MUNGE_KEY_FILE has $size bytes; munged needs at least 32"
    install -d -o munge -g munge -m 0700 /etc/munge
    install -o munge -g munge -m 0400 "$MUNGE_KEY_FILE" /etc/munge/munge.key
}

sunk_install_jwt_key() {
    if [ -r "$JWT_KEY_FILE" ]; then
        install -d -o slurm -g slurm -m 0755 "$(dirname "$JWT_KEY_DEST")"
        install -o slurm -g slurm -m 0600 "$JWT_KEY_FILE" "$JWT_KEY_DEST"
    fi
}

# Start munged in the background as munge and wait until it signs and verifies a credential.
sunk_start_munged() {
    sunk_install_munge_key
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2
    setpriv --reuid=munge --regid=munge --init-groups -- /usr/sbin/munged ||
        sunk_die "munged did not start (see /var/log/munge/munged.log)"
    local i
    for i in $(seq 1 100); do
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    sunk_die "munged does not answer after 10s: $(tail -n 3 /var/log/munge/munged.log 2>/dev/null | tr '\n' ' ')"
}

# The hosts of a Slurm host list expression (`gpu-[001-002]`), one a line.
sunk_expand() {
    scontrol show hostnames "$1"
}

# Create stand-in GPU character devices for the GPUs gres.conf gives node $1 (`File=` entries).
# Only lines with `Name=gpu` (or any gres with File=) that apply to this node count: lines with
# NodeName= naming other nodes are skipped. Real NVIDIA devices use major 195; the stand-ins do too,
# with minor = the device's index, so Slurm sees distinct character devices.
sunk_make_gpu_devices() {
    local node="$1" gres_conf line nodes files path minor
    gres_conf="$(sunk_conf_dir)/gres.conf"
    [ -r "$gres_conf" ] || return 0
    while IFS= read -r line; do
        line="${line%%#*}"
        case "$line" in *File=*) ;; *) continue ;; esac
        nodes="$(echo "$line" | sed -n 's/.*NodeName=\([^[:space:]]*\).*/\1/Ip')"
        if [ -n "$nodes" ] && ! sunk_expand "$nodes" | grep -qx -- "$node"; then
            continue
        fi
        files="$(echo "$line" | sed -n 's/.*File=\([^[:space:]]*\).*/\1/Ip')"
        for path in $(sunk_expand "$files"); do
            [ -e "$path" ] && continue
            minor="$(echo "$path" | sed -n 's/.*[^0-9]\([0-9][0-9]*\)$/\1/p')"
            install -d -m 0755 "$(dirname "$path")"
            mknod -m 0666 "$path" c 195 "${minor:-0}" ||
                sunk_die "mknod $path failed; the container needs CAP_MKNOD (Docker grants it by default)"
        done
    done < "$gres_conf"
}

# Run "$@" as USER (exec, so the daemon becomes this process and gets the container's signals).
sunk_exec_as() {
    local user="$1"
    shift
    if [ "$user" = root ]; then
        exec "$@"
    fi
    exec setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"
}

# Run "$@" as USER in the foreground, and start it again each time it exits with status 0 while the
# container was not asked to stop. `scontrol shutdown` (how the operator applies a change that needs a
# restart) then restarts the daemon in place with the configuration files as they are now; a container
# exit would instead be delayed by the kubelet's back-off, longer after each restart. SIGTERM and SIGINT
# are passed on and end the loop (status 0 once the daemon is gone), as does a daemon that fails (its status).
sunk_supervise_as() {
    local user="$1" child=0 status=0 stopping=0
    shift
    trap 'stopping=1; [ "$child" = 0 ] || kill -TERM "$child" 2>/dev/null || :' TERM INT
    while [ "$stopping" = 0 ]; do
        if [ "$user" = root ]; then
            "$@" &
        else
            setpriv --reuid="$user" --regid="$user" --init-groups -- "$@" &
        fi
        child=$!
        if [ "$stopping" = 1 ]; then  # the stop came while the daemon was being started
            kill -TERM "$child" 2>/dev/null || :
        fi
        status=0
        wait "$child" || status=$?
        while kill -0 "$child" 2>/dev/null; do  # wait was cut short by a signal: wait for the exit itself
            status=0
            wait "$child" || status=$?
        done
        child=0
        if [ "$stopping" = 1 ]; then  # stopped as asked: the daemon is gone
            return 0
        fi
        if [ "$status" != 0 ]; then
            return "$status"
        fi
        sunk_log "$(basename "$1") stopped on request; starting it again with the current configuration"
        sleep 1  # a daemon that keeps exiting at once is not restarted in a tight loop
    done
    return 0
}
