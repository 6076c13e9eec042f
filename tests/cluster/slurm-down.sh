#!/usr/bin/env bash
# Stop the test cluster that tests/cluster/slurm-up.sh started, by the pids in its pid files,
# and remove what it made: the network namespaces, links and /etc/hosts lines listed in
# STATE_DIR/made (by their names; nothing else is touched).
#
#   bash tests/cluster/slurm-down.sh [STATE_DIR]    # default: the cluster named by the pointer file
#
# Jobs still queued or running are cancelled first. The state folder is removed
# afterwards unless HPCGAN_SLURM_KEEP=1 (then it is kept, logs in STATE_DIR/log).
set -uo pipefail
POINTER=${HPCGAN_SLURM_POINTER:-/run/hpcgan-slurm/current}
STATE=${1:-$(cat "$POINTER" 2>/dev/null || true)}
log() { echo "[slurm-down] $*" >&2; }
forget() {  # drop the pointer and the /etc/slurm link when they name this cluster
  [ "$(cat "$POINTER" 2>/dev/null)" = "$STATE" ] && rm -f "$POINTER"
  [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$STATE/slurm.conf" ] && rm -f /etc/slurm/slurm.conf
  return 0
}
if [ -z "$STATE" ] || [ ! -d "$STATE" ]; then
  log "no cluster to stop (state folder '${STATE}' missing)"
  [ -n "$STATE" ] && forget
  exit 0
fi
export SLURM_CONF=$STATE/slurm.conf

if [ -s "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
  jobs=$(squeue -h -o %A 2>/dev/null | sort -u)
  if [ -n "$jobs" ]; then
    scancel $jobs 2>/dev/null
    for _ in $(seq 100); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done  # KillWait=5
  fi
fi

# SIGTERM to every daemon at once, then wait for each (SIGKILL after 15 s)
pids=()
for f in "$STATE"/slurmd-*.pid "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/slurmdbd.pid" \
         "$STATE/db/mariadbd.pid" "$(cat "$STATE/munged.pidfile" 2>/dev/null)"; do
  [ -n "$f" ] && [ -s "$f" ] || continue
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || continue
  kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
done
for pid in "${pids[@]}"; do
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then log "$pid ignored SIGTERM; SIGKILL"; kill -KILL "$pid" 2>/dev/null; fi
done
log "stopped ${#pids[@]} daemon(s) of $STATE"
# a job step that slurmd could not reap leaves its slurmstepd behind: find it (and anything else of this
# cluster) by its working directory or open files inside STATE, and stop it by its pid
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = $$ ] || [ "$pid" = "$PPID" ] && continue
  if { readlink "$p/cwd"; readlink "$p"/fd/*; } 2>/dev/null | grep -q "^$STATE/"; then
    log "leftover process $pid ($(tr '\0' ' ' < "$p/cmdline" 2>/dev/null | cut -c1-60)); SIGKILL"
    kill -KILL "$pid" 2>/dev/null
  fi
done

# what slurm-up.sh made outside STATE, newest first: namespaces (and any process still in one), links, hosts
if [ -s "$STATE/made" ]; then
  tac "$STATE/made" | while read -r kind name; do
    case $kind in
      netns)
        for pid in $(ip netns pids "$name" 2>/dev/null); do
          log "process $pid still in namespace $name ($(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-60)); SIGKILL"
          kill -KILL "$pid" 2>/dev/null
        done
        for _ in $(seq 50); do [ -z "$(ip netns pids "$name" 2>/dev/null)" ] && break; sleep 0.1; done
        ip netns del "$name" 2>/dev/null && log "removed network namespace $name" ;;
      link)
        ip link del "$name" 2>/dev/null && log "removed link $name" ;;
      hosts)
        if grep -qF -- "$name" /etc/hosts; then   # in place: /etc/hosts may be a bind mount
          kept=$(grep -vF -- "$name" /etc/hosts)
          printf '%s\n' "$kept" > /etc/hosts && log "removed the /etc/hosts lines marked '$name'"
        fi ;;
    esac
  done
fi
forget
if [ "${HPCGAN_SLURM_KEEP:-0}" = 1 ]; then
  log "kept $STATE"
else
  rm -rf "$STATE"
fi
exit 0
