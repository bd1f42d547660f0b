#!/usr/bin/env bash
# Issue 16's GPU row: critical and evaluate with hf vs vllm on a 7B-shaped model, in ONE device call.
#
# Needs a device image with vLLM (the GPU build) importable; the script says so and stops otherwise.
# A real 7B checkpoint is best (MODEL=/path/to/Qwen2.5-7B-Instruct); without one it builds a
# Qwen2.5-7B-shaped model with random weights, which measures speed only (random logits are near-tied,
# so the agreement line means nothing there). Prepare here, once per checkout:
#
#     bash benchmarks/gpu_throughput.sh prepare     # copies GSM8K rows into .devdata/
#
# then, with the workplace's device tool:
#
#     run(command="bash benchmarks/gpu_engines.sh", carry=[".devdata"], timeout_s=540)
#
# The log comes back as $OUT/gpu_engines.log; copy it into BENCHMARKS.md ("Generation engines") with
# the date and the device named, and give the machine back.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp}
export PYTHONUNBUFFERED=1 PYTHONPATH=src VLLM_BATCH_INVARIANT=${VLLM_BATCH_INVARIANT:-0}
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    python3 -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)" \
        || { echo "vLLM is not installed on this device image: no GPU engine row (pip install 'reasonsift[vllm]')"; exit 3; }
    model=${MODEL:-}
    if [[ -z $model ]]; then
        model=/tmp/qwen7b-shaped
        python3 - "$model" <<'PY'
import sys, torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from reasonsift.models import train_bpe_tokenizer
import json
rows = [json.loads(l) for l in open(".devdata/gsm8k_train.jsonl")][:2000]
tok = train_bpe_tokenizer([r["question"] + "\n" + r["answer"] for r in rows], vocab_size=8000)
cfg = Qwen2Config(vocab_size=len(tok), hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                  num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=4096,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
with torch.device("cuda"):
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
model.save_pretrained(sys.argv[1]); tok.save_pretrained(sys.argv[1])
print("random Qwen2.5-7B-shaped model in", sys.argv[1])
PY
    fi
    mkdir -p ../shared/data/gsm8k && [[ -f ../shared/data/gsm8k/train.jsonl ]] || cp .devdata/gsm8k_train.jsonl ../shared/data/gsm8k/train.jsonl
    python3 benchmarks/generation_engines.py --model "$model" --device cuda --critical-rows 16 --eval-items 64 \
        --max-new-tokens 512 --max-response-tokens 400 --extra-tokens 32
} 2>&1 | tee "$out/gpu_engines.log"
