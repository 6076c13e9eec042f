#!/usr/bin/env bash
# Stop the test cluster that tests/cluster/slurm-up.sh started, by the pids in its pid files.
#
#   bash tests/cluster/slurm-down.sh [STATE_DIR]    # default: the cluster named by the pointer file
#
# Jobs still queued or running are cancelled first. The state folder is removed
# afterwards unless HPCGAN_SLURM_KEEP=1 (then its log/ folder is kept for reading).
set -uo pipefail
POINTER=${HPCGAN_SLURM_POINTER:-/run/hpcgan-slurm/current}
STATE=${1:-$(cat "$POINTER" 2>/dev/null || true)}
log() { echo "[slurm-down] $*" >&2; }
if [ -z "$STATE" ] || [ ! -d "$STATE" ]; then
  log "no cluster to stop (state folder '${STATE}' missing)"
  [ -n "$STATE" ] && [ "$(cat "$POINTER" 2>/dev/null)" = "$STATE" ] && rm -f "$POINTER"
  exit 0
fi
export SLURM_CONF=$STATE/slurm.conf

if [ -s "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
  jobs=$(squeue -h -o %A 2>/dev/null | sort -u)
  if [ -n "$jobs" ]; then scancel $jobs 2>/dev/null; sleep 1; fi
fi

stop() {  # stop NAME PIDFILE: SIGTERM, then SIGKILL after 15 s
  local name=$1 pidfile=$2 pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || { log "stopped $name ($pid)"; return 0; }; sleep 0.1; done
  log "$name ($pid) ignored SIGTERM; SIGKILL"
  kill -KILL "$pid" 2>/dev/null
}
stop slurmd "$STATE/slurmd.pid"
stop slurmctld "$STATE/slurmctld.pid"
stop slurmdbd "$STATE/slurmdbd.pid"
stop mariadbd "$STATE/db/mariadbd.pid"
[ -s "$STATE/munged.pidfile" ] && stop munged "$(cat "$STATE/munged.pidfile")"

[ "$(cat "$POINTER" 2>/dev/null)" = "$STATE" ] && rm -f "$POINTER"
[ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$STATE/slurm.conf" ] && rm -f /etc/slurm/slurm.conf
if [ "${HPCGAN_SLURM_KEEP:-0}" = 1 ]; then
  log "kept $STATE/log"
else
  rm -rf "$STATE"
fi
exit 0
