#!/usr/bin/env bash
# Set a fresh machine up for hpcgan: system packages (when root), a virtual
# environment in .venv, the Python dependencies, and the native extension
# hpcgan._C (CPU kernels, plus CUDA kernels when a CUDA toolkit is found).
#
#   bash scripts/install.sh            # everything
#   HPCGAN_CUDA=0 bash scripts/install.sh   # CPU kernels only (faster build)
#   HPCGAN_VENV=/path/to/venv bash scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HPCGAN_VENV:-.venv}
PY=${PYTHON:-python3}

# --- system packages: MPI for mpi4py and the MPI tests; a C++ toolchain ------
need_apt=()
command -v mpirun >/dev/null 2>&1 || need_apt+=(openmpi-bin)
[ -e /usr/include/x86_64-linux-gnu/openmpi/mpi.h ] || [ -e /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h ] || need_apt+=(libopenmpi-dev)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v ninja >/dev/null 2>&1 || need_apt+=(ninja-build)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "[install] apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "[install] missing system packages: ${need_apt[*]} (run as root or ask your admin;" \
         "on a cluster: module load openmpi)" >&2
  fi
fi

# --- Python environment -------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
echo "[install] pip install -r requirements.txt"
"$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt

# --- the native extension -----------------------------------------------------
# torch's CUDA_HOME guess is wrong for an nvcc wrapper outside the toolkit.
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
echo "[install] pip install -e . (builds hpcgan._C against the venv's torch; HPCGAN_CUDA=${HPCGAN_CUDA:-auto}, CUDA_HOME=${CUDA_HOME:-none})"
"$VENV/bin/pip" install -q --disable-pip-version-check -e .
"$VENV/bin/hpcgan" doctor
