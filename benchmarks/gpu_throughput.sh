#!/usr/bin/env bash
# Issue 6's GPU rows (Qwen2.5-7B-shaped scoring throughput and MFU) in ONE device call.
#
# The device machine gets the repository but not ../shared, and it cannot install anything; its
# image has torch, transformers, pyarrow and pyyaml, which is all score_throughput.py imports.
# So, here, once per checkout (copies 2,000 GSM8K train rows into the git-ignored .devdata/):
#
#     bash benchmarks/gpu_throughput.sh prepare
#
# then, with the workplace's device tool (about 4 minutes on an H200, plus the machine's start):
#
#     run(command="bash benchmarks/gpu_throughput.sh", carry=[".devdata"], timeout_s=540)
#
# The log comes back as $OUT/gpu_throughput.log; copy its tables into BENCHMARKS.md with the date
# and the device named, and give the machine back.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=.devdata/gsm8k_train.jsonl

if [[ "${1:-}" == "prepare" ]]; then
    src=../shared/data/gsm8k/train.jsonl
    [[ -f $src ]] || { echo "error: $src not found (run from a checkout beside ../shared)" >&2; exit 2; }
    mkdir -p .devdata
    head -n 2000 "$src" > "$DATA"
    echo "wrote $DATA ($(wc -l < "$DATA") rows); now run this script on the device with carry=[\".devdata\"]"
    exit 0
fi

[[ -f $DATA ]] || { echo "error: $DATA missing: run 'bash benchmarks/gpu_throughput.sh prepare' first" >&2; exit 2; }
out=${OUT:-/tmp}
export PYTHONUNBUFFERED=1 PYTHONPATH=src
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
    python3 benchmarks/score_throughput.py --device cuda --model-config qwen7b --data "$DATA"
} 2>&1 | tee "$out/gpu_throughput.log"
