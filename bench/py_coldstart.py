"""Baseline for bench/bench_coldstart.sh: what a Python serving process pays to answer its first
request after scaling from zero: import torch + transformers, CUDA init, load the safetensors
weights onto the GPU, one forward pass (the first token). Prints JSON with each phase's seconds;
the caller also measures the whole process from the outside.
usage: python3 py_coldstart.py MODEL_DIR [device]"""
import json
import sys
import time

t0 = time.perf_counter()
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

t_import = time.perf_counter()
d = sys.argv[1]
dev = sys.argv[2] if len(sys.argv) > 2 else "cuda"
torch.zeros(1, device=dev)
if dev.startswith("cuda"):
    torch.cuda.synchronize()
t_init = time.perf_counter()
# the way users load a model: from_pretrained reads config.json and the safetensors weights
try:
    model = transformers.LlamaForCausalLM.from_pretrained(d, dtype=torch.bfloat16, device_map=dev)
except TypeError:
    model = transformers.LlamaForCausalLM.from_pretrained(d, torch_dtype=torch.bfloat16, device_map=dev)
model.eval()
if dev.startswith("cuda"):
    torch.cuda.synchronize()
t_load = time.perf_counter()
with torch.no_grad():
    out = model(torch.tensor([[1, 2, 3, 4]], device=dev)).logits[0, -1].argmax().item()
if dev.startswith("cuda"):
    torch.cuda.synchronize()
t_fwd = time.perf_counter()
print(json.dumps({"import_s": t_import - t0, "cuda_init_s": t_init - t_import,
                  "load_s": t_load - t_init, "forward_s": t_fwd - t_load,
                  "first_token_s": t_fwd - t0, "token": out}))
