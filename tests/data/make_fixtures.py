#!/usr/bin/env python3
"""make_fixtures.py — builds the committed reference fixtures for the function kinds.

Run on a machine with torch + transformers + safetensors (the H100 device machine):
    python3 tests/data/make_fixtures.py OUTDIR
It writes (each small, all together well under 1 MB):
  llama_config.json        HF config.json of a tiny random-init LlamaForCausalLM (GQA, untied)
  llama_model.safetensors  its weights in BF16 (values are exactly BF16-representable)
  llama_expected.json      per prompt: last-position logits (fp32 compute), greedy continuation
                           (HF generate, do_sample=False), logits behind the last greedy token,
                           and the smallest top-1/top-2 logit margin seen (how robust greedy is)
  mlp_model.safetensors    a 64-32-10 ReLU classifier trained on tests/data/digits.csv.gz
                           (rows 0..999, inputs = pixels / 16), names layers.N.weight/bias, F32
  mlp_expected.json        logits of the first 16 rows, predicted labels of all rows, accuracy
                           on the held-out rows 1000..1796
The C tests (tests/functions/) compare thaw's CPU and CUDA paths against these numbers.
"""
import gzip, json, os, sys
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM
from safetensors.torch import save_file

out = sys.argv[1] if len(sys.argv) > 1 else "."
os.makedirs(out, exist_ok=True)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def llama(seed):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      head_dim=16, max_position_embeddings=128, rms_norm_eps=1e-5,
                      rope_theta=1000.0, initializer_range=0.2, tie_word_embeddings=False,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    m = LlamaForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "norm" in n:  # HF inits norms to ones; randomize so a skipped norm shows
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            p.copy_(p.to(torch.bfloat16).float())  # exactly representable in BF16
    return cfg, m


prompts = [[1, 17, 42, 99, 3, 200, 5], [1, 250, 7, 7, 7, 64, 128, 33, 11, 90, 180, 222], [1]]
NEW = 16
best = None
for seed in range(12):
    cfg, m = llama(seed)
    rec = {"prompts": prompts, "last_logits": [], "greedy": [], "final_logits": [],
           "min_margin": 1e9}
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([p])
            lg = m(ids).logits[0, -1].float()
            rec["last_logits"].append([float(x) for x in lg])
            g = m.generate(ids, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
                           pad_token_id=0, eos_token_id=None, output_scores=True,
                           return_dict_in_generate=True)
            toks = g.sequences[0, len(p):].tolist()
            rec["greedy"].append(toks)
            for s in g.scores:
                top = torch.topk(s[0].float(), 2).values
                rec["min_margin"] = min(rec["min_margin"], float(top[0] - top[1]))
            full = torch.tensor([p + toks[:-1]])
            fl = m(full).logits[0, -1].float()
            rec["final_logits"].append([float(x) for x in fl])
            assert int(fl.argmax()) == toks[-1]
    print(f"seed {seed}: min greedy margin {rec['min_margin']:.4f}")
    if best is None or rec["min_margin"] > best[2]["min_margin"]:
        best = (cfg, m, rec, seed)

cfg, m, rec, seed = best
rec["seed"] = seed
rec["transformers_version"] = transformers.__version__
rec["torch_version"] = torch.__version__
print(f"picked seed {seed}, min margin {rec['min_margin']:.4f}")
m.to(torch.bfloat16).save_pretrained(out + "/llama_tmp", safe_serialization=True)
os.replace(out + "/llama_tmp/config.json", out + "/llama_config.json")
os.replace(out + "/llama_tmp/model.safetensors", out + "/llama_model.safetensors")
with open(out + "/llama_expected.json", "w") as f:
    json.dump(rec, f)

# ---- mlp on the digits data set
here = os.path.dirname(os.path.abspath(__file__))
rows = [list(map(float, l.split(","))) for l in gzip.open(here + "/digits.csv.gz", "rt")
        if l.strip() and not l.startswith("#")]
X = torch.tensor([r[:64] for r in rows]) / 16.0
Y = torch.tensor([int(r[64]) for r in rows])
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
opt = torch.optim.Adam(net.parameters(), lr=0.01)
for it in range(400):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(X[:1000]), Y[:1000])
    loss.backward()
    opt.step()
with torch.no_grad():
    lg = net(X)
pred = lg.argmax(1)
acc = float((pred[1000:] == Y[1000:]).float().mean())
print(f"mlp: loss {float(loss):.4f}, held-out accuracy {acc:.4f}")
save_file({"layers.0.weight": net[0].weight.detach().contiguous(),
           "layers.0.bias": net[0].bias.detach().contiguous(),
           "layers.1.weight": net[2].weight.detach().contiguous(),
           "layers.1.bias": net[2].bias.detach().contiguous()},
          out + "/mlp_model.safetensors", metadata={"activation": "relu"})
with open(out + "/mlp_expected.json", "w") as f:
    json.dump({"activation": "relu", "input_scale": 1 / 16.0,
               "first_logits": [[float(v) for v in r] for r in lg[:16]],
               "labels": pred.tolist(), "heldout_accuracy": acc}, f)
