#!/usr/bin/env bash
# Every GPU check of the attention-library issues (3 and 4), in one prepared run for a lent device.
#
# Usage, from the repository root on the GPU machine (its Python has torch, lightning, torchmetrics):
#     bash benchmarks/gpu_session.sh 2>&1 | tee gpu_session.log
# Each step has its own time limit, so one hang cannot eat the session; the limits add up to 9.75
# minutes (run it with the device tool's timeout_s=600). Record the device line printed first next to
# every number taken from here.
set -u
export PYTHONPATH="${PWD}${PYTHONPATH:+:$PYTHONPATH}"

step() {
    local limit=$1
    shift
    echo
    echo "## \$ $* (limit ${limit} s)"
    local start=$SECONDS
    timeout "$limit" "$@"
    echo "(exit $?, $((SECONDS - start)) s)"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"

# Fast steps first, so that a run cut short still brings back most verdicts.
# Issue 3: dense MultiHeadAttention within 5 % of the fastest SDPA backend.
step 45 python -m benchmarks.sdpa_backends
# Issue 3: the SDPA fast path's bf16/fp16 error against the eager reference's.
step 45 python -m benchmarks.attention_precision --device cuda
# Issue 4: causal Lightning / linear attention against non-causal linear attention and dense SDPA at 64k.
step 120 python -m benchmarks.attention --device cuda --dtype bf16 \
    --mechanisms LinearAttention LightningAttention --patterns noncausal_self causal_self \
    --lengths 16384 65536 --dense-max-n 65536 --dim 1024 --heads 16 --batch 1 --repeats 5 --warmup 2
step 15 python -m benchmarks.causal_linear_goal runs/bench/attention/attention.json --n 65536
# Issue 3: neighbourhood attention speed (dense SDPA, Flex row-major / tiled, NATTEN if installed, our
# Triton kernels with their candidate tiles) and precision (bf16 error ≤ 1.1× the eager reference's).
# Flex compiles each block mask and kernel first (tens of seconds each), hence the longest limits; the
# two parts run apart so that a slow compile in one cannot cost the other.
step 240 python -m benchmarks.neighborhood_gpu --only timing --repeats 10 --warmup 3
step 120 python -m benchmarks.neighborhood_gpu --only precision
