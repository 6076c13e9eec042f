#!/usr/bin/env bash
# Bring up a real SLURM cluster (slurmctld, slurmd, slurmdbd on MariaDB, munge) on this
# machine, without systemd, for the cluster tests and for trying the sbatch templates by hand.
#
#   sudo bash tests/cluster/slurm-up.sh [--nodes N] [STATE_DIR]   # default: 1 node, a new /tmp/hpcgan-slurm.XXXXXX
#   export SLURM_CONF=STATE_DIR/slurm.conf              # printed at the end (also linked from /etc/slurm)
#   bash tests/cluster/slurm-down.sh                    # stops it again and removes what it made
#
# --nodes 1: one node, `localhost` (127.0.0.1), slurmd beside slurmctld.
# --nodes N (N >= 2): N compute nodes hpcgan-node1..N, each a network namespace of its own
#   (`ip netns` hpcgan-n1..N) with its own address 10.231.0.(10+i) on a veth pair into a bridge
#   hpcgan-br0 (10.231.0.1, the head: slurmctld, slurmdbd, MariaDB, munge stay in the host's
#   namespace) and its own hostname (a UTS namespace: `unshare --uts` inside the network namespace), one
#   slurmd per namespace on the standard port. /etc/hosts gets one line per host, marked with the
#   state folder. Nothing leaves the machine: the bridge has no uplink and no route out.
#   HPCGAN_SLURM_SUBNET (default 10.231.0) picks another private /24.
#
# Needs root: it installs the Debian packages that are missing (slurmctld slurmd
# slurmdbd slurm-client munge mariadb-server) with apt and runs the daemons as root.
# Every file of the cluster (config, state, spool, pid files, logs, the MariaDB data)
# lives in STATE_DIR, unique per run; STATE_DIR/made lists the namespaces, links and
# host entries it created (slurm-down.sh removes exactly those). A cluster left running by an
# earlier run (found through the pointer file $HPCGAN_SLURM_POINTER, default
# /run/hpcgan-slurm/current) is stopped first, so the fixed ports (6817-6819, MariaDB 33306)
# are free. Prints the state folder on the last line of stdout.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
POINTER=${HPCGAN_SLURM_POINTER:-/run/hpcgan-slurm/current}
DBPORT=${HPCGAN_SLURM_DBPORT:-33306}
SUBNET=${HPCGAN_SLURM_SUBNET:-10.231.0}
log() { echo "[slurm-up] $*" >&2; }
die() { echo "[slurm-up] error: $*" >&2; exit 1; }

NODES=1
STATE_ARG=
while [ $# -gt 0 ]; do
  case $1 in
    --nodes) NODES=${2:?--nodes needs a number}; shift 2 ;;
    --nodes=*) NODES=${1#--nodes=}; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) die "unknown option $1 (usage: slurm-up.sh [--nodes N] [STATE_DIR])" ;;
    *) STATE_ARG=$1; shift ;;
  esac
done
[[ $NODES =~ ^[1-9][0-9]?$ ]] && [ "$NODES" -le 50 ] || die "--nodes must be 1..50, got '$NODES'"
[[ $SUBNET =~ ^(10|192\.168|172\.(1[6-9]|2[0-9]|3[01]))\.[0-9]+(\.[0-9]+)?$ ]] \
  || die "HPCGAN_SLURM_SUBNET=$SUBNET is not the first three octets of a private /24 (e.g. 10.231.0)"

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
if [ "$NODES" -gt 1 ]; then
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  command -v unshare >/dev/null 2>&1 || need+=(util-linux)
fi
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
STATE=${STATE_ARG:-$(mktemp -d /tmp/hpcgan-slurm.XXXXXX)}
mkdir -p "$STATE"/{ctld,spool,log,munge}
STATE=$(cd "$STATE" && pwd)
chmod 755 "$STATE"                       # mysql and munge must reach their subfolders
chown munge:munge "$STATE/munge"
: > "$STATE/made"                        # what this script created outside STATE, one "kind name" a line
NCPU=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)   # nproc alone follows OMP_NUM_THREADS
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
mkdir -p "$(dirname "$POINTER")"
echo "$STATE" > "$POINTER"               # from here on slurm-down.sh can undo what follows

# --- the network of a multi-node cluster ------------------------------------------------
HOSTS_MARK="# hpcgan-slurm $STATE"
node_name() { echo "hpcgan-node$1"; }
node_ns() { echo "hpcgan-n$1"; }
node_addr() { echo "$SUBNET.$((10 + $1))"; }
if [ "$NODES" -gt 1 ]; then
  HEAD=hpcgan-head HEAD_ADDR=$SUBNET.1 BRIDGE=hpcgan-br0
  for i in $(seq "$NODES"); do   # namespaces of a crashed run whose state folder is gone
    ns=$(node_ns "$i")
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
      [ -z "$(ip netns pids "$ns")" ] || die "network namespace $ns exists and has processes ($(ip netns pids "$ns" | tr '\n' ' ')): stop them or \`ip netns del $ns\` first"
      log "removing the empty network namespace $ns of an earlier run"; ip netns del "$ns"
    fi
  done
  ip link show "$BRIDGE" >/dev/null 2>&1 && die "a link named $BRIDGE exists already (an earlier cluster?): slurm-down.sh, or \`ip link del $BRIDGE\`"
  log "network: bridge $BRIDGE $HEAD_ADDR/24, $NODES namespaces"
  ip link add "$BRIDGE" type bridge && echo "link $BRIDGE" >> "$STATE/made"
  ip addr add "$HEAD_ADDR/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for i in $(seq "$NODES"); do
    ns=$(node_ns "$i") veth=hpcg-n$i
    ip netns add "$ns" && echo "netns $ns" >> "$STATE/made"
    ip link add "$veth" type veth peer name "$veth-c" && echo "link $veth" >> "$STATE/made"
    ip link set "$veth-c" netns "$ns"
    ip -n "$ns" link set "$veth-c" name eth0
    ip -n "$ns" addr add "$(node_addr "$i")/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip link set "$veth" master "$BRIDGE"
    ip link set "$veth" up
  done
  # host names: /etc/hosts is often a bind mount in containers, so rewrite it in place (no rename)
  { echo "$HEAD_ADDR $HEAD $HOSTS_MARK"
    for i in $(seq "$NODES"); do echo "$(node_addr "$i") $(node_name "$i") $HOSTS_MARK"; done; } >> /etc/hosts
  echo "hosts $HOSTS_MARK" >> "$STATE/made"
  CTLD_HOST="$HEAD($HEAD_ADDR)"
  NODE_LINES=$(for i in $(seq "$NODES"); do
    echo "NodeName=$(node_name "$i") NodeAddr=$(node_addr "$i") CPUs=$NCPU RealMemory=$((MEM_MB / NODES)) State=UNKNOWN"; done)
  PART_NODES="hpcgan-node[1-$NODES]"
  KIND="a $NODES-node test cluster (network namespaces hpcgan-n1..$NODES)"
else
  CTLD_HOST=localhost
  NODE_LINES="NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MB State=UNKNOWN"
  PART_NODES=localhost
  KIND="a single-node test cluster"
fi

cat > "$STATE/slurm.conf" <<CONF
# written by tests/cluster/slurm-up.sh: $KIND
ClusterName=hpcgan
SlurmctldHost=$CTLD_HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job may start again cred_expire+1 s later (default 121 s)
AuthInfo=cred_expire=5
StateSaveLocation=$STATE/ctld
# one spool, pid and log file per node (%n): the nodes share this file system
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
# node-local temporary files (srun --mpi=pmix puts its per-step folders there; /tmp is shared here)
TmpFS=$STATE/tmp/%n
# cgroups are not usable in these containers: jobs would "complete" without output
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
# CR_LLN: a job goes to the least loaded node, so jobs (and array tasks) spread over the nodes
SelectTypeParameters=CR_Core,CR_LLN
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
$NODE_LINES
PartitionName=debug Nodes=$PART_NODES Default=YES MaxTime=INFINITE State=UP
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

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local t=$1 what=$2; shift 2
  for _ in $(seq $((t * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what did not come up in ${t}s (logs in $STATE/log)"
}

# --- munge (reuse a running one: the key is the machine's) ------------------------
# (its socket is a file under /run/munge: the slurmd in the namespaces reach it too)
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
log "slurmdbd, slurmctld, slurmd x $NODES"
slurmdbd
wait_for 30 slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster hpcgan >/dev/null 2>&1 || true
if [ "$NODES" -gt 1 ]; then
  # slurmctld checks that its host name is SlurmctldHost: give it one (a UTS namespace of its own)
  unshare --uts sh -c "hostname $HEAD && exec slurmctld"
  wait_for 30 slurmctld scontrol ping
  for i in $(seq "$NODES"); do
    mkdir -p "$STATE/spool/$(node_name "$i")" "$STATE/tmp/$(node_name "$i")"
    # nsenter --net, not `ip netns exec`: that one remounts /sys, and slurmd needs the cgroup mounts under it
    nsenter --net="/run/netns/$(node_ns "$i")" unshare --uts \
      sh -c "hostname $(node_name "$i") && exec slurmd -N $(node_name "$i")"
  done
else
  slurmctld
  wait_for 30 slurmctld scontrol ping
  mkdir -p "$STATE/spool/localhost" "$STATE/tmp/localhost"
  slurmd -N localhost
fi
all_idle() { local s; s=$(sinfo -h -N -o %T); [ "$(grep -cx idle <<< "$s")" = "$NODES" ]; }
wait_for 60 "the $NODES node(s) (idle)" all_idle

# plain `sinfo`/`sbatch` find this cluster too (a config of the admin's is left alone)
mkdir -p /etc/slurm
if [ ! -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; then ln -sfn "$STATE/slurm.conf" /etc/slurm/slurm.conf; fi
log "up: $(sinfo -h -o '%P %D node(s) %N %c cpus %T' | tr '\n' ' ') - export SLURM_CONF=$STATE/slurm.conf"
echo "$STATE"
