#!/bin/bash
# slurmctld: install the munge key, start munged, prepare StateSaveLocation, then run slurmctld as
# SlurmUser in the foreground, started again in place after `scontrol shutdown` (see sunk_supervise_as).
# Extra arguments go to slurmctld (e.g. -vvv).
. /usr/local/lib/sunk/sunk-lib.sh

sunk_require_conf
sunk_start_munged
sunk_install_jwt_key

user="$(sunk_conf_value SlurmUser root)"
state="$(sunk_conf_value StateSaveLocation /var/spool/slurmctld)"
install -d -o "$user" -g "$user" -m 0755 "$state" /run/slurm
chown "$user:" "$state"
pidfile="$(sunk_conf_value SlurmctldPidFile /run/slurmctld.pid)"
install -d -o "$user" -g "$user" -m 0755 "$(dirname "$pidfile")"
logfile="$(sunk_conf_value SlurmctldLogFile)"
[ -z "$logfile" ] || install -d -o "$user" -g "$user" -m 0755 "$(dirname "$logfile")"

sunk_log "Slurm $(sunk_slurm_version): slurmctld as $user, state in $state"
sunk_supervise_as "$user" /usr/sbin/slurmctld -D "$@"
exit $?
