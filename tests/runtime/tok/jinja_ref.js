// jinja_ref.js — the independent reference of tests/runtime/tok/test_jinja_ref.c: renders chat
// templates with @huggingface/jinja (the Jinja implementation transformers.js uses for
// apply_chat_template), given the same contexts as thaw.
//   node jinja_ref.js NODE_MODULES_DIR CASES.json > RESULTS.json
// CASES.json: {"now": epoch seconds, "cases": [{"template": "...", "ctx": {...}}, ...]}.
// RESULTS.json: [{"ok": true, "out": "..."} | {"ok": false, "err": "..."}] in the same order.
// raise_exception and strftime_now are the package's globals, as transformers defines them;
// node runs with TZ=UTC and the clock fixed at "now", as the C side renders.
"use strict";
const fs = require("fs");
const path = require("path");
const { Template } = require(path.join(process.argv[2], "@huggingface/jinja"));
const input = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
// strftime_now is the package's own global (it reads new Date()): the clock is fixed at "now"
const RealDate = Date;
const fixed = input.now * 1000;
global.Date = class extends RealDate {
  constructor(...a) { if (a.length) super(...a); else super(fixed); }
  static now() { return fixed; }
};
const results = input.cases.map((c) => {
  try {
    const t = new Template(c.template);
    return { ok: true, out: t.render(c.ctx) };
  } catch (e) {
    return { ok: false, err: String(e && e.message ? e.message : e) };
  }
});
process.stdout.write(JSON.stringify(results));
