#!/usr/bin/env bash
# The whole study as a chain of SLURM jobs, each starting when the one before ended well
# (--dependency=afterok):
#
#   preprocess (MPI) -> train-gan -> generate -> experiment grid (job array) -> report
#
#   bash slurm/pipeline.sh RAW WORK EXPERIMENT_CONFIG [sbatch options for every job, e.g. --account=A --partition=P]
#
# RAW is the Kaggle download, WORK a folder on the shared file system. The jobs write
# WORK/shards (preprocess), WORK/gan (train-gan runs), WORK/synth (generated shards); the
# experiment config must name them (data: WORK/shards, gan_data: [WORK/synth]); its
# outdir/name is the experiment directory that gets results.json and report/.
# Settings (environment):
#   CLASSES=COVID,Normal  RESOLUTION=256  PREPROCESS_FLAGS=""     hpcgan preprocess
#   GAN_CONFIG=configs/gan/paper-256.yaml  GAN_FLAGS="--cond"     hpcgan train-gan
#   GEN_FLAGS="--n 2000"                                          hpcgan generate
#   PARALLEL=8                                                    array tasks at once (%K)
#   PREPROCESS_SBATCH, GAN_SBATCH, GEN_SBATCH, GRID_SBATCH, REPORT_SBATCH: extra sbatch options per job
#   HPCGAN=/path/to/.venv/bin/hpcgan when hpcgan is not on PATH
# Prints the job ids; `squeue --me` follows them. A job that fails cancels nothing by
# itself: the later ones stay pending with reason DependencyNeverSatisfied (scancel them).
set -euo pipefail
usage="usage: bash slurm/pipeline.sh RAW WORK EXPERIMENT_CONFIG [sbatch options]"
RAW=${1:?$usage}; WORK=${2:?$usage}; EXP=${3:?$usage}
shift 3
HERE=$(cd "$(dirname "$0")" && pwd)
export HPCGAN=${HPCGAN:-hpcgan} HPCGAN_SLURM_DIR=$HERE
CLASSES=${CLASSES:-COVID,Normal}; RESOLUTION=${RESOLUTION:-256}; PARALLEL=${PARALLEL:-8}
export CONFIG=${GAN_CONFIG:-configs/gan/paper-256.yaml}
read -r -a pre_flags <<< "${PREPROCESS_FLAGS:-}"
read -r -a gan_flags <<< "${GAN_FLAGS:---cond}"
read -r -a gen_flags <<< "${GEN_FLAGS:---n 2000}"
read -r -a pre_sb <<< "${PREPROCESS_SBATCH:-}"; read -r -a gan_sb <<< "${GAN_SBATCH:-}"
read -r -a gen_sb <<< "${GEN_SBATCH:-}"; read -r -a grid_sb <<< "${GRID_SBATCH:-}"; read -r -a rep_sb <<< "${REPORT_SBATCH:-}"
mkdir -p "$WORK"

# the grid's size and directory, from the config (no data needed yet)
listing=$("$HPCGAN" experiment "$EXP" --list)
N=$(tail -1 <<< "$listing" | cut -d' ' -f1)
EXPDIR=$(tail -1 <<< "$listing" | sed -n 's/.*experiment directory //p')
[ "$N" -ge 1 ] 2>/dev/null || { echo "cannot read the number of tasks from \`hpcgan experiment $EXP --list\`" >&2; exit 2; }

pre=$(sbatch --parsable "$@" "${pre_sb[@]}" "$HERE/preprocess-mpi.sbatch" "$RAW" "$WORK/shards" \
      --classes "$CLASSES" --resolution "$RESOLUTION" "${pre_flags[@]}")
gan=$(sbatch --parsable "$@" "${gan_sb[@]}" --dependency=afterok:"$pre" "$HERE/train-gan.sbatch" \
      "$WORK/shards" "$WORK/gan" "${gan_flags[@]}")
gen=$(sbatch --parsable "$@" "${gen_sb[@]}" --dependency=afterok:"$gan" "$HERE/generate.sbatch" \
      "$WORK/gan" "$WORK/synth" "${gen_flags[@]}")
grid=$(sbatch --parsable "$@" "${grid_sb[@]}" --dependency=afterok:"$gen" --array=0-$((N - 1))%"$PARALLEL" \
       "$HERE/experiment-array.sbatch" "$EXP")
rep=$(sbatch --parsable "$@" "${rep_sb[@]}" --dependency=afterok:"$grid" "$HERE/report.sbatch" "$EXPDIR")
echo "preprocess $pre"
echo "train-gan $gan"
echo "generate $gen"
echo "experiment $grid ($N tasks, $PARALLEL at once)"
echo "report $rep ($EXPDIR/report)"
