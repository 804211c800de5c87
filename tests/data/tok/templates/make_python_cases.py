#!/usr/bin/env python3
"""make_python_cases.py — renders every template of index.json over every conversation of
conversations.json with Python's Jinja2 configured exactly as transformers'
apply_chat_template configures it (transformers/utils/chat_template_utils.py:
ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, the loopcontrols extension and a
{% generation %} tag; tojson = json.dumps(ensure_ascii=False, ...); raise_exception;
strftime_now), with the conversation's extra "vars" passed as template variables, and writes
python_cases.json: for each case the output, or the error Jinja2
raised. Only the special tokens that are set are passed, as transformers does.

Run from this folder with Jinja2 3.1 (made with Jinja2 3.1.6):  python3 make_python_cases.py
"""
import json
from datetime import datetime, timezone

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = 1721952000  # 2024-07-26 00:00:00 UTC, as in test_jinja_ref.c


class AssistantTracker(Extension):
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.fromtimestamp(NOW, tz=timezone.utc).strftime(fmt)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now

index = json.load(open("index.json"))
convs = json.load(open("conversations.json"))
cases = []
for t in index:
    src = open(t["name"] + ".jinja", encoding="utf-8").read()
    try:
        tpl = env.from_string(src)
    except Exception as e:  # noqa: BLE001 - any Jinja2 failure is the expected result
        tpl, perr = None, "%s: %s" % (type(e).__name__, e)
    for c in convs:
        ctx = dict(c.get("vars", {}))
        ctx.update(messages=c["messages"], add_generation_prompt=c["add_generation_prompt"])
        if "tools" in c:
            ctx["tools"] = c["tools"]
        for k in ("bos_token", "eos_token"):
            if t.get(k) is not None:
                ctx[k] = t[k]
        case = {"template": t["name"], "conversation": c["name"]}
        if tpl is None:
            case["python_error"] = perr
        else:
            try:
                case["python_output"] = tpl.render(**ctx)
            except Exception as e:  # noqa: BLE001
                case["python_error"] = "%s: %s" % (type(e).__name__, e)
        cases.append(case)
with open("python_cases.json", "w", encoding="utf-8") as f:
    json.dump({"jinja2": jinja2.__version__, "cases": cases}, f, ensure_ascii=False, indent=0)
    f.write("\n")
print(len(cases), "cases,", sum("python_error" in c for c in cases), "refused")
