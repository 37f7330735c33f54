#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (Debian's slurmctld, slurmd and munge),
# for running and testing `python run.py -m hydra/launcher=slurm ...` locally.
#
#   sudo scripts/slurm/start.sh      # installs the packages if missing, writes slurm.conf, waits until the node is idle
#   scripts/slurm/stop.sh
#
# State and logs go to $QCSBENCH_SLURM_STATE (default /var/tmp/qcsbench-slurm).
set -euo pipefail

STATE=${QCSBENCH_SLURM_STATE:-/var/tmp/qcsbench-slurm}
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
NODE=$(hostname -s)

if [ "$(id -u)" != 0 ]; then
    echo "error: start.sh must run as root (it starts the SLURM and munge daemons)." >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    echo "installing slurmctld, slurmd and munge from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

mkdir -p "$STATE/ctld" "$STATE/slurmd" "$(dirname "$CONF")"

# munge: one key shared by the controller and the node (here the same machine).
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
fi
munge -n | unmunge >/dev/null

CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 1024 ))

cat > "$CONF" <<CONF
# Written by qcsbench scripts/slurm/start.sh: a one-node cluster on $NODE.
ClusterName=qcsbench
SlurmctldHost=$NODE
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it starts again (default 120)
AuthInfo=cred_expire=10
CryptoType=crypto/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# requeue of jobs that time out or are preempted (submitit checkpointing)
JobRequeue=1
KillWait=10
MinJobAge=300
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF

if ! pgrep -x slurmctld >/dev/null; then
    slurmctld -f "$CONF"
fi
if ! pgrep -x slurmd >/dev/null; then
    slurmd -f "$CONF"
fi

for _ in $(seq 1 60); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
    case "$state" in
        idle*|mixed*|allocated*) echo "SLURM is up: node $NODE is $state (partition debug)"; exit 0 ;;
        down*|drain*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
done
echo "error: the SLURM node $NODE did not become idle within 60 s; see $STATE/slurmctld.log and $STATE/slurmd.log" >&2
exit 1
