#!/usr/bin/env bash
# Bring up a one-node SLURM cluster with accounting (munge, MariaDB, slurmdbd, slurmctld,
# slurmd) on a Debian-like machine, as root. Idempotent: a second call finds the daemons
# running and only waits for the node. Every daemon it starts is recorded by pid in
# $STATE/*.pid, and slurm_down.sh stops exactly those.
set -euo pipefail
STATE=${VGBENCH_SLURM_STATE:-/run/vgbench-slurm}
CLUSTER=vgbench
[ "$(id -u)" = 0 ] || { echo "slurm_up.sh: must run as root" >&2; exit 2; }
command -v apt-get >/dev/null || { echo "slurm_up.sh: needs apt-get (Debian/Ubuntu)" >&2; exit 2; }
mkdir -p "$STATE"

alive() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || true
  apt-get install -y -q slurmctld slurmd slurm-client munge slurmdbd mariadb-server >/dev/null
fi

HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(awk '/MemAvailable/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge

# munge with a generated key
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 400 /etc/munge/munge.key
if ! alive munged; then
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$STATE/munged.pid"
fi

# MariaDB with the accounting database
if ! alive mariadbd; then
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
  (setsid mariadbd --user=mysql --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/vgbench.pid \
     >/var/log/slurm/mariadb.log 2>&1 &)
  for _ in $(seq 100); do mariadb -e "select 1" >/dev/null 2>&1 && break; sleep 0.2; done
  cp /run/mysqld/vgbench.pid "$STATE/mariadbd.pid"
fi
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'vgbench'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=vgbench
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
CONF
chmod 600 /etc/slurm/slurmdbd.conf

cat > /etc/slurm/slurm.conf <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

if ! alive slurmdbd; then
  slurmdbd
  for _ in $(seq 100); do [ -s /run/slurmdbd.pid ] && sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.2; done
  cp /run/slurmdbd.pid "$STATE/slurmdbd.pid"
fi
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
if ! alive slurmctld; then
  slurmctld
  for _ in $(seq 100); do [ -s /run/slurmctld.pid ] && break; sleep 0.1; done
  cp /run/slurmctld.pid "$STATE/slurmctld.pid"
fi
if ! alive slurmd; then
  slurmd
  for _ in $(seq 100); do [ -s /run/slurmd.pid ] && break; sleep 0.1; done
  cp /run/slurmd.pid "$STATE/slurmd.pid"
fi
for _ in $(seq 120); do
  if sinfo -h -N -o "%T" 2>/dev/null | grep -qx idle; then
    echo "slurm_up.sh: node $HOST idle ($CPUS CPUs, ${MEM} MB), cluster $CLUSTER with accounting"
    exit 0
  fi
  scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm_up.sh: the node did not become idle; see /var/log/slurm/" >&2
sinfo -N -l >&2 || true
exit 1
