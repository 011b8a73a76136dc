#!/usr/bin/env bash
# Every GPU figure in one call, on a bare lent machine (Python with torch, torchvision, timm, pluggy, typer, rich,
# safetensors and onnxruntime; no internet):
#   1. installs the other dependencies from wheels in WHEELS (default: .whl/ in the checkout) into a private
#      folder on PYTHONPATH, then the project itself with `pip install --no-deps -e .`;
#   2. writes the machine's description (env.txt);
#   3. measures the machine's peak and each method's share of it (benchmarks/limit.py: limit-DEVICE.md);
#      runs the whole test suite, slow and CUDA tests included (tests.log, tests.xml);
#   4. runs `nst bench --device DEVICE` (CUDA: the GPU plan, sized for under 8 minutes on one H200; CPU: --quick)
#      into OUT/bench, and the benchmark scripts' CUDA tables (gatys_cuda, johnson, fast, tiled, styles, nnst,
#      analogy, studio) into OUT/*.md.
# Every step runs even when an earlier one failed; the script's exit code is the first failure's.
#
# Usage: bash benchmarks/gpu.sh OUT [--device cuda|cpu] [--wheels DIR] [--no-install] [--tests "PYTEST ARGS"]
#        [--bench-timeout SECONDS]
# PYTHON (default python3) is the interpreter used throughout.
# CI runs it on the CPU: bash benchmarks/gpu.sh OUT --device cpu --no-install --tests "tests/test_losses.py"
set -uo pipefail
cd "$(dirname "$0")/.."

out="${1:?usage: benchmarks/gpu.sh OUT [--device cuda|cpu] [--wheels DIR] [--no-install] [--tests ARGS]}"
shift
py="${PYTHON:-python3}"
device=cuda wheels=.whl install=1 tests="-m 'slow or not slow'" bench_timeout=480
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --wheels) wheels="$2"; shift 2 ;;
        --no-install) install=0; shift ;;
        --tests) tests="$2"; shift 2 ;;
        --bench-timeout) bench_timeout="$2"; shift 2 ;;
        *) echo "error: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
    echo "error: $out is not empty; give a new folder" >&2
    exit 2
fi
mkdir -p "$out"
status=0
step() {  # step NAME COMMAND...: run, log, remember the first failure
    local name="$1"; shift
    local start=$SECONDS
    echo "== $name" | tee -a "$out/steps.log"
    "$@"
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$out/steps.log"
    if [ $rc -ne 0 ] && [ $status -eq 0 ]; then status=$rc; fi
}

if [ "$install" = 1 ]; then
    if compgen -G "$wheels/*.whl" > /dev/null; then
        step "install wheels from $wheels" "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target /tmp/nst-site "$wheels"/*.whl
        export PYTHONPATH=/tmp/nst-site${PYTHONPATH:+:$PYTHONPATH}
    fi
    step "install nst" "$py" -m pip install -q --no-deps --no-build-isolation -e .
fi

describe() {  # describe FILE: versions, devices, nvidia-smi
    {
        "$py" -c '
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| cudnn", torch.backends.cudnn.version())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
print("cpu threads", torch.get_num_threads())
'
        if command -v nvidia-smi > /dev/null; then nvidia-smi; fi
    } > "$1" 2>&1
}
step "describe the machine" describe "$out/env.txt"

run_tests() {
    eval "\"\$py\" -m pytest $tests -q -rs -p no:cacheprovider --junitxml \"\$out/tests.xml\"" > "$out/tests.log" 2>&1
    local rc=$?
    tail -3 "$out/tests.log"
    return $rc
}
if [ "$device" = cpu ]; then  # a CPU's limit at small sizes: the full table takes tens of minutes on a small CPU
    limit_args=(--sizes 128 --feed-forward-size 128 --analogy-size 64 --steps 1 --repeats 1)
else
    limit_args=(--sizes 512 1024)
fi
step "the machine's limit" timeout 300 "$py" benchmarks/limit.py --device "$device" "${limit_args[@]}" \
    --out "$out/limit-$device.md"
step "tests" run_tests

if [ "$device" = cpu ]; then
    step "nst bench (cpu, quick)" timeout "$bench_timeout" "$py" -m nst.cli bench --quick --device cpu \
        --methods gatys,johnson,arbitrary --sizes 32,48 --steps 3 --train-steps 3 -o "$out/bench" -q
else
    step "nst bench ($device)" timeout "$bench_timeout" "$py" -m nst.cli bench --device "$device" -o "$out/bench" -q \
        --max-time $((bench_timeout - 60))
    step "gatys variants" timeout 120 "$py" benchmarks/gatys_cuda.py --device "$device" --out "$out/gatys-variants.md"
    step "johnson" timeout 120 "$py" benchmarks/johnson.py --sizes 256 512 1024 --steps 20 --rounds 1 --out "$out/johnson-cuda.md"
    step "fast (arbitrary)" timeout 150 "$py" benchmarks/fast.py --sizes 512 1024 --runs 3 --limit 4 --devices cpu "$device" \
        --out "$out/fast-cuda.md"
    step "tiled feed-forward" timeout 120 "$py" benchmarks/tiled.py --device "$device" --sizes 2048 4096 --tiles 512 1024 \
        --repeats 2 --out "$out/tiled-cuda.md"
    step "style scalability" timeout 120 "$py" benchmarks/styles.py --device "$device" --out "$out/styles-cuda.md"
    step "nnst against gatys" timeout 300 "$py" benchmarks/nnst.py --size 1024 --repeats 2 --pairs 4 --metric none \
        --sheet "$out/nnst-cuda.jpg" --out "$out/nnst-cuda.md"
    step "analogy" timeout 120 "$py" benchmarks/analogy.py --devices "$device" --sizes 224 448 --out "$out/analogy-cuda.md"
    step "studio default job" timeout 120 "$py" benchmarks/studio.py --device "$device" --jobs gatys:512:300 \
        --out "$out/studio-cuda.md"
fi
echo "results in $out (first failure: exit $status)"
exit $status
