#!/bin/bash
# slurmrestd: start munged, then exec slurmrestd as the unprivileged user `slurmrestd` on
# 0.0.0.0:$SLURMRESTD_PORT. Clients authenticate with JWT (X-SLURM-USER-NAME/-TOKEN headers), which
# needs AuthAltTypes=auth/jwt in slurm.conf.
#   SLURMRESTD_PLUGINS  the -s plugin list; default: openapi/v0.0.38 on 22.05 (the newest that works
#                       without slurmdbd), openapi/slurmctld on 23.02 and newer
#   SLURMRESTD_AUTH     the -a authentication plugin; default rest_auth/jwt
# Extra arguments go to slurmrestd.
. /usr/local/lib/sunk/sunk-lib.sh

sunk_require_conf
sunk_start_munged

if [ -z "${SLURMRESTD_PLUGINS:-}" ]; then
    if sunk_slurm_at_least 23.02; then
        SLURMRESTD_PLUGINS=openapi/slurmctld
    else
        SLURMRESTD_PLUGINS=openapi/v0.0.38
    fi
fi
export SLURM_JWT=daemon
sunk_log "Slurm $(sunk_slurm_version): slurmrestd ($SLURMRESTD_PLUGINS) on :$SLURMRESTD_PORT as slurmrestd"
cd /tmp
sunk_exec_as slurmrestd /usr/sbin/slurmrestd -s "$SLURMRESTD_PLUGINS" -a "${SLURMRESTD_AUTH:-rest_auth/jwt}" \
    "$@" "0.0.0.0:$SLURMRESTD_PORT"
