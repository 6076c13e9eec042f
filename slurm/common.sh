# Sourced by the sbatch templates (not a job itself):
#
#   source "${HPCGAN_SLURM_DIR:-$(dirname "$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' | head -1)")}/common.sh"
#
# (sbatch runs a spooled copy of the script, so this folder is found from the job's
# Command; set HPCGAN_SLURM_DIR when that does not work.) It sets HPCGAN (the command;
# default `hpcgan` on PATH) and defines `requeueable CMD...`.
HPCGAN=${HPCGAN:-hpcgan}   # or /path/to/repo/.venv/bin/hpcgan
export HPCGAN
# HDF5 file locking is unreliable on Lustre/GPFS; hpcgan opens shards with locking off.
export HDF5_USE_FILE_LOCKING=FALSE

# requeueable CMD...: run CMD so that the job survives its time limit. With
# `#SBATCH --signal=B:USR2@SECONDS --requeue`, SLURM sends SIGUSR2 to this batch shell
# SECONDS before the limit (USR1 is left to NCCL); it is forwarded to CMD (srun passes
# it on to every task). hpcgan train-gan then writes a snapshot and exits with status 3;
# the other stages stop and resume from what they wrote when run again (preprocess
# keeps complete shards, an experiment task resumes from its last.pt). When the signal
# came, or CMD exited with status 3 (a snapshot after a preemption), the job is requeued
# (`scontrol requeue`) and starts again from the top. Otherwise returns CMD's status.
requeueable() {
  local child status=0
  _hpcgan_signalled=0
  "$@" &
  child=$!
  trap '_hpcgan_signalled=1; kill -USR2 '"$child"' 2>/dev/null' USR2
  trap '_hpcgan_signalled=1; kill -TERM '"$child"' 2>/dev/null' TERM
  wait "$child" || status=$?
  while kill -0 "$child" 2>/dev/null; do status=0; wait "$child" || status=$?; done  # wait returns early on a signal
  trap - USR2 TERM
  if [ "$_hpcgan_signalled" = 1 ] || [ "$status" -eq 3 ]; then
    echo "[hpcgan] job ${SLURM_JOB_ID:-?} stopped before its end (signal: $_hpcgan_signalled, status $status);" \
         "requeueing it (restart count so far ${SLURM_RESTART_COUNT:-0})"
    scontrol requeue "$SLURM_JOB_ID"
    sleep 60 &   # the requeue ends this job; do not let later lines run meanwhile
    wait $!
    exit 0
  fi
  return "$status"
}
