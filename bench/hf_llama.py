#!/usr/bin/env python3
"""hf_llama.py — the HF transformers baseline for bench_compute.sh and bench_serve.sh (GPU machine).

    python3 bench/hf_llama.py [--save DIR] [--batches 1,8] [--prompt 128] [--new 256]
                              [--static] [--zero-eos] [--bw]
Builds the ~1.1B llama config of issue 4 (hidden 2048, 22 layers, 32 heads, 4 KV heads,
intermediate 5632, vocab 32000) with random weights (seed 0) in BF16 on the GPU, optionally
saves it (config.json + model.safetensors) so thaw runs the very same weights, then times
greedy `generate` (prompt tokens -> new tokens, no early stop) and prints one line per batch:
    hf_generate batch=B tok_per_s=X cache=dynamic|static (median of R runs)
--static: generate with a static KV cache (cache_implementation="static"), which transformers
  compiles with torch.compile by itself; each batch size compiles once, in an untimed run of
  the full length before the timed ones.
--zero-eos: zero lm_head's row of the eos token (id 2) before saving, so greedy decoding never
  picks eos (its logit is 0 while the largest of the others is positive): the OpenAI route,
  which ends a completion at eos and has no option to ignore it, then always runs to max_tokens.
--bw: the device-to-device copy rate (1 GiB, read + write bytes), printed as
    device_copy_bandwidth GB_s=X
--batches none: no generate runs (only --save / --bw).
"""
import argparse, json, os, statistics, sys, time
import torch
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--save")
ap.add_argument("--batches", default="1,8")
ap.add_argument("--prompt", type=int, default=128)
ap.add_argument("--new", type=int, default=256)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--static", action="store_true")
ap.add_argument("--zero-eos", action="store_true")
ap.add_argument("--bw", action="store_true")
a = ap.parse_args()

if a.bw:
    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda").fill_(1)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"device_copy_bandwidth GB_s={2 * n * reps / dt / 1e9:.0f} (torch copy_ of 1 GiB, read+write)")
    del src, dst
    torch.cuda.empty_cache()

torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                  num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                  max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                  initializer_range=0.02, tie_word_embeddings=False, bos_token_id=1,
                  eos_token_id=2, torch_dtype="bfloat16")
with torch.device("cuda"):
    m = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
if a.zero_eos:
    with torch.no_grad():
        m.lm_head.weight[cfg.eos_token_id].zero_()
if a.save:
    m.save_pretrained(a.save, safe_serialization=True, max_shard_size="20GB")
    print("saved", a.save, sorted(os.listdir(a.save)))
g = torch.Generator().manual_seed(1)
cache = "static" if a.static else "dynamic"
batches = [] if a.batches == "none" else [int(x) for x in a.batches.split(",")]
failed = 0
for b in batches:
    ids = torch.randint(3, 32000, (b, a.prompt), generator=g).cuda()
    if b == 1:
        with open((a.save or "/tmp") + "/prompt.json", "w") as f:
            json.dump(ids[0].tolist(), f)
    kw = dict(max_new_tokens=a.new, min_new_tokens=a.new, do_sample=False, pad_token_id=0,
              eos_token_id=None, attention_mask=torch.ones_like(ids))
    if a.static:
        kw["cache_implementation"] = "static"
    try:
        with torch.no_grad():
            t0 = time.perf_counter()
            if a.static:   # the compile happens here, for this batch size and cache length
                m.generate(ids, **kw)
            else:
                m.generate(ids, **{**kw, "max_new_tokens": 8, "min_new_tokens": 8})  # warm-up
            torch.cuda.synchronize()
            warm = time.perf_counter() - t0
            ts = []
            for r in range(a.reps):
                torch.cuda.synchronize(); t0 = time.perf_counter()
                out = m.generate(ids, **kw)
                torch.cuda.synchronize(); ts.append(time.perf_counter() - t0)
    except Exception as e:   # one batch size failing (memory, a compile error) leaves the others
        print(f"hf_generate batch={b} cache={cache} failed: {type(e).__name__}: {e}", flush=True)
        failed = 1
        torch.cuda.empty_cache()
        continue
    if b == 1 and a.save and not a.static:
        with open(a.save + "/hf_greedy.json", "w") as f:
            json.dump(out[0, a.prompt:].tolist(), f)
    med = statistics.median(ts)
    print(f"hf_generate batch={b} tok_per_s={b * a.new / med:.1f} cache={cache} (median of {a.reps}, "
          f"{med:.2f} s per generate incl. prefill; warm-up {warm:.1f} s) torch={torch.__version__}",
          flush=True)
sys.exit(failed)
