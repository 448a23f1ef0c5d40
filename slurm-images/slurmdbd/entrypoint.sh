#!/bin/bash
# slurmdbd: slurmdbd.conf holds the database password, so slurmdbd insists on mode 0600 and its own
# user as owner. A mounted (read-only, root-owned) config directory is therefore copied to
# /run/slurmdbd-conf with that owner and mode, and SLURM_CONF points there (slurmdbd reads
# slurmdbd.conf from the directory of SLURM_CONF). Then munged starts and slurmdbd runs as SlurmUser.
# The database password may stay out of the ConfigMap: when $SLURMDBD_STORAGE_PASS_FILE (default
# /etc/slurmdbd-secret/storage-pass) exists, its content becomes StoragePass in the private copy.
. /usr/local/lib/sunk/sunk-lib.sh

src="$(sunk_conf_dir)/slurmdbd.conf"
[ -r "$src" ] || sunk_die "no readable slurmdbd.conf at $src; mount the accounting configuration there"
user="$(sed -n 's/^[[:space:]]*SlurmUser[[:space:]]*=[[:space:]]*\([^[:space:]#]*\).*/\1/Ip' "$src" | tail -n1)"
user="${user:-root}"
conf=/run/slurmdbd-conf
install -d -o "$user" -g "$user" -m 0700 "$conf"
install -o "$user" -g "$user" -m 0600 "$src" "$conf/slurmdbd.conf"
pass_file="${SLURMDBD_STORAGE_PASS_FILE:-/etc/slurmdbd-secret/storage-pass}"
if [ -r "$pass_file" ]; then
    sed -i '/^[[:space:]]*StoragePass[[:space:]]*=/Id' "$conf/slurmdbd.conf"
    printf 'StoragePass=%s\n' "$(tr -d '\n' < "$pass_file")" >> "$conf/slurmdbd.conf"
fi
if [ -r "$SLURM_CONF" ]; then
    install -o "$user" -g "$user" -m 0644 "$SLURM_CONF" "$conf/slurm.conf"
fi
export SLURM_CONF="$conf/slurm.conf"
sunk_start_munged
sunk_install_jwt_key
pidfile="$(sed -n 's/^[[:space:]]*PidFile[[:space:]]*=[[:space:]]*\([^[:space:]#]*\).*/\1/Ip' "$src" | tail -n1)"
install -d -o "$user" -g "$user" -m 0755 "$(dirname "${pidfile:-/run/slurm/slurmdbd.pid}")" /var/log/slurm

sunk_log "Slurm $(sunk_slurm_version): slurmdbd as $user"
sunk_exec_as "$user" /usr/sbin/slurmdbd -D "$@"
