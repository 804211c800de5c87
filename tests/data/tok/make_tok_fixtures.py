#!/usr/bin/env python3
"""Expected encodings for thaw's tokenizer tests (tests/runtime/tok/test_tok.c), made with the
Hugging Face `tokenizers` package (0.23.2) and transformers' apply_chat_template on the GPU
device machine (the packages are not installed on the dev box).

    python3 make_tok_fixtures.py IN_DIR OUT_DIR [BENCH_TEXT BENCH_BIN]

IN_DIR holds one folder per real tokenizer (llama3/, mistral/) with tokenizer.json and
tokenizer_config.json. The script
  1. trains the SMALL tokenizer: byte-level BPE (GPT-2 split pattern, ByteLevel decoder), vocab
     512, special tokens <|endoftext|> <|im_start|> <|im_end|>, a ChatML chat_template, on the
     repo's docs/*.md (run from the repo root) -> OUT_DIR/small_tokenizer.json and
     small_tokenizer_config.json;
  2. for each tokenizer writes OUT_DIR/expected_NAME.json: every string of STRINGS encoded with
     and without add_special_tokens, decoded back (skip_special_tokens False and True), decodes of
     random id sequences, and chat prompts of two conversations rendered by apply_chat_template
     (add_generation_prompt=True) with their encodings;
  3. with BENCH_TEXT: times tokenizers' encode on it (single call, and encode_batch over lines)
     and runs thaw's bench binary BENCH_BIN on the same text -> OUT_DIR/bench.txt.
"""
import glob
import json
import os
import random
import subprocess
import sys
import time
import traceback

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

STRINGS = [
    "",
    "Hello world",
    "Hello, world! How are you?",
    "  leading spaces",
    "trailing spaces   ",
    "multiple    spaces     between words",
    " a",
    "   ",
    "\n",
    "tabs\tand\t\ttabs",
    "new\nlines\n\n\nand\r\nCRLF\r\n",
    " \n \n  mixed ws \t\n x",
    "1234567890 3.14159 1,000,000 2024-01-01 007",
    "It's don't we'll they've I'm you'd she'S WE'LL I'M 'tis",
    "punctuation!!! ... ??? ;;; --- (brackets) [x] {y} <z> @#$%^&*",
    "你好，世界。日本語のテキスト 한국어 텍스트",
    "😀👍🏽 🇩🇪 👨‍👩‍👧 emoji",
    "e\u0301 cafe\u0301 n\u0303 combining marks",
    "Привет мир, Ελληνικά, مرحبا بالعالم, नमस्ते दुनिया",
    "a<|im_start|>b</s>c<|eot_id|> d <s> e <|endoftext|>",
    "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n",
    "<s>[INST] hello [/INST]",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "supercalifragilisticexpialidocious" * 3,
    "a" * 300,
    "1" * 50,
    "def f(x):\n    return x**2  # comment\n\n\tpass\n",
    "https://example.com/path?q=1&r=2#frag user@example.org",
    "\u00a0nbsp\u2003em space\u3000ideographic",
    "\x01\x1f control \x7f",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀀𠀁 rare",
    "HELLO WORLD ÀÉÎÕÜ ß straße",
    "\u2581 literal metaspace ▁▁ and Ġ Ċ byte-level chars",
    "word          word",
    "’s ’t curly apostrophes",
    "٣٤٥ ⅫⅩ ²³ ½ numbers",
    "abc123def A1B2C3 x1y22z333",
    "   \n\n   indented\n    code",
    "ends with newline\n",
    "ends with spaces and newline  \n  ",
]

CONVS = {
    "conv3": [
        {"role": "user", "content": "Hello! What is thaw?"},
        {"role": "assistant", "content": " A scale-to-zero GPU runtime.\n"},
        {"role": "user", "content": "How fast is a cold start?  "},
    ],
    "conv_sys": [
        {"role": "system", "content": "You are terse. Answer in one line."},
        {"role": "user", "content": "Say hi in Japanese: こんにちは?"},
        {"role": "assistant", "content": "こんにちは 👋"},
        {"role": "user", "content": "Thanks"},
    ],
}

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")

def train_small(out_dir):
    files = sorted(glob.glob("docs/*.md")) + ["README.md"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=512, min_frequency=2,
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train(files, trainer)
    tok.save(os.path.join(out_dir, "small_tokenizer.json"))
    cfg = {"bos_token": None,
           "eos_token": {"content": "<|im_end|>", "lstrip": False, "normalized": False,
                         "rstrip": False, "single_word": False, "special": True},
           "pad_token": "<|endoftext|>", "chat_template": CHATML,
           "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 2048}
    with open(os.path.join(out_dir, "small_tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=1, ensure_ascii=False)
    return tok


def chat(tok_path, cfg_path):
    """apply_chat_template renderings (tokenize=False, add_generation_prompt=True)."""
    out = {}
    try:
        from transformers import PreTrainedTokenizerFast
        cfg = json.load(open(cfg_path))
        tmpl = cfg.get("chat_template")
        if not tmpl:
            return {"error": "no chat_template"}

        def tokstr(v):
            return v.get("content") if isinstance(v, dict) else v
        hf = PreTrainedTokenizerFast(tokenizer_file=tok_path, bos_token=tokstr(cfg.get("bos_token")),
                                     eos_token=tokstr(cfg.get("eos_token")))
        hf.chat_template = tmpl
        for name, msgs in CONVS.items():
            try:
                out[name] = hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            except Exception as e:  # noqa: BLE001
                out[name + "_error"] = repr(e)
    except Exception as e:  # noqa: BLE001
        out["error"] = repr(e)
    if any(k in out for k in CONVS):
        out["renderer"] = "transformers apply_chat_template"
        return out
    try:  # fallback: the same sandboxed Jinja environment apply_chat_template uses
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        cfg = json.load(open(cfg_path))

        def raise_exception(msg):
            raise jinja2.exceptions.TemplateError(msg)
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        tpl = env.from_string(cfg["chat_template"])

        def tokstr(v):
            return v.get("content") if isinstance(v, dict) else v
        for name, msgs in CONVS.items():
            out[name] = tpl.render(messages=msgs, add_generation_prompt=True,
                                   bos_token=tokstr(cfg.get("bos_token")) or "",
                                   eos_token=tokstr(cfg.get("eos_token")) or "")
        out["renderer"] = "jinja2 sandbox (transformers failed)"
    except Exception as e:  # noqa: BLE001
        out["jinja_error"] = repr(e)
    return out


def expected(name, tok_path, cfg_path, out_dir):
    tok = Tokenizer.from_file(tok_path)
    cases = []
    for s in STRINGS:
        ids = tok.encode(s, add_special_tokens=False).ids
        ids_sp = tok.encode(s, add_special_tokens=True).ids
        cases.append({"text": s, "ids": ids, "ids_special": ids_sp,
                      "decoded": tok.decode(ids, skip_special_tokens=False),
                      "decoded_special": tok.decode(ids_sp, skip_special_tokens=False),
                      "decoded_skip": tok.decode(ids_sp, skip_special_tokens=True)})
    rng = random.Random(8)
    vs = tok.get_vocab_size(with_added_tokens=True)
    rand = []
    for k in range(6):
        ids = [rng.randrange(vs) for _ in range(40)]
        if k >= 3:  # favour the byte-level / byte-fallback region (splits UTF-8 sequences)
            ids = [rng.randrange(min(vs, 300)) for _ in range(40)]
        rand.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                     "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    ch = chat(tok_path, cfg_path)
    for k in list(ch):
        if k in CONVS:
            ch[k + "_ids"] = tok.encode(ch[k], add_special_tokens=False).ids
    doc = {"name": name, "tokenizers_version": tokenizers.__version__,
           "vocab_size": vs, "cases": cases, "random_decodes": rand, "chat": ch,
           "convs": CONVS}
    with open(os.path.join(out_dir, f"expected_{name}.json"), "w") as f:
        json.dump(doc, f, ensure_ascii=False, indent=0)
    print(f"{name}: {len(cases)} cases, chat keys {sorted(ch)}", flush=True)


def bench(text_path, bench_bin, tok_paths, out_dir):
    text = open(text_path, encoding="utf-8").read()
    mb = len(text.encode()) / 1e6
    lines = text.split("\n")
    res = [f"bench text: {text_path}, {mb:.3f} MB, {len(lines)} lines; tokenizers "
           f"{tokenizers.__version__}; cpu count {os.cpu_count()}"]
    for name, p in tok_paths.items():
        tok = Tokenizer.from_file(p)
        tok.encode(text[:10000])
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            enc = tok.encode(text, add_special_tokens=False)
            ts.append(time.perf_counter() - t0)
        ts.sort()
        res.append(f"tokenizers {name} encode(whole text): median {ts[2]:.4f} s = {mb / ts[2]:.2f} MB/s, "
                   f"{len(enc.ids)} tokens")
        # a fresh tokenizer has an empty word cache: first-call figure
        tok2 = Tokenizer.from_file(p)
        t0 = time.perf_counter()
        tok2.encode(text, add_special_tokens=False)
        t1 = time.perf_counter() - t0
        res.append(f"tokenizers {name} encode(whole text), first call on a fresh tokenizer: "
                   f"{t1:.4f} s = {mb / t1:.2f} MB/s")
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            tok.encode_batch(lines, add_special_tokens=False)
            ts.append(time.perf_counter() - t0)
        ts.sort()
        res.append(f"tokenizers {name} encode_batch(lines, all cores): median {ts[1]:.4f} s = "
                   f"{mb / ts[1]:.2f} MB/s")
        if bench_bin:
            r = subprocess.run([bench_bin, p, text_path, "5"], capture_output=True, text=True,
                               timeout=60)
            res.append(f"thaw bench_tok {name}: " + (r.stdout + r.stderr).strip().replace("\n", " | "))
        print(res[-1], flush=True)
    with open(os.path.join(out_dir, "bench.txt"), "w") as f:
        f.write("\n".join(res) + "\n")


def main():
    in_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    print("tokenizers", tokenizers.__version__, flush=True)
    paths = {}
    try:
        train_small(out_dir)
        paths["small"] = (os.path.join(out_dir, "small_tokenizer.json"),
                          os.path.join(out_dir, "small_tokenizer_config.json"))
    except Exception:  # noqa: BLE001
        traceback.print_exc()
    for name in ("llama3", "mistral"):
        paths[name] = (os.path.join(in_dir, name, "tokenizer.json"),
                       os.path.join(in_dir, name, "tokenizer_config.json"))
    for name, (tp, cp) in paths.items():
        try:
            expected(name, tp, cp, out_dir)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
    if len(sys.argv) > 3:
        try:
            bench(sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None,
                  {k: v[0] for k, v in paths.items()}, out_dir)
        except Exception:  # noqa: BLE001
            traceback.print_exc()


if __name__ == "__main__":
    main()
