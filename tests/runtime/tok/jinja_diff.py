#!/usr/bin/env python3
"""jinja_diff.py — the Python side of tests/runtime/tok/test_jinja_diff.c: generates COUNT random
Jinja expressions and loops (seeded, so a run is reproducible) over a fixed context, renders each
with Python's Jinja2 configured as transformers' apply_chat_template configures it (sandboxed,
trim_blocks, lstrip_blocks, loopcontrols, its tojson), and writes OUT.json:
{"ctx": {...}, "cases": [{"template": "...", "ok": true, "out": "..."} | {..., "ok": false, "err": "..."}]}.
    python3 jinja_diff.py SEED COUNT OUT.json
"""
import copy
import json
import random
import sys

from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
seed, count, out_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = random.Random(seed)
ctx = {"s": "  Hello, World  ", "n": 7, "f": 2.5, "z": 0, "l": [3, 1, 2], "e": [], "d": {"k": "v", "a": [1, 2]},
       "no": None, "t": True, "ms": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
       "u8": "h\u00e9llo \u4f60 \u0436"}
atoms = ["s", "n", "f", "z", "l", "e", "d", "no", "t", "ms", "u8", "u", "1", "-3", "0.5", "'ab'", "''", "\"x'y\"",
         "[1, 'a']", "{'p': 1}", "none", "true", "false", "(1, 2)", "ms[0]", "d.k", "d['a']", "l[-1]", "s[1:4]",
         "l[::-1]", "ms[0].role", "u8[1:]", "'%s-%s'"]
bins = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">=", "in", "not in", "and", "or"]
filters = ["trim", "upper", "lower", "title", "capitalize", "length", "first", "last", "join", "join(', ')", "tojson",
           "tojson(indent=2)", "list", "string", "int", "float", "reverse|list", "sort", "unique|list", "default('D')",
           "items|list", "abs", "round", "round(1)", "sum", "min", "max", "wordcount", "replace('l', 'L')",
           "map('upper')|list", "selectattr('role', 'eq', 'user')|list", "map(attribute='role')|list", "indent(2)",
           "dictsort", "count", "d('x', true)", "select|list", "reject('none')|list", "format(1, 2)"]
methods = ["strip()", "strip('H ')", "lstrip()", "rstrip()", "split()", "split(',')", "startswith('  H')",
           "endswith('d  ')", "upper()", "lower()", "title()", "replace('o', '0')", "get('k')", "get('zz', 3)",
           "items()", "keys()", "values()", "find('o')", "count('l')", "capitalize()"]
tests = ["defined", "undefined", "none", "string", "number", "mapping", "iterable", "sequence", "integer", "float",
         "boolean", "even", "odd", "true", "false", "divisibleby 3", "in [1, 'ab']"]


def expr(depth):
    r = rng.random()
    if depth <= 0 or r < 0.3:
        return rng.choice(atoms)
    if r < 0.5:
        return "(%s %s %s)" % (expr(depth - 1), rng.choice(bins), expr(depth - 1))
    if r < 0.65:
        return "(%s | %s)" % (expr(depth - 1), rng.choice(filters))
    if r < 0.75:
        return "%s.%s" % (rng.choice(["s", "d", "u8", "'a,b, c'", "ms[1]"]), rng.choice(methods))
    if r < 0.85:
        return "(%s is %s%s)" % (expr(depth - 1), rng.choice(["", "not "]), rng.choice(tests))
    if r < 0.92:
        return "(not %s)" % expr(depth - 1)
    return "(%s if %s else %s)" % (expr(depth - 1), expr(depth - 1), expr(depth - 1))


cases = []
for _ in range(count):
    r = rng.random()
    if r < 0.05:  # range() is a list here: loops over it, not its repr, are compared
        t = "{%% for i in range(%d, %d, %d) %%}{{ i }},{%% endfor %%}" % (rng.randint(-3, 3), rng.randint(-5, 9), rng.choice([1, 2, -1, 3]))
    elif r < 0.15:
        t = "{%% for x in %s %%}[{{ x }}{{ loop.index }}{{ loop.last }}]{%% else %%}E{%% endfor %%}" % expr(2)
    elif r < 0.22:
        t = "{%% set ns = namespace(v=%s) %%}{%% for x in %s %%}{%% set ns.v = ns.v ~ x %%}{%% endfor %%}{{ ns.v }}" % (expr(1), expr(1))
    else:
        t = "{{ %s }}" % expr(3)
    case = {"template": t}
    try:
        case.update(ok=True, out=env.from_string(t).render(**copy.deepcopy(ctx)))
    except Exception as e:  # noqa: BLE001 - a refusal is a result to compare too
        case.update(ok=False, err="%s: %s" % (type(e).__name__, e))
    cases.append(case)
with open(out_path, "w", encoding="utf-8") as f:
    json.dump({"ctx": ctx, "cases": cases}, f, ensure_ascii=False)
