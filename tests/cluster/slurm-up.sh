#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd on MariaDB,
# munge) on this machine, without systemd, for the cluster tests and for trying the
# sbatch templates by hand.
#
#   sudo bash tests/cluster/slurm-up.sh [STATE_DIR]     # default: a new /tmp/hpcgan-slurm.XXXXXX
#   export SLURM_CONF=STATE_DIR/slurm.conf              # printed at the end (also linked from /etc/slurm)
#   bash tests/cluster/slurm-down.sh                    # stops it again
#
# Needs root: it installs the Debian packages that are missing (slurmctld slurmd
# slurmdbd slurm-client munge mariadb-server) with apt and runs the daemons as root.
# Every file of the cluster (config, state, spool, pid files, logs, the MariaDB data)
# lives in STATE_DIR, unique per run. A cluster left running by an earlier run (found
# through the pointer file $HPCGAN_SLURM_POINTER, default /run/hpcgan-slurm/current) is
# stopped first, so the fixed ports (6817-6819, MariaDB 33306) are free.
# Prints the state folder on the last line of stdout.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
POINTER=${HPCGAN_SLURM_POINTER:-/run/hpcgan-slurm/current}
DBPORT=${HPCGAN_SLURM_DBPORT:-33306}
log() { echo "[slurm-up] $*" >&2; }
die() { echo "[slurm-up] error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages with apt and starts the SLURM daemons)"

# --- an earlier cluster of ours: stop it ---------------------------------------
if [ -s "$POINTER" ]; then
  log "stopping the cluster of an earlier run ($(cat "$POINTER"))"
  bash "$HERE/slurm-down.sh" || log "could not stop it cleanly; continuing"
fi

# --- packages -------------------------------------------------------------------
need=()
for pair in slurmctld:slurmctld slurmd:slurmd slurmdbd:slurmdbd sbatch:slurm-client munged:munge \
            mariadbd:mariadb-server; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d (containers) keeps the packages from starting their services; that is what we want.
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null;
                                  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }

# --- the state folder -------------------------------------------------------------
STATE=${1:-$(mktemp -d /tmp/hpcgan-slurm.XXXXXX)}
mkdir -p "$STATE"/{ctld,spool,log,munge}
STATE=$(cd "$STATE" && pwd)
chmod 755 "$STATE"                       # mysql and munge must reach their subfolders
chown munge:munge "$STATE/munge"
NCPU=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)   # nproc alone follows OMP_NUM_THREADS
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))

cat > "$STATE/slurm.conf" <<CONF
# written by tests/cluster/slurm-up.sh: a single-node test cluster
ClusterName=hpcgan
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job may start again cred_expire+1 s later (default 121 s)
AuthInfo=cred_expire=5
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# cgroups are not usable in these containers: jobs would "complete" without output
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
# schedule often: a requeued job or the next array task starts within seconds
SchedulerParameters=sched_interval=2
ReturnToService=2
MpiDefault=none
JobRequeue=1
KillWait=5
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

cat > "$STATE/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DBPORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
chmod 600 "$STATE/slurmdbd.conf"
export SLURM_CONF=$STATE/slurm.conf
mkdir -p "$(dirname "$POINTER")"
echo "$STATE" > "$POINTER"

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local t=$1 what=$2; shift 2
  for _ in $(seq $((t * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what did not come up in ${t}s (logs in $STATE/log)"
}

# --- munge (reuse a running one: the key is the machine's) ------------------------
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log"
  wait_for 10 munged sh -c 'munge -n | unmunge'
  echo "$STATE/munge/munged.pid" > "$STATE/munged.pidfile"
fi

# --- MariaDB for slurmdbd, in the state folder ----------------------------------------
log "MariaDB in $STATE/db (port $DBPORT)"
mariadb-install-db --user=mysql --datadir="$STATE/db" --auth-root-authentication-method=socket \
  --skip-test-db > "$STATE/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (see $STATE/log/mariadb-install.log)"
mariadbd --user=mysql --datadir="$STATE/db" --socket="$STATE/db/mysql.sock" --port="$DBPORT" \
  --bind-address=127.0.0.1 --pid-file="$STATE/db/mariadbd.pid" --log-error="$STATE/db/mariadbd.err" \
  --innodb-buffer-pool-size=64M --skip-name-resolve > /dev/null 2>&1 &
wait_for 30 MariaDB mariadb --socket="$STATE/db/mysql.sock" -u root -e "SELECT 1"
mariadb --socket="$STATE/db/mysql.sock" -u root <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# --- SLURM -----------------------------------------------------------------------------
log "slurmdbd, slurmctld, slurmd"
slurmdbd
wait_for 30 slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster hpcgan >/dev/null 2>&1 || true
slurmctld
wait_for 30 slurmctld scontrol ping
slurmd -N localhost
wait_for 60 "the node (idle)" sh -c '[ "$(sinfo -h -o %T)" = idle ]'

# plain `sinfo`/`sbatch` find this cluster too (a config of the admin's is left alone)
mkdir -p /etc/slurm
if [ ! -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; then ln -sfn "$STATE/slurm.conf" /etc/slurm/slurm.conf; fi
log "up: $(sinfo -h -o '%P %D %c cpus %T') - export SLURM_CONF=$STATE/slurm.conf"
echo "$STATE"
