#!/usr/bin/env bash
# Every serving benchmark on one GPU in one go (≈12 min on an H100), results under $1.
# usage: source benches/gpu_env.sh WHEEL_DIR; bash benches/run_gpu.sh benches/results
OUT=${1:-benches/results}
M=qwen3.5-35b-a3b
timeout 120 python3 benches/profile_decode.py --model $M --out "$OUT" 2>&1 | grep -v Warn | sed -n 3,24p
timeout 200 python3 benches/decode.py --model $M --runs '1024:1,8,32,128;32768:1' --steps 48 --hf-peer --out "$OUT" 2>&1 | grep -v Warn | tail -14
# A 20-layer slice: 16 users' KV and recurrent state must fit beside the weights on 80 GB.
# At 16 users the 2026-11-22 run's hit rate fell to 3%: state slots were capped at 5 per sequence
# (80), too few for 16 conversations' checkpoints, so the LRU evicted each one's before its next
# turn. Slots now default to STATE_FRACTION of the free memory that KV (still capped at
# max_num_seqs x max_model_len: 16 x 64k tokens, ~10 GB) leaves (~290 slots, ~9 GB): no override.
timeout 300 python3 benches/agentic.py --model $M --num-layers 20 --concurrency 1,4,16 --first-turn-words 24000 --turns 15 --output-tokens 500 --out "$OUT" 2>&1 | tail -12
timeout 75 python3 benches/long_context.py --model $M --steps 32 --out "$OUT" 2>&1 | tail -7
timeout 80 python3 benches/overlap.py --model $M --batches 1,16 --tokens 128 --out "$OUT" 2>&1 | tail -7
timeout 60 python3 benches/prefill.py --model $M --out "$OUT" 2>&1 | tail -7
