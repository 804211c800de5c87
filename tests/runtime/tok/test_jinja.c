/* test_jinja.c — the chat template language (runtime/tok/tok_jinja.h), construct by construct:
 * whitespace control with trim_blocks/lstrip_blocks, literals and escapes, Python str()/repr(),
 * arithmetic, slices, loops and the loop variable, scoping, namespaces, set blocks, macros and
 * call blocks, tests, filters, string and dict methods, tojson, strftime_now. The expected
 * outputs are Python Jinja2 3.1.6's, configured as transformers' apply_chat_template configures
 * it (tests/data/tok/templates/make_python_cases.py shows that configuration). Then the errors
 * (syntax, undefined, types, raise_exception) and the limits a hostile template runs into, and
 * renders of one template from several threads at once. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include "runtime/tok/tok_jinja.h"
#include "tests/t.h"

static const struct {
	const char *src, *ctx, *want;
} cases[] = {
	{"  {% if true %}\n  x\n  {% endif %}\ny",
	 "{}",
	 "  x\ny"},
	{"{{- ' a ' -}}  b  {{- 'c' }} d\n {{ 'e' -}}\n  f",
	 "{}",
	 " a bc d\n ef"},
	{"a {#- c -#} b\n{# comment #}\nx",
	 "{}",
	 "ab\nx"},
	{"{% raw %}{{ x }}{% if %}{% endraw %}",
	 "{}",
	 "{{ x }}{% if %}"},
	{"{{ 'a\\nb\\t\\x41\\u00e9\\'' }}{{ \"q\\\"\" }}{{ 'a' 'b' }}",
	 "{}",
	 "a\nb\tA\303\251'q\"ab"},
	{"{{ [1, 'a', none, true, 1.5, {'k': [2]}, (1,), (1, 2)] }}",
	 "{}",
	 "[1, 'a', None, True, 1.5, {'k': [2]}, (1,), (1, 2)]"},
	{"{{ None }}{{ True }}{{ false }}{{ [\"it's\", 'say \"x\"', 'nl\\n'] }}",
	 "{}",
	 "NoneTrueFalse[\"it's\", 'say \"x\"', 'nl\\n']"},
	{"{{ 1/3 }} {{ 10/2 }} {{ 1e20 }} {{ 0.0001 }} {{ 0.00001 }} {{ 2**10 }} {{ 7//2 }} {{ -7//2 }} {{ -7 % 3 }} {{ 7.5 % 2 }} {{ 1.5 * 2 }} {{ 3 - 5 }} {{ -(2) }} {{ 1e16 }} {{ 123456789.125 }}",
	 "{}",
	 "0.3333333333333333 5.0 1e+20 0.0001 1e-05 1024 3 -4 2 1.5 3.0 -2 -2 1e+16 123456789.125"},
	{"{{ [1,2,3,4][::-1] }} {{ 'h\303\251llo'[1:3] }} {{ [1,2,3][-1] }} {{ 'abc'[-1] }} {{ [1,2,3,4,5][1::2] }} {{ 'abcdef'[-2:] }} {{ [1,2,3][5:] }} {{ 'abc'[::-1] }}",
	 "{}",
	 "[4, 3, 2, 1] \303\251l 3 c [2, 4] ef [] cba"},
	{"{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.previtem }}{{ loop.cycle('o', 'e') }},{% endfor %}",
	 "{\"xs\": [\"a\", \"b\", \"c\"]}",
	 "10TrueFalse332o,21FalseFalse321ae,32FalseTrue310bo,"},
	{"{% for x in xs if x > 1 %}{{ x }}{{ loop.length }}{% else %}none{% endfor %}|{% for x in [] %}{% else %}empty{% endfor %}",
	 "{\"xs\": [1, 2, 3]}",
	 "2232|empty"},
	{"{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}|{{ range(2, 8, 3) | list }}",
	 "{}",
	 "0134|[2, 5]"},
	{"{% set a = 1 %}{% for x in [1, 2] %}{% set a = a + x %}{{ a }}{% endfor %}{{ a }}{% if true %}{% set b = 5 %}{% endif %}{{ b }}",
	 "{}",
	 "2315"},
	{"{% set ns = namespace(c=0, s='') %}{% for x in [1, 2, 3] %}{% set ns.c = ns.c + x %}{% set ns.s = ns.s ~ x %}{% endfor %}{{ ns.c }} {{ ns.s }}",
	 "{}",
	 "6 123"},
	{"{% set b %}x{{ 1 + 1 }}y{% endset %}[{{ b }}]{% set c | upper %}abc{% endset %}{{ c }}",
	 "{}",
	 "[x2y]ABC"},
	{"{% macro m(a, b='d') %}<{{ a }}{{ b }}>{% endmacro %}{{ m(1) }}{{ m(1, b=2) }}{{ m('x', 'y') }}{{ m() }}",
	 "{}",
	 "<1d><12><xy><d>"},
	{"{% macro w(t) %}[{{ t }}:{{ caller() }}]{% endmacro %}{% call w('T') %}body{% endcall %}{% macro v() %}{{ caller(7) }}{% endmacro %}{% call(n) v() %}n={{ n }}{% endcall %}",
	 "{}",
	 "[T:body]n=7"},
	{"{{ x is defined }}{{ y is undefined }}{{ none is none }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is sequence }}{{ 1 is number }}{{ true is boolean }}{{ 2 is even }}{{ 3 is odd }}{{ true is true }}{{ false is false }}{{ 1 is not string }}{{ 1.5 is float }}{{ 1 is integer }}{{ 6 is divisibleby 3 }}{{ 'a' is in 'cat' }}{{ 2 is eq 2 }}{{ x is not none }}",
	 "{\"x\": 1}",
	 "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue"},
	{"{{ 'a' in 'cat' }}{{ 2 in [1, 2] }}{{ 'k' in {'k': 1} }}{{ 3 not in [1] }}{{ 'z' in u }}",
	 "{}",
	 "TrueTrueTrueTrueFalse"},
	{"{{ 1 and 'x' }}{{ 0 or 'y' }}{{ not 0 }}{{ 'a' if x else 'b' }}[{{ 'c' if false }}]{{ none or false }}{{ [] and 1 }}",
	 "{\"x\": 0}",
	 "xyTrueb[]False[]"},
	{"{{ '  hi \\n' | trim }}|{{ 'ab' | upper }}|{{ 'AB' | lower }}|{{ 'hello world-x (y' | title }}|{{ 'hELLO wORLD' | capitalize }}|{{ [1, 2] | length }}|{{ 'h\303\251llo' | length }}|{{ {'a': 1} | count }}|{{ [1, 2] | first }}|{{ [1, 2] | last }}|{{ [1, 2, 3] | join(', ') }}|{{ u | default('dflt') }}|{{ '' | default('e', true) }}|{{ u | d('d') }}|{{ {'b': 1, 'a': 2} | items | list }}|{{ 'x-x' | replace('x', 'y') }}|{{ [3, 1, 2] | sort }}|{{ ['b', 'A', 'c'] | sort }}|{{ [3, 1, 2] | sort(reverse=true) }}|{{ [1, 1, 2] | unique | list }}|{{ [1, 2] | reverse | list }}|{{ '3' | int + 1 }}|{{ '2.5' | float }}|{{ 'x' | int }}|{{ 5 | string }}|{{ [1, 2] | list }}|{{ 'ab' | list }}|{{ -3 | abs }}|{{ [1, 2, 3] | sum }}|{{ [4, 2, 8] | min }}{{ [4, 2, 8] | max }}|{{ 'x' | safe }}|{{ 2.567 | round(1) }}",
	 "{}",
	 "hi|AB|ab|Hello World-X (Y|Hello world|2|5|1|1|2|1, 2, 3|dflt|e|d|[('b', 1), ('a', 2)]|y-y|[1, 2, 3]|['A', 'b', 'c']|[3, 2, 1]|[1, 2]|[2, 1]|4|2.5|0|5|[1, 2]|['a', 'b']|3|6|28|x|2.6"},
	{"{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ {'b': 1, 'a': '\303\251'} | tojson(sort_keys=true) }}|{{ '\303\251\360\237\230\200' | tojson(ensure_ascii=true) }}|{{ [1, [2, {}], []] | tojson(indent=1) }}|{{ {'a': 1} | tojson(separators=(',', ':')) }}|{{ 'tab\\t\\u0001' | tojson }}",
	 "{\"d\": {\"a\": [1, 2.5, null, true], \"s\": \"q\\\"\\n\"}}",
	 "{\"a\": [1, 2.5, null, true], \"s\": \"q\\\"\\n\"}|{\n  \"a\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"s\": \"q\\\"\\n\"\n}|{\"a\": \"\303\251\", \"b\": 1}|\"\\u00e9\\ud83d\\ude00\"|[\n 1,\n [\n  2,\n  {}\n ],\n []\n]|{\"a\":1}|\"tab\\t\\u0001\""},
	{"{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}|{{ ms | rejectattr('role', 'eq', 'user') | list | length }}|{{ ms | map(attribute='role') | list }}|{{ ms | selectattr('missing') | list }}|{{ ms | map(attribute='nope', default='n') | first }}|{{ [0, 1, '', 'a'] | select | list }}|{{ [1, 2, 3, 4] | reject('odd') | list }}|{{ ['a', 'B'] | map('upper') | join }}|{{ ms | map(attribute='role') | unique | list }}|{{ ms | sort(attribute='content') | map(attribute='content') | join }}",
	 "{\"ms\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"U1\"}, {\"role\": \"assistant\", \"content\": \"A\"}, {\"role\": \"user\", \"content\": \"U2\"}]}",
	 "U1,U2|2|['system', 'user', 'assistant', 'user']|[]|n|[1, 'a']|[2, 4]|AB|['system', 'user', 'assistant']|ASU1U2"},
	{"{{ ' a b '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ 'xxa'.lstrip('x') }}|{{ 'a\\n\\n'.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}|{{ 'hello wORLD'.title() }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ d.get('s') }}{{ d.get('z', 'none') }}{{ d.get('z') }}|{{ d.keys() | list }}|{{ d.items() | list }}|{{ '-'.join(['a', 'b']) }}|{{ 'banana'.count('a') }}|{{ 'banana'.find('n') }}|{{ '12'.isdigit() }}|{{ 'hi'.capitalize() }}",
	 "{\"d\": {\"a\": [1, 2.5, null, true], \"s\": \"q\\\"\\n\"}}",
	 "a b|a|a|a|['a', 'b', '', 'c']|['a', 'b']|['a', 'b c']|True|True|ABab|Hello World|bba|q\"\nnoneNone|['a', 's']|[('a', [1, 2.5, None, True]), ('s', 'q\"\\n')]|a-b|3|2|True|Hi"},
	{"{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %H:%M') }} {{ strftime_now('%B %d, %A') }}",
	 "{}",
	 "26 Jul 2024 2024-07-26 00:00 July 26, Friday"},
	{"{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(3, blank=true) }}|{{ 'one two, three' | wordcount }}",
	 "{}",
	 "a\n  b\n\n  c|  a\n  b|a\n   \n   b|3"},
	{"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}{% for c in 'h\303\251' %}[{{ c }}]{% endfor %}",
	 "{\"d\": {\"x\": 1, \"y\": [2]}}",
	 "x=1;y=[2];xy[h][\303\251]"},
	{"{{ 1 ~ 'a' ~ none ~ u ~ true ~ [1] }}|{{ 1 < 2 < 3 }}{{ 1 < 2 > 3 }}{{ 'a' < 'b' }}{{ [1, 2] == [1, 2] }}{{ 1 == 1.0 }}{{ {'a': 1} == {'a': 1} }}{{ u == u }}{{ none == false }}",
	 "{}",
	 "1aNoneTrue[1]|TrueFalseTrueTrueTrueTrueTrueFalse"},
	{"{% filter upper %}abc{{ 'd' }}{% endfilter %}|  {%+ if true %}x{% endif %}\n  {% if true %}y{% endif %}",
	 "{}",
	 "ABCD|  xy"},
	{"x\n",
	 "{}",
	 "x"},
	{"x\n\n",
	 "{}",
	 "x\n"},
	{"a\r\nb\rc",
	 "{}",
	 "a\nb\nc"},
	{"{{ messages[0]['content'] }}{{ messages[0].content }}{{ messages.0.role }}{{ messages[-1].role }}{{ messages | length - 1 }}{{ (messages | length) * 2 }}{{ messages[1:] | length }}",
	 "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"U1\"}, {\"role\": \"assistant\", \"content\": \"A\"}, {\"role\": \"user\", \"content\": \"U2\"}]}",
	 "SSsystemuser383"},
	{"{%- for m in messages -%}\n  {%- if m.role == 'system' -%}\n    <<{{ m.content }}>>\n  {%- elif m.role == 'user' %}\n[U] {{ m.content }}\n  {%- else %}\n[A] {{ m.content }}\n  {% endif -%}\n{%- endfor %}\n{% if add_generation_prompt %}[A]{% endif %}",
	 "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"U1\"}, {\"role\": \"assistant\", \"content\": \"A\"}, {\"role\": \"user\", \"content\": \"U2\"}], \"add_generation_prompt\": true}",
	 "<<S>>[U] U1[A] A\n[U] U2[A]"},
	{"{% if x %}1{% elif y %}2{% elif z %}3{% else %}4{% endif %}{% if not x %}n{% endif %}",
	 "{\"y\": 0, \"z\": 1}",
	 "3n"},
	{"{{ {'a': 1, 'b': {'c': [1, 2]}}['b']['c'][1] }}{{ {'a': 1}.a }}{{ x.missing }}|{{ x.missing is defined }}{{ none.attr is defined }}",
	 "{\"x\": {}}",
	 "21|FalseFalse"},
	{"{% set a, b = [1, 2] %}{{ b }}{{ a }}{% set t = (1, 2) %}{{ t }}{{ t | length }}",
	 "{}",
	 "21(1, 2)2"},
	{"{{ tools | tojson }}{{ tools[0].function.parameters.properties.items() | list | length }}",
	 "{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"integer\"}, \"y\": {\"type\": \"number\"}}}}}]}",
	 "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"integer\"}, \"y\": {\"type\": \"number\"}}}}}]2"},
};

static int render(const char *src, size_t n, const char *ctx, const tok_jinja_opts *o, char **out, char *err, size_t errlen)
{
	tok_jinja *t = NULL;
	json_t *c = ctx ? json_loads(ctx, 0, NULL) : NULL;
	int rc = tok_jinja_parse(&t, src, n, err, errlen);
	if (!rc)
		rc = tok_jinja_render(t, c, o, out, NULL, err, errlen);
	tok_jinja_free(t);
	json_decref(c);
	return rc;
}

static const tok_jinja_opts fixed = {.fixed_now = 1, .now = 1721952000};

static void test_jinja_language(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *out = NULL, err[300] = "";
		int rc = render(cases[i].src, strlen(cases[i].src), cases[i].ctx, &fixed, &out, err, sizeof err);
		if (rc)
			fprintf(stderr, "  case %zu: %s\n", i, err);
		T_EQ_INT(rc, 0);
		if (!rc && strcmp(out, cases[i].want))
			fprintf(stderr, "  case %zu: %s\n", i, cases[i].src);
		T_EQ_STR(out, cases[i].want);
		free(out);
	}
}

/* rc and a piece of the message for template src */
static void fails(const char *src, const char *ctx, int want_rc, const char *want_msg)
{
	char *out = NULL, err[300] = "";
	int rc = render(src, strlen(src), ctx, &fixed, &out, err, sizeof err);
	if (rc != want_rc || !strstr(err, want_msg))
		fprintf(stderr, "  template %.80s: rc %d, err \"%s\" (want %d, \"%s\")\n", src, rc, err, want_rc, want_msg);
	T_EQ_INT(rc, want_rc);
	T_CHECK(strstr(err, want_msg) != NULL);
	T_CHECK(out == NULL);
	free(out);
}

static void test_jinja_errors(void)
{
	/* syntax: the line and what is wrong */
	fails("{% if %}", NULL, -EINVAL, "line 1: unexpected the end of the tag");
	fails("a\n{% for x in %}{% endfor %}", NULL, -EINVAL, "line 2");
	fails("{{ 1 + }}", NULL, -EINVAL, "unexpected");
	fails("{% endfor %}", NULL, -EINVAL, "unexpected {% endfor %}");
	fails("{% if x %}\n\nx", NULL, -EINVAL, "missing {% endif %}");
	fails("{{ 'abc }}", NULL, -EINVAL, "unterminated string");
	fails("{% include 'x' %}", NULL, -EINVAL, "not supported");
	fails("{{ x | }}", NULL, -EINVAL, "filter name");
	fails("{% bogus %}", NULL, -EINVAL, "unknown tag 'bogus'");
	fails("{{ x", NULL, -EINVAL, "unclosed");
	fails("{# x", NULL, -EINVAL, "unclosed comment");
	fails("{% raw %}x", NULL, -EINVAL, "endraw");
	fails("{{ '\\x4' }}", NULL, -EINVAL, "escape");
	fails("{{ 99999999999999999999 }}", NULL, -EINVAL, "too large");
	/* rendering */
	fails("{{ raise_exception('Conversation roles must alternate') }}", NULL, -EINVAL,
	      "line 1: raise_exception: Conversation roles must alternate");
	fails("{{ foo() }}", NULL, -EINVAL, "'foo' is undefined");
	fails("{{ x.y.z }}", NULL, -EINVAL, "'x' is undefined");
	fails("{{ 'a' + 1 }}", NULL, -EINVAL, "unsupported operand type(s) for +: 'str' and 'int'");
	fails("{{ 1 / 0 }}", NULL, -EINVAL, "division by zero");
	fails("{{ 'a' < 1 }}", NULL, -EINVAL, "not supported between");
	fails("{{ x | nofilter }}", "{\"x\": 1}", -EINVAL, "unknown filter 'nofilter'");
	fails("{{ x is notest }}", "{\"x\": 1}", -EINVAL, "unknown test 'notest'");
	fails("{% for x in 5 %}{% endfor %}", NULL, -EINVAL, "'int' object is not iterable");
	fails("{% set x.y = 1 %}", "{\"x\": {}}", -EINVAL, "not a namespace()");
	fails("{{ 'x'.nomethod() }}", NULL, -EINVAL, "no method 'nomethod'");
	fails("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", NULL, -EINVAL, "no more than 1 arguments");
	fails("{{ 2 ** 64 }}", NULL, -EINVAL, "integer overflow");
	fails("{{ [1][::0] }}", NULL, -EINVAL, "slice step cannot be zero");
	fails("{{ {'a': u} | tojson }}", NULL, -EINVAL, "not JSON serializable");
	fails("{% break %}", NULL, -EINVAL, "outside a loop");
	/* extreme steps and bounds stay defined */
	char *o2 = NULL, e2[200];
	T_EQ_INT(render("{{ [1, 2, 3][::9223372036854775807] }}{{ [1, 2, 3][::-9223372036854775807 - 1] }}"
			"{{ range(-9000000000000000000, 9000000000000000000, 9000000000000000000) | list }}", 163, NULL, NULL, &o2, e2, sizeof e2), 0);
	T_EQ_STR(o2, "[1][3][-9000000000000000000, 0]");
	free(o2);
	/* string filters take str() of an undefined value (Python Jinja2's output) */
	T_EQ_INT(render("[{{ u|upper }}{{ u|title }}{{ u|replace('a','b') }}{{ u|wordcount }}{{ u|capitalize }}{{ u|lower }}]", 100,
			NULL, NULL, &o2, e2, sizeof e2), 0);
	T_EQ_STR(o2, "[0]");
	free(o2);
	fails("{{ u | indent }}", NULL, -EINVAL, "'u' is undefined");
	T_EQ_INT(render("{{ none|selectattr('a')|list }}{{ none|map('upper')|list }}{{ none|reject|list }}{{ 0|select|list }}", 100,
			NULL, NULL, &o2, e2, sizeof e2), 0);
	T_EQ_STR(o2, "[][][][]");
	free(o2);
	/* printf-style formatting of strings (Python Jinja2's output) */
	const char *fmt = "{{ '[INST] %s [/INST]' % 'hi' }}|{{ '%s=%d %r %% %f' % ('a', 3.7, 'q', 1.5) }}|{{ '%i' % 2 }}";
	T_EQ_INT(render(fmt, strlen(fmt), NULL, NULL, &o2, e2, sizeof e2), 0);
	T_EQ_STR(o2, "[INST] hi [/INST]|a=3 'q' % 1.500000|2");
	free(o2);
	const char *ds = "{{ {'b': 1, 'A': 3, 'c': 2}|dictsort }}{{ {'b': 1, 'A': 3, 'c': 2}|dictsort(by='value') }}"
			 "{{ {'b': 1, 'A': 3, 'c': 2}|dictsort(reverse=true) }}{{ '%s-%d'|format('a', 2) }}";
	T_EQ_INT(render(ds, strlen(ds), NULL, NULL, &o2, e2, sizeof e2), 0);
	T_EQ_STR(o2, "[('A', 3), ('b', 1), ('c', 2)][('b', 1), ('c', 2), ('A', 3)][('c', 2), ('b', 1), ('A', 3)]a-2");
	free(o2);
	const char *py = "{{ 2.5|round }}{{ 3.5|round }}{{ 3|round }}{{ 2.675|round(2) }}{{ 1.5|round(0, 'floor') }}{{ -2.5|round }}|"
			 "{{ {'a': 1}.items() }}{{ {'a': 1}.keys() }}{{ {'a': 1}.values() }}{{ {'a': 1}|dictsort }}|{{ [u, 1] }}";
	T_EQ_INT(render(py, strlen(py), NULL, NULL, &o2, e2, sizeof e2), 0);
	T_EQ_STR(o2, "2.04.032.671.0-2.0|dict_items([('a', 1)])dict_keys(['a'])dict_values([1])[('a', 1)]|[Undefined, 1]");
	free(o2);
	fails("{{ [1] in {'a': 1} }}", NULL, -EINVAL, "unhashable type: 'list'");
	/* case mapping beyond ASCII (Latin-1, Latin Extended-A, Greek, Cyrillic), title over CJK */
	const char *cm = "{{ 'h\u00e9llo \u00ff \u0151 \u03c3\u03c2 \u0436\u0451'.upper() }}|{{ '\u00c9COLE \u0178 \u0398 \u0416\u0401' | lower }}|"
			 "{{ '\u4f60\u597dworld \u00e9t\u00e9' | title }}|{{ '\u4f60\u597dworld \u00e9t\u00e9'.title() }}|{{ '\u00e9T\u00c9' | capitalize }}";
	T_EQ_INT(render(cm, strlen(cm), NULL, NULL, &o2, e2, sizeof e2), 0);
	T_EQ_STR(o2, "H\u00c9LLO \u0178 \u0150 \u03a3\u03a3 \u0416\u0401|\u00e9cole \u00ff \u03b8 \u0436\u0451|"
		     "\u4f60\u597dworld \u00c9t\u00e9|\u4f60\u597dWorld \u00c9t\u00e9|\u00c9t\u00e9");
	free(o2);
	fails("{{ (1, 2) < [1, 2] }}", NULL, -EINVAL, "not supported between instances of 'tuple' and 'list'");
	fails("{{ [{'a': 1}] | unique | list }}", NULL, -EINVAL, "unhashable type");
	fails("{{ true | indent }}", NULL, -EINVAL, "indent needs a string");
	fails("{{ '%s %s' % ('a',) }}", NULL, -EINVAL, "not enough arguments");
	fails("{{ '%s' % ('a', 'b') }}", NULL, -EINVAL, "not all arguments converted");
	fails("{{ '%x' % 1 }}", NULL, -EINVAL, "only %s %r %d %i %f");
	/* the context must be an object */
	tok_jinja *t = NULL;
	char *out = NULL;
	T_EQ_INT(tok_jinja_parse(&t, "x", 1, NULL, 0), 0);
	json_t *arr = json_array();
	T_EQ_INT(tok_jinja_render(t, arr, NULL, &out, NULL, NULL, 0), -EINVAL);
	json_decref(arr);
	T_EQ_INT(tok_jinja_render(t, NULL, NULL, &out, NULL, NULL, 0), 0);
	T_EQ_STR(out, "x");
	free(out);
	tok_jinja_free(t);
	/* an empty template renders nothing */
	T_EQ_INT(tok_jinja_parse(&t, "", 0, NULL, 0), 0);
	T_EQ_INT(tok_jinja_render(t, NULL, NULL, &out, NULL, NULL, 0), 0);
	T_EQ_STR(out, "");
	free(out);
	tok_jinja_free(t);
}

static char *repeat(const char *a, int n, const char *mid, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), lm = strlen(mid);
	char *s = malloc(la * (size_t)n + lm + lb * (size_t)n + 1), *p = s;
	for (int i = 0; i < n; i++, p += la)
		memcpy(p, a, la);
	memcpy(p, mid, lm);
	p += lm;
	for (int i = 0; i < n; i++, p += lb)
		memcpy(p, b, lb);
	*p = 0;
	return s;
}

/* what a hostile template meets: every limit fails fast with a clear error */
static void test_jinja_limits(void)
{
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	fails("{% for x in range(10**9) %}{% endfor %}", NULL, -E2BIG, "range() of more than");
	fails("{% for a in range(1000) %}{% for b in range(1001) %}{% endfor %}{% endfor %}", NULL, -E2BIG, "iterations");
	fails("{{ 'x' * 10**12 }}", NULL, -E2BIG, "MiB of memory");
	fails("{{ [1, 2] * 10**12 }}", NULL, -E2BIG, "MiB of memory");
	fails("{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", NULL,
	      -E2BIG, "MiB of memory");
	fails("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", NULL, -E2BIG, "longer than");
	fails("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", NULL, -E2BIG, "macro calls nest more than");
	fails("{% for i in range(1000000) %}{% for j in range(1000000) if false %}{% endfor %}{% endfor %}", NULL, -E2BIG, "more than");
	fails("{% for i in range(600000) %}{% endfor %}{% for i in range(600000) %}{% endfor %}", NULL, -E2BIG, "iterations");
	char *deep = repeat("(", 5000, "1", ")");
	char *src = malloc(strlen(deep) + 8);
	sprintf(src, "{{ %s }}", deep);
	fails(src, NULL, -E2BIG, "nest more than");
	free(src);
	free(deep);
	deep = repeat("{% if 1 %}", 300, "x", "{% endif %}");
	fails(deep, NULL, -E2BIG, "nest more than");
	free(deep);
	deep = repeat("- ", 100000, "1", "");
	src = malloc(strlen(deep) + 8);
	sprintf(src, "{{ %s }}", deep);
	fails(src, NULL, -E2BIG, "nest more than");
	free(src);
	free(deep);
	deep = repeat("not ", 100000, "1", "");
	src = malloc(strlen(deep) + 8);
	sprintf(src, "{{ %s }}", deep);
	fails(src, NULL, -E2BIG, "nest more than");
	free(src);
	free(deep);
	deep = repeat("{% elif 0 %}", 20000, "", ""); /* an elif chain nests like if-in-else */
	src = malloc(strlen(deep) + 32);
	sprintf(src, "{%% if 0 %%}%s{%% endif %%}", deep);
	fails(src, NULL, -E2BIG, "nest more than");
	free(src);
	free(deep);
	src = malloc(40000);
	strcpy(src, "{{ x");
	for (int i = 0; i < 3000; i++)
		strcat(src, "|trim");
	strcat(src, " }}");
	fails(src, NULL, -E2BIG, "nest more than");
	free(src);
	/* values nested deeper than the tree by a loop, or a namespace holding itself */
	fails("{% set ns = namespace(x=1) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}", NULL,
	      -E2BIG, "a value nests more than");
	fails("{% set ns = namespace(x=1) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x | tojson }}", NULL,
	      -E2BIG, "nests more than");
	fails("{% set ns = namespace(x=1) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x < [ns.x] }}", NULL,
	      -E2BIG, "a value nests more than");
	fails("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", NULL, -E2BIG, "holds itself");
	char *o3 = NULL, e3[200];
	const char *selfeq = "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns == ns }}{{ [ns] in [[ns]] }}";
	T_EQ_INT(render(selfeq, strlen(selfeq), NULL, NULL, &o3, e3, sizeof e3), 0);
	T_EQ_STR(o3, "TrueTrue");
	free(o3);
	/* a source over the size limit */
	size_t big = TOK_JINJA_MAX_SRC + 1;
	src = malloc(big);
	memset(src, 'x', big);
	tok_jinja *t = NULL;
	char err[200];
	T_EQ_INT(tok_jinja_parse(&t, src, big, err, sizeof err), -E2BIG);
	T_CHECK(strstr(err, "bytes") != NULL);
	free(src);
	/* an output limit of the caller's */
	tok_jinja_opts small = {.max_out = 10};
	char *out = NULL;
	T_EQ_INT(render("{{ 'x' * 11 }}", 14, NULL, &small, &out, err, sizeof err), -E2BIG);
	T_EQ_INT(render("{{ 'x' * 10 }}", 14, NULL, &small, &out, err, sizeof err), 0);
	free(out);
	/* a million iterations that stay within the limits still render */
	T_EQ_INT(render("{% for i in range(1000000) %}{% endfor %}ok", 43, NULL, NULL, &out, err, sizeof err), 0);
	T_EQ_STR(out, "ok");
	free(out);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
	fprintf(stderr, "  hostile templates refused in %.2f s\n", s);
	T_CHECK(s < (T_UNDER_ASAN ? 120 : 30));
}

/* one parsed template rendered from several threads at once gives the same text */
static tok_jinja *shared;
static void *worker(void *arg)
{
	json_t *ctx = json_pack("{s:[{s:s,s:s},{s:s,s:s}],s:b}", "messages", "role", "user", "content", "hi",
				"role", "assistant", "content", "yo", "add_generation_prompt", 1);
	long bad = 0;
	for (int i = 0; i < 200; i++) {
		char *out = NULL;
		if (tok_jinja_render(shared, ctx, NULL, &out, NULL, NULL, 0) ||
		    strcmp(out, "<user>hi</user><assistant>yo</assistant><assistant>"))
			bad++;
		free(out);
	}
	json_decref(ctx);
	(void)arg;
	return (void *)bad;
}

static void test_jinja_threads(void)
{
	const char *src = "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</{{ m.role }}>{% endfor %}"
			  "{% if add_generation_prompt %}<assistant>{% endif %}";
	T_EQ_INT(tok_jinja_parse(&shared, src, strlen(src), NULL, 0), 0);
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, worker, NULL);
	long total = 0;
	for (int i = 0; i < 4; i++) {
		void *r;
		pthread_join(th[i], &r);
		total += (long)r;
	}
	T_EQ_INT(total, 0);
	tok_jinja_free(shared);
}

void t_main(void)
{
	T_RUN(test_jinja_language);
	T_RUN(test_jinja_errors);
	T_RUN(test_jinja_limits);
	T_RUN(test_jinja_threads);
}
