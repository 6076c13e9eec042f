#!/usr/bin/env bash
# The GPU check: run on one GPU of a GPU node after `bash scripts/install.sh`
# (under 8 minutes on one A100/H100: the steps' time limits add up to 7 min 40 s).
#
#   bash benchmarks/gpu_check.sh                 # results in benchmarks/results/
#   HPCGAN_GPU_CHECK_OUT=/scratch/me bash benchmarks/gpu_check.sh
#   srun --gres=gpu:1 --time=00:15:00 bash benchmarks/gpu_check.sh
#
# Steps (each one logged to <out>/gpu-check-<stamp>/<step>.log):
#   1. doctor      `hpcgan doctor` (torch, the extension's backends and archs)
#   2. cuda-tests  the CUDA test cases, `pytest -m cuda` with HPCGAN_REQUIRE_GPU=1
#                  (a missing GPU is a failure there, not a skip)
#   3. ops         benchmarks/ops.py on CUDA, native kernels against the
#                  plain-PyTorch references, float32 and float16 activations
#   4. train-step  benchmarks/train_step.py at the paper-256 preset (256 px,
#                  batch 32), native ops, --precision fp32 and mixed
#   5. classifier  benchmarks/classify_step.py: EfficientNet-B0 (224 px) and
#                  InceptionV3 (299 px) training images/s, AMP off, fp16, bf16
# and writes <out>/gpu-check-<stamp>.json and .md: every number, the
# published figure to compare against, and the status of each step.
#
# It fails (exit 1, the reason on stderr) before any step when torch sees no GPU
# or hpcgan._C has no CUDA kernels, and exits 1 at the end when any step failed
# (the others still run, so one run gives every number that can be had).
# Environment: HPCGAN_VENV (default .venv), HPCGAN_GPU_CHECK_OUT (default
# benchmarks/results), HPCGAN_GPU_CHECK_STEPS (default "doctor cuda-tests ops
# train-step classifier": a subset to rerun).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${HPCGAN_VENV:-.venv}
PY="$VENV/bin/python"
OUT=${HPCGAN_GPU_CHECK_OUT:-benchmarks/results}
STEPS=${HPCGAN_GPU_CHECK_STEPS:-"doctor cuda-tests ops train-step classifier"}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
DIR="$OUT/gpu-check-$STAMP"

die() {
  echo "gpu_check: FAILED: $*" >&2
  exit 1
}

[ -x "$PY" ] || die "no Python at $PY: run 'bash scripts/install.sh' first (or set HPCGAN_VENV)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# --- preconditions: a GPU that torch sees, and CUDA kernels in hpcgan._C -------
"$PY" - <<'EOF' || die "the GPU check needs a GPU and the CUDA kernels (see the line above)"
import sys

import torch

from hpcgan.ops import _native

if not torch.cuda.is_available():
    sys.exit(f"gpu_check: no GPU: torch {torch.__version__} (CUDA {torch.version.cuda}) sees none; "
             "run on a GPU node (srun --gres=gpu:1 ...) and check nvidia-smi")
if not _native.available():
    sys.exit(f"gpu_check: hpcgan._C is not built ({_native.import_error()}); run 'bash scripts/install.sh'")
if not _native.cuda_built():
    sys.exit("gpu_check: hpcgan._C was built without CUDA kernels; rebuild on a node with the CUDA toolkit: "
             "HPCGAN_CUDA=1 bash scripts/install.sh")
print(f"gpu_check: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"hpcgan._C archs {_native.cuda_archs() or '?'}")
EOF

mkdir -p "$DIR"
STATUS="$DIR/status.tsv"  # step, exit status, seconds
: >"$STATUS"
echo "gpu_check: writing to $DIR"

# run_step NAME LIMIT_SECONDS CMD...: log to $DIR/NAME.log, record the status, never abort
run_step() {
  local name=$1 limit=$2
  shift 2
  case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
  echo "gpu_check: [$name] $*"
  local t0=$SECONDS rc=0
  timeout --signal=INT --kill-after=20 "$limit" "$@" >"$DIR/$name.log" 2>&1 || rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >>"$STATUS"
  if [ "$rc" -eq 0 ]; then
    echo "gpu_check: [$name] ok ($((SECONDS - t0)) s)"
  else
    echo "gpu_check: [$name] FAILED with exit status $rc ($((SECONDS - t0)) s); last lines of $DIR/$name.log:" >&2
    tail -n 15 "$DIR/$name.log" >&2 || true
  fi
}

# --precision (train_step.py) and classify_step.py come with mixed precision; a
# checkout without them fails these steps with that reason.
train_steps() {
  "$PY" benchmarks/train_step.py --help | grep -q -- "--precision" ||
    { echo "benchmarks/train_step.py has no --precision flag: this checkout predates mixed precision"; return 2; }
  "$PY" benchmarks/train_step.py --case paper-256@256 --device cuda --impl native --precision fp32 mixed \
    --rounds 1 --warmup 2 --no-mem --json "$DIR/train_step.json"
}

classifier_speed() {
  [ -f benchmarks/classify_step.py ] ||
    { echo "no benchmarks/classify_step.py: this checkout predates the classifier AMP measurement"; return 2; }
  "$PY" benchmarks/classify_step.py --case efficientnet_b0@224 inception_v3@299 --device cuda --amp off fp16 bf16 \
    --batch 32 --rounds 1 --json "$DIR/classify_step.json"
}

run_step doctor 20 "$VENV/bin/hpcgan" doctor
run_step cuda-tests 150 env HPCGAN_REQUIRE_GPU=1 "$PY" -m pytest -m cuda -q -rfEs -p no:cacheprovider \
  --junitxml "$DIR/cuda-tests.xml" tests
run_step ops 80 bash -c "'$PY' benchmarks/ops.py --device cuda --reps 5 --json '$DIR/ops-float32.json' &&
  '$PY' benchmarks/ops.py --device cuda --reps 5 --dtype float16 --json '$DIR/ops-float16.json'"
export PY DIR
export -f train_steps classifier_speed  # timeout runs commands, not shell functions: bash -c runs them
run_step train-step 150 bash -c train_steps
run_step classifier 60 bash -c classifier_speed

# --- the report: JSON + markdown next to each other ----------------------------
"$PY" - "$DIR" "$OUT/gpu-check-$STAMP" <<'EOF'
import json
import os
import sys
import xml.etree.ElementTree as ET

import torch

from hpcgan.ops import _native

run_dir, base = sys.argv[1], sys.argv[2]
# Published figure: StyleGAN2-ADA at 256 px on one A100 (NVlabs stylegan3,
# docs/configs.md, the table of the old StyleGAN2-ADA configurations).
PUBLISHED = {"stylegan2-ada 256px, 1x A100, sec/kimg": 12.5}


def load(name):
    path = os.path.join(run_dir, name)
    if not os.path.isfile(path):
        return None
    with open(path) as fh:
        return json.load(fh)


status = {}
with open(os.path.join(run_dir, "status.tsv")) as fh:
    for line in fh:
        step, rc, secs = line.rstrip("\n").split("\t")
        status[step] = {"exit_status": int(rc), "seconds": int(secs), "ok": rc == "0",
                        "log": os.path.join(run_dir, f"{step}.log")}

tests = None
xml_path = os.path.join(run_dir, "cuda-tests.xml")
if os.path.isfile(xml_path):
    suite = ET.parse(xml_path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    tests = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}

report = {
    "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
    "hpcgan_cuda_archs": _native.cuda_archs(), "steps": status, "cuda_tests": tests,
    "ops": {dt: load(f"ops-{dt}.json") for dt in ("float32", "float16")},
    "train_step": load("train_step.json"), "classifier": load("classify_step.json"), "published": PUBLISHED,
}

md = [f"# GPU check: {report['gpu']}", "",
      f"torch {report['torch']}, CUDA {report['cuda']}, hpcgan._C archs {report['hpcgan_cuda_archs'] or '?'}", "",
      "| step | status | seconds |", "| --- | --- | ---: |"]
for step, st in status.items():
    md.append(f"| {step} | {'ok' if st['ok'] else 'FAILED (exit %d)' % st['exit_status']} | {st['seconds']} |")
if tests:
    md += ["", f"CUDA test cases: {tests['tests']} run, {tests['failures']} failed, {tests['errors']} errors, "
               f"{tests['skipped']} skipped"]
for dt, ops in report["ops"].items():
    if not ops:
        continue
    md += ["", f"## ops on CUDA, {dt} activations (median ms)", "",
           "| op | shape | native ms | ref ms | speedup |", "| --- | --- | ---: | ---: | ---: |"]
    md += [f"| {r['op']} | {r['shape']} | {r['native_ms']:.3f} | {r['ref_ms']:.3f} | {r['speedup']:.2f}x |"
           for r in ops["rows"]]
pub = PUBLISHED["stylegan2-ada 256px, 1x A100, sec/kimg"]
md += ["", "## StyleGAN2-ADA training step, paper-256 preset (sec/kimg, lower is better)", "",
       "| case | variant (impl/precision) | sec/kimg | published, 1x A100 |", "| --- | --- | ---: | ---: |"]
for r in (report["train_step"] or {}).get("rows", []):
    for variant, v in r.get("sec_per_kimg", {}).items():
        md.append(f"| {r.get('case', '?')} | {variant} | {v:.2f} | {pub} |")
md += ["", f"Published: StyleGAN2-ADA at 256 px, {pub} s/kimg on one A100 (NVlabs stylegan3 docs/configs.md, "
           "the old StyleGAN2-ADA configurations)."]
md += ["", "## Classifier training (images/s, higher is better)", "",
       "| case | variant (amp/layout) | images/s |", "| --- | --- | ---: |"]
for r in (report["classifier"] or {}).get("rows", []):
    for variant, v in r.get("images_per_s", {}).items():
        md.append(f"| {r.get('case', '?')} | {variant} | {v:.1f} |")

for ext, text in ((".json", json.dumps(report, indent=1)), (".md", "\n".join(md) + "\n")):
    tmp = base + ext + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, base + ext)
print("\n".join(md))
print(f"\ngpu_check: wrote {base}.json and {base}.md")
EOF

failed=$(awk -F'\t' '$2 != 0 {print $1}' "$STATUS" | tr '\n' ' ')
[ -z "$failed" ] || die "steps failed: $failed(logs in $DIR)"
echo "gpu_check: all steps passed"
