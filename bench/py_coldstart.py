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
cfg = transformers.AutoConfig.from_pretrained(d)
with torch.device("meta"):
    model = transformers.LlamaForCausalLM(cfg)
sd = load_file(d + "/model.safetensors", device=dev)
model.load_state_dict(sd, strict=False, assign=True)
model = model.to(dtype=torch.bfloat16)
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
