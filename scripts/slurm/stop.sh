#!/usr/bin/env bash
# Stop the one-node SLURM cluster that scripts/slurm/start.sh started.
set -uo pipefail
STATE=${QCSBENCH_SLURM_STATE:-/var/tmp/qcsbench-slurm}
scancel --user="$(id -un)" 2>/dev/null
for daemon in slurmd slurmctld; do
    pkill -x "$daemon" 2>/dev/null
done
for _ in $(seq 1 20); do
    pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break
    sleep 0.5
done
echo "SLURM stopped (state kept in $STATE)"
