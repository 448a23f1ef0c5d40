#!/bin/bash
# login: install the munge key and start munged (the client commands sign their requests with it),
# then run the command (default: sleep forever; use `docker compose exec login sbatch ...`).
. /usr/local/lib/sunk/sunk-lib.sh

sunk_require_conf
sunk_start_munged
sunk_log "Slurm $(sunk_slurm_version): login ready"
exec "$@"
