#!/usr/bin/env python3
"""hf_llama.py — the HF transformers baseline for bench_compute.sh (GPU machine only).

    python3 bench/hf_llama.py [--save DIR] [--batches 1,8] [--prompt 128] [--new 256]
Builds the ~1.1B llama config of issue 4 (hidden 2048, 22 layers, 32 heads, 4 KV heads,
intermediate 5632, vocab 32000) with random weights (seed 0) in BF16 on the GPU, optionally
saves it (config.json + model.safetensors) so thaw runs the very same weights, then times
greedy `generate` (prompt tokens -> new tokens, no early stop) and prints one line per batch:
    hf_generate batch=B tok_per_s=X (median of R runs)
"""
import argparse, json, os, statistics, time
import torch
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--save")
ap.add_argument("--batches", default="1,8")
ap.add_argument("--prompt", type=int, default=128)
ap.add_argument("--new", type=int, default=256)
ap.add_argument("--reps", type=int, default=3)
a = ap.parse_args()

torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                  num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                  max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                  initializer_range=0.02, tie_word_embeddings=False, bos_token_id=1,
                  eos_token_id=2, torch_dtype="bfloat16")
with torch.device("cuda"):
    m = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
if a.save:
    m.save_pretrained(a.save, safe_serialization=True, max_shard_size="20GB")
    print("saved", a.save, sorted(os.listdir(a.save)))
g = torch.Generator().manual_seed(1)
for b in [int(x) for x in a.batches.split(",")]:
    ids = torch.randint(3, 32000, (b, a.prompt), generator=g).cuda()
    if b == 1:
        with open((a.save or "/tmp") + "/prompt.json", "w") as f:
            json.dump(ids[0].tolist(), f)
    kw = dict(max_new_tokens=a.new, min_new_tokens=a.new, do_sample=False, pad_token_id=0,
              eos_token_id=None, attention_mask=torch.ones_like(ids))
    with torch.no_grad():
        m.generate(ids, **{**kw, "max_new_tokens": 8, "min_new_tokens": 8})  # warm-up
        ts = []
        for r in range(a.reps):
            torch.cuda.synchronize(); t0 = time.perf_counter()
            out = m.generate(ids, **kw)
            torch.cuda.synchronize(); ts.append(time.perf_counter() - t0)
    if b == 1 and a.save:
        with open(a.save + "/hf_greedy.json", "w") as f:
            json.dump(out[0, a.prompt:].tolist(), f)
    med = statistics.median(ts)
    print(f"hf_generate batch={b} tok_per_s={b * a.new / med:.1f} (median of {a.reps}, "
          f"{med:.2f} s per generate incl. prefill) torch={torch.__version__}")
