#!/usr/bin/env python3
"""train_tiny_llama.py — a small *trained* LlamaForCausalLM for int8 agreement checks.

Random-init weights give nearly flat logits, so any perturbation flips the argmax and int8
agreement on them says little about real models. This trains a byte-level LLaMA (vocab 256:
token = byte) with PyTorch on text that is on every machine with Python: the standard library's
own .py sources (files split by a fixed shuffle into training and held-out sets), for a fixed
wall-clock budget, and saves it in HF layout (model.safetensors in BF16 + config.json) with
held-out text as token ids (heldout.json) for `bench_llama --model DIR --text-file
DIR/heldout.json` (bench_compute.sh, GPU part).

  train_tiny_llama.py OUT_DIR [--seconds S] [--device cuda|cpu]
Prints the held-out loss (nats/byte) and PyTorch's own next-byte accuracy of the saved BF16
model on the held-out windows, as a reference for thaw's figures.
"""
import argparse
import glob
import json
import math
import os
import random
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def corpus():
    root = os.path.dirname(os.__file__)
    files = sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True))
    files = [f for f in files if "site-packages" not in f and "dist-packages" not in f]
    random.Random(0).shuffle(files)
    held, train = files[:40], files[40:]
    read = lambda fs: b"".join(open(f, "rb").read() for f in fs)
    return read(train)[: 48 << 20], read(held)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seconds", type=float, default=75)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    torch.manual_seed(0)
    tr, held = corpus()
    data = torch.frombuffer(bytearray(tr), dtype=torch.uint8).to(a.device).long()
    cfg = LlamaConfig(vocab_size=256, hidden_size=512, intermediate_size=1408,
                      num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                      max_position_embeddings=1024, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)
    model = LlamaForCausalLM(cfg).to(a.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1.5e-3, betas=(0.9, 0.95), weight_decay=0.1)
    t0, step, loss_ema = time.time(), 0, None
    while time.time() - t0 < a.seconds:
        frac = (time.time() - t0) / a.seconds
        lr = 1.5e-3 * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        ix = torch.randint(0, data.numel() - a.seq, (a.batch,), device=a.device)
        x = torch.stack([data[i : i + a.seq] for i in ix.tolist()])
        with torch.autocast(device_type="cuda" if a.device.startswith("cuda") else "cpu",
                            dtype=torch.bfloat16):
            loss = model(input_ids=x, labels=x).loss   # HF shifts the labels itself
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
    model = model.to(torch.bfloat16).eval()
    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(a.out, safe_serialization=True)
    ids = list(held[: 16 * 1024])
    with open(os.path.join(a.out, "heldout.json"), "w") as f:
        json.dump(ids, f)
    # reference: PyTorch's held-out loss and next-byte accuracy of the saved BF16 model
    with torch.no_grad():
        h = torch.tensor(ids[: 8 * 384], device=a.device).view(8, 384)
        out = model(input_ids=h, labels=h)   # loss over next bytes (HF shifts)
        acc = (out.logits[:, :-1].argmax(-1) == h[:, 1:]).float().mean().item()
    print(f"tiny_llama trained steps={step} seconds={a.seconds:.0f} train_loss_ema={loss_ema:.3f} "
          f"heldout_loss_nats_per_byte={out.loss.item():.3f} torch_bf16_next_byte_acc={100 * acc:.2f}% "
          f"params={sum(p.numel() for p in model.parameters()) / 1e6:.1f}M saved={a.out}")


if __name__ == "__main__":
    main()
