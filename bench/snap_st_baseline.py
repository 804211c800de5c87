#!/usr/bin/env python3
"""Baseline for bench_snapshot.sh: safetensors.torch.load_file(path, device=DEV), timed.

usage: snap_st_baseline.py PATH DEVICE REPEAT cold|warm
Prints one line per run and 'median GB/s' of tensor bytes. cold: the file is dropped from the
page cache before each run (drop_caches when permitted, else posix_fadvise DONTNEED)."""
import os, statistics, sys, time

path, dev, repeat, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
import torch
from safetensors.torch import load_file


def drop(p):
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return "drop_caches"
    except OSError:
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        return "fadvise"


if dev.startswith("cuda"):
    torch.zeros(1, device=dev)  # context outside the timing, as thaw's pool
rates = []
for i in range(repeat):
    how = drop(path) if mode == "cold" else "warm"
    t0 = time.perf_counter()
    sd = load_file(path, device=dev)
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    n = sum(t.numel() * t.element_size() for t in sd.values())
    rates.append(n / dt / 1e9)
    print(f"safetensors load_file {mode} ({how}) run {i + 1}: {n / 1e9:.3f} GB in {dt:.3f} s = {rates[-1]:.2f} GB/s")
    del sd
print(f"median {statistics.median(rates):.2f} GB/s")
