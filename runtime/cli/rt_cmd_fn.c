/* rt_cmd_fn.c — the CLI commands that talk to a running daemon over HTTP (rt_client):
 * `thaw deploy` (PUT /v1/functions/NAME), `thaw invoke` (POST /v1/functions/NAME/invoke),
 * `thaw status` (GET /v1/functions as a table) and `thaw functions get|rm`.
 * Exit status: 0 success, 1 failure at run time (server unreachable, non-2xx answer),
 * 2 bad usage. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "runtime/cli/rt_cli.h"
#include "runtime/cli/rt_client.h"
#include "runtime/store/rt_manifest.h"

#define URL_HELP \
	"  --url URL             daemon URL (default $THAW_URL, else http://$HOST:$PORT when\n" \
	"                        either is set, else " RT_CLIENT_DEFAULT_URL ")\n"

/* request wraps rt_client_request for a command: prints connection problems, returns 0 (any
 * HTTP status, in *resp) or 1. */
static int request(const char *cmd, const char *url, const char *method, const char *path,
		   const char *body, size_t body_len, double timeout_s, rt_client_resp *resp)
{
	rt_client_url u;
	char err[512];
	if (rt_client_url_parse(url, &u, err, sizeof err) < 0) {
		fprintf(stderr, "thaw %s: %s\n", cmd, err);
		return 1;
	}
	int rc = rt_client_request(&u, method, path, body, body_len, "application/json", timeout_s,
				   resp, err, sizeof err);
	if (rc < 0) {
		fprintf(stderr, "thaw %s: %s", cmd, err);
		if (rc == -ECONNREFUSED || rc == -ENOENT || rc == -EHOSTUNREACH || rc == -ENETUNREACH ||
		    rc == -ETIMEDOUT)
			fprintf(stderr, " (is `thaw serve` running there? set --url, $THAW_URL or $PORT)");
		fputc('\n', stderr);
		return 1;
	}
	return 0;
}

/* http_failed prints a non-2xx answer ("thaw CMD: HTTP 404: <error>") and returns 1; 0 on 2xx. */
static int http_failed(const char *cmd, const rt_client_resp *r)
{
	if (r->status >= 200 && r->status < 300)
		return 0;
	char msg[1024];
	rt_client_error_text(r, msg, sizeof msg);
	fprintf(stderr, "thaw %s: HTTP %d%s%s\n", cmd, r->status, msg[0] ? ": " : "", msg);
	return 1;
}

/* print_json_body prints a JSON answer with its reals in shortest form (jansson writes 0.003
 * as 0.0030000000000000001); a body that is not JSON goes out as it came. */
static void print_json_body(const rt_client_resp *r)
{
	json_t *j = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, NULL);
	if (j)
		rt_cli_json_print(stdout, j, 0);
	else
		printf("%s%s", r->body, r->body_len && r->body[r->body_len - 1] == '\n' ? "" : "\n");
	json_decref(j);
}

static int check_name(const char *cmd, const char *name)
{
	char err[256];
	if (rt_manifest_name_valid(name, err, sizeof err) < 0) {
		fprintf(stderr, "thaw %s: %s\n", cmd, err);
		return 2;
	}
	return 0;
}

static const char *str_or_dash(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s && s[0] ? s : "-";
}

/* fmt_traffic writes a traffic split ({"1": 90, "latest": 10}) as the revisions that serve:
 * "1=90%,3=10%", with "latest" resolved to the latest revision when it is known and entries
 * at 0% left out; "-" when there is no split. Returns buf. */
static const char *fmt_traffic(json_t *traffic, json_t *latest, char *buf, size_t cap)
{
	const char *k;
	json_t *v;
	size_t n = 0;
	buf[0] = 0;
	json_object_foreach(traffic, k, v) {
		if (!json_is_integer(v) || json_integer_value(v) <= 0 || n >= cap)
			continue;
		char rev[24];
		if (strcmp(k, "latest") == 0 && json_is_integer(latest))
			snprintf(rev, sizeof rev, "%lld", (long long)json_integer_value(latest));
		else
			snprintf(rev, sizeof rev, "%s", k);
		int w = snprintf(buf + n, cap - n, "%s%s=%lld%%", n ? "," : "", rev,
				 (long long)json_integer_value(v));
		n = w < 0 ? cap : n + (size_t)w;
	}
	if (!buf[0])
		snprintf(buf, cap, "-");
	return buf;
}

/* ---- deploy ---- */

static void deploy_usage(FILE *f)
{
	fprintf(f,
		"usage: thaw deploy NAME --snapshot F [--kind K] [options]\n"
		"       thaw deploy NAME --kind echo [options]\n"
		"       thaw deploy NAME --traffic REV=PCT,...\n\n"
		"Creates function NAME or a new revision of it (PUT /v1/functions/NAME). Options left out\n"
		"take the daemon's defaults (docs/api.md, \"Functions API: manifest\").\n\n"
		"  --kind K              function kind: echo, mlp, llama, ... (default: the kind the\n"
		"                        snapshot's metadata records, as `thaw snapshot inspect` shows)\n"
		"  --snapshot F          .thaw file name in DATA/snapshots, or an absolute path under an\n"
		"                        allowed root (required except for echo); a relative path to\n"
		"                        a local file (./m.thaw, m.thaw when it exists here) is pushed\n"
		"                        to the server first (thaw snapshot push)\n"
		"  --model DIR|FILE      a Hugging Face directory or .safetensors file: packed here (as\n"
		"                        thaw snapshot pack --kind K, tokenizer included), pushed as\n"
		"                        NAME-TIME.thaw, then deployed, in one step\n"
		"  --min-scale N         0 (scale to zero) or 1 (keep warm); default 0\n"
		"  --idle-timeout S      seconds idle before eviction from the GPU; default 30\n"
		"  --concurrency N       calls running at once, 1..1024; default 8\n"
		"  --max-queue N         calls waiting (cold start, busy), 0..65536; default 64\n"
		"  --timeout S           seconds a call may wait and run, 0.1..3600; default 60\n"
		"  --device D            auto, cpu or cuda:N; default auto\n"
		"  --max-batch N         most calls merged into one batch (a generative kind: most\n"
		"                        sequences advanced by one step), 1..1024; default 8\n"
		"  --max-batch-delay-us N  longest wait for a batch to fill; default 500\n"
		"  --no-prefix-caching   a generative kind does not share the KV blocks of common\n"
		"                        prompt prefixes between calls (default: it does)\n"
		"  --rate-limit R/s,B    per-caller limit on calls: R a second, bursts of B (e.g.\n"
		"                        10/s,20); default none\n"
		"  --traffic SPLIT       REV=PCT,... with REV a revision number or 'latest', summing to\n"
		"                        100 (default: all to the new revision). Given alone (no --kind),\n"
		"                        it only moves traffic between existing revisions (rollback)\n"
		"  --json                print the daemon's answer (the function) as JSON\n"
		URL_HELP
		"  -h, --help            this text\n");
}

/* flag names for the manifest fields, to word validation messages in terms of the CLI */
static const char *const field_flag[][2] = {
	{"kind", "--kind"}, {"snapshot", "--snapshot"}, {"min_scale", "--min-scale"},
	{"idle_timeout_s", "--idle-timeout"}, {"concurrency", "--concurrency"},
	{"max_queue", "--max-queue"}, {"timeout_s", "--timeout"}, {"device", "--device"},
	{"max_batch", "--max-batch"}, {"max_batch_delay_us", "--max-batch-delay-us"},
	{"rate_limit", "--rate-limit"}, {"traffic", "--traffic"},
};

static void print_manifest_error(const char *err)
{
	for (size_t i = 0; i < sizeof field_flag / sizeof field_flag[0]; i++) {
		char pre[64];
		int n = snprintf(pre, sizeof pre, "field '%s': ", field_flag[i][0]);
		if (strncmp(err, pre, (size_t)n) == 0) {
			fprintf(stderr, "thaw deploy: %s: %s\n", field_flag[i][1], err + n);
			return;
		}
	}
	fprintf(stderr, "thaw deploy: %s\n", err);
}

static int set_int(json_t *o, const char *field, const char *flag, const char *s)
{
	char *e;
	errno = 0;
	long long v = strtoll(s, &e, 10);
	if (errno || e == s || *e) {
		fprintf(stderr, "thaw deploy: %s: '%s' is not an integer\n", flag, s);
		return 2;
	}
	json_object_set_new(o, field, json_integer(v));
	return 0;
}

static int set_seconds(json_t *o, const char *field, const char *flag, const char *s)
{
	char *e;
	errno = 0;
	double v = strtod(s, &e);
	if (errno || e == s || *e) {
		fprintf(stderr, "thaw deploy: %s: '%s' is not a number of seconds\n", flag, s);
		return 2;
	}
	json_object_set_new(o, field, v == (double)(long long)v ? json_integer((long long)v) : json_real(v));
	return 0;
}

/* parse_traffic turns "1=50,latest=50" into {"1":50,"latest":50} (validated later). */
static int parse_traffic(json_t *o, const char *s)
{
	json_t *t = json_object();
	char *copy = strdup(s), *save = NULL;
	int rc = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '='), *e;
		if (!eq || eq == tok) {
			rc = 2;
			break;
		}
		*eq = 0;
		errno = 0;
		long v = strtol(eq + 1, &e, 10);
		if (errno || e == eq + 1 || *e || json_object_get(t, tok)) {
			rc = 2;
			break;
		}
		json_object_set_new(t, tok, json_integer(v));
	}
	if (rc == 0 && json_object_size(t) == 0)
		rc = 2;
	if (rc)
		fprintf(stderr, "thaw deploy: --traffic: '%s' must be REV=PERCENT,... (e.g. 1=90,2=10 "
			"or latest=100)\n", s);
	else
		json_object_set_new(o, "traffic", json_incref(t));
	json_decref(t);
	free(copy);
	return rc;
}

int rt_deploy_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"kind", required_argument, 0, 'k'},
		{"snapshot", required_argument, 0, 's'},
		{"model", required_argument, 0, 'M'},
		{"min-scale", required_argument, 0, 'm'},
		{"idle-timeout", required_argument, 0, 'i'},
		{"concurrency", required_argument, 0, 'c'},
		{"max-queue", required_argument, 0, 'q'},
		{"timeout", required_argument, 0, 't'},
		{"device", required_argument, 0, 'd'},
		{"max-batch", required_argument, 0, 'b'},
		{"max-batch-delay-us", required_argument, 0, 'B'},
		{"no-prefix-caching", no_argument, 0, 'P'},
		{"traffic", required_argument, 0, 'T'},
		{"rate-limit", required_argument, 0, 'R'},
		{"json", no_argument, 0, 'j'},
		{"url", required_argument, 0, 'u'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	const char *url = NULL, *model = NULL;
	json_t *man = json_object();
	int c, rc = 0, as_json = 0;
	optind = 0;
	opterr = 1;
	while (rc == 0 && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': json_object_set_new(man, "kind", json_string(optarg)); break;
		case 's': json_object_set_new(man, "snapshot", json_string(optarg)); break;
		case 'M': model = optarg; break;
		case 'm': rc = set_int(man, "min_scale", "--min-scale", optarg); break;
		case 'i': rc = set_seconds(man, "idle_timeout_s", "--idle-timeout", optarg); break;
		case 'c': rc = set_int(man, "concurrency", "--concurrency", optarg); break;
		case 'q': rc = set_int(man, "max_queue", "--max-queue", optarg); break;
		case 't': rc = set_seconds(man, "timeout_s", "--timeout", optarg); break;
		case 'd': json_object_set_new(man, "device", json_string(optarg)); break;
		case 'b': rc = set_int(man, "max_batch", "--max-batch", optarg); break;
		case 'B': rc = set_int(man, "max_batch_delay_us", "--max-batch-delay-us", optarg); break;
		case 'P': json_object_set_new(man, "prefix_caching", json_false()); break;
		case 'T': rc = parse_traffic(man, optarg); break;
		case 'R': json_object_set_new(man, "rate_limit", json_string(optarg)); break;
		case 'j': as_json = 1; break;
		case 'u': url = optarg; break;
		case 'h': deploy_usage(stdout); json_decref(man); return 0;
		default: rc = 2; break;
		}
	}
	if (rc) {
		json_decref(man);
		return 2;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "thaw deploy: expected one function NAME\n");
		deploy_usage(stderr);
		json_decref(man);
		return 2;
	}
	const char *name = argv[optind];
	if ((rc = check_name("deploy", name)) != 0) {
		json_decref(man);
		return rc;
	}
	/* --traffic alone moves traffic between existing revisions: no new revision */
	int traffic_only = json_object_size(man) == 1 && json_object_get(man, "traffic");
	if (!traffic_only && !json_object_get(man, "kind") && !json_object_get(man, "snapshot")) {
		fprintf(stderr, "thaw deploy: --snapshot or --kind is required (the kind defaults to the "
			"snapshot's; --traffic alone moves traffic)\n");
		json_decref(man);
		return 2;
	}
	/* a local --snapshot file, or --model packed here: pushed first (rt_cmd_upload.c) */
	if (!traffic_only && (rc = rt_cli_deploy_upload(man, name, model, url)) != 0) {
		json_decref(man);
		return rc;
	}
	/* the daemon validates too (and knows the kinds); catch plain mistakes here */
	rt_manifest m;
	rt_traffic tr;
	char err[512];
	if (traffic_only ? rt_traffic_from_json(json_object_get(man, "traffic"), &tr, err, sizeof err) < 0
			 : rt_manifest_from_json(man, NULL, NULL, &m, err, sizeof err) < 0) {
		print_manifest_error(err);
		json_decref(man);
		return 2;
	}
	char *body = json_dumps(man, JSON_COMPACT);
	json_t *asked = json_incref(json_object_get(man, "traffic"));
	json_decref(man);
	char path[128];
	snprintf(path, sizeof path, "/v1/functions/%s", name);
	rt_client_resp r;
	if (!body || request("deploy", rt_client_pick_url(url), "PUT", path, body, strlen(body), 0, &r)) {
		free(body);
		json_decref(asked);
		return 1;
	}
	free(body);
	if ((rc = http_failed("deploy", &r)) == 0) {
		json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
		json_t *rev = json_object_get(j, "revision");
		char split[256];
		if (as_json && j)
			rt_cli_json_print(stdout, j, 0);
		else if (traffic_only)   /* the split as the daemon stored it, else as asked */
			printf("traffic of %s: %s (no new revision)\n", name,
			       fmt_traffic(json_is_object(json_object_get(j, "traffic")) ?
					   json_object_get(j, "traffic") : asked, rev, split, sizeof split));
		else if (json_is_integer(rev) && json_is_string(json_object_get(j, "kind")))
			printf("deployed %s revision %lld (kind %s)\n", name,
			       (long long)json_integer_value(rev), str_or_dash(j, "kind"));
		else if (json_is_integer(rev))
			printf("deployed %s revision %lld\n", name, (long long)json_integer_value(rev));
		else
			printf("%s%s", r.body, r.body_len && r.body[r.body_len - 1] == '\n' ? "" : "\n");
		json_decref(j);
	}
	json_decref(asked);
	rt_client_resp_free(&r);
	return rc;
}

/* ---- invoke ---- */

static void invoke_usage(FILE *f)
{
	fprintf(f,
		"usage: thaw invoke NAME --input JSON|@FILE|@-\n\n"
		"Calls function NAME (POST /v1/functions/NAME/invoke) and prints its JSON answer.\n"
		"A non-2xx answer is printed to stderr and the exit status is 1.\n\n"
		"  --input JSON          the request body; @FILE reads it from a file, @- from stdin\n"
		"  --timeout S           give up waiting for the answer after S seconds (default 3700)\n"
		URL_HELP
		"  -h, --help            this text\n");
}

/* read_all reads a whole stream into a malloc'd NUL-terminated buffer. */
static char *read_all(FILE *f, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *b = malloc(cap + 1);
	while (b) {
		size_t got = fread(b + n, 1, cap - n, f);
		n += got;
		if (n < cap) {
			if (ferror(f)) {
				free(b);
				return NULL;
			}
			break;
		}
		char *nb = realloc(b, cap * 2 + 1);
		if (!nb) {
			free(b);
			return NULL;
		}
		b = nb;
		cap *= 2;
	}
	if (b) {
		b[n] = 0;
		*len = n;
	}
	return b;
}

int rt_invoke_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"input", required_argument, 0, 'i'},
		{"timeout", required_argument, 0, 't'},
		{"url", required_argument, 0, 'u'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	const char *url = NULL, *input = NULL;
	double timeout = 3700;
	int c;
	optind = 0;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'i': input = optarg; break;
		case 't': {
			char *e;
			timeout = strtod(optarg, &e);
			if (e == optarg || *e || !(timeout > 0)) {
				fprintf(stderr, "thaw invoke: --timeout: '%s' is not a positive number\n", optarg);
				return 2;
			}
			break;
		}
		case 'u': url = optarg; break;
		case 'h': invoke_usage(stdout); return 0;
		default: return 2;
		}
	}
	if (optind != argc - 1 || !input) {
		fprintf(stderr, "thaw invoke: expected one function NAME and --input\n");
		invoke_usage(stderr);
		return 2;
	}
	const char *name = argv[optind];
	int rc;
	if ((rc = check_name("invoke", name)) != 0)
		return rc;
	char *body;
	size_t len;
	if (input[0] == '@') {
		FILE *f = strcmp(input, "@-") == 0 ? stdin : fopen(input + 1, "rb");
		if (!f) {
			fprintf(stderr, "thaw invoke: --input %s: %s\n", input, strerror(errno));
			return 2;
		}
		body = read_all(f, &len);
		if (f != stdin)
			fclose(f);
		if (!body) {
			fprintf(stderr, "thaw invoke: --input %s: read failed\n", input);
			return 1;
		}
	} else {
		body = strdup(input);
		len = strlen(input);
	}
	char path[160];
	snprintf(path, sizeof path, "/v1/functions/%s/invoke", name);
	rt_client_resp r;
	if (request("invoke", rt_client_pick_url(url), "POST", path, body, len, timeout, &r)) {
		free(body);
		return 1;
	}
	free(body);
	if ((rc = http_failed("invoke", &r)) == 0) {
		fwrite(r.body, 1, r.body_len, stdout);
		if (!r.body_len || r.body[r.body_len - 1] != '\n')
			fputc('\n', stdout);
	}
	rt_client_resp_free(&r);
	return rc;
}

/* ---- status ---- */

static void status_usage(FILE *f)
{
	fprintf(f,
		"usage: thaw status [--json]\n\n"
		"Lists the daemon's functions (GET /v1/functions): name, kind, latest revision, the\n"
		"revisions that serve (traffic: REV=PERCENT,...), state (cold | host | warm), device,\n"
		"resident bytes, last call; then the devices.\n\n"
		"  --json                print the daemon's JSON instead of a table\n"
		URL_HELP
		"  -h, --help            this text\n");
}

static void fmt_bytes(json_t *v, char *buf, size_t cap)
{
	rt_cli_fmt_bytes(json_is_number(v) ? json_number_value(v) : -1, buf, cap);
}


/* status_print_table prints the GET /v1/functions body as a table; -EPROTO when the body has
 * no "functions" array. */
static int status_print_table(FILE *out, const char *body, size_t len)
{
	json_error_t je;
	json_t *j = json_loadb(body, len, 0, &je);
	json_t *fa = json_object_get(j, "functions");
	if (!json_is_array(fa)) {
		json_decref(j);
		return -EPROTO;
	}
	fprintf(out, "%-24s %-8s %6s %-16s %-6s %-8s %10s  %s\n", "NAME", "KIND", "LATEST", "TRAFFIC",
		"STATE", "DEVICE", "RESIDENT", "LAST CALL");
	size_t i;
	json_t *f;
	json_array_foreach(fa, i, f) {
		char rev[24], bytes[32], split[256];
		json_t *rv = json_object_get(f, "revision");
		if (json_is_integer(rv))
			snprintf(rev, sizeof rev, "%lld", (long long)json_integer_value(rv));
		else
			snprintf(rev, sizeof rev, "-");
		fmt_bytes(json_object_get(f, "resident_bytes"), bytes, sizeof bytes);
		const char *last = json_string_value(json_object_get(f, "last_call"));
		fmt_traffic(json_object_get(f, "traffic"), rv, split, sizeof split);
		fprintf(out, "%-24s %-8s %6s %-16s %-6s %-8s %10s  %s\n", str_or_dash(f, "name"),
			str_or_dash(f, "kind"), rev, split, str_or_dash(f, "state"),
			str_or_dash(f, "device"), bytes, last && last[0] ? last : "never");
	}
	json_decref(j);
	return 0;
}

int rt_status_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, 0, 'j'},
		{"url", required_argument, 0, 'u'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	const char *url = NULL;
	int c, as_json = 0;
	optind = 0;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': as_json = 1; break;
		case 'u': url = optarg; break;
		case 'h': status_usage(stdout); return 0;
		default: return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "thaw status: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	rt_client_resp r;
	if (request("status", rt_client_pick_url(url), "GET", "/v1/functions", NULL, 0, 30, &r))
		return 1;
	int rc = http_failed("status", &r);
	if (rc == 0) {
		if (as_json) {
			print_json_body(&r);
		} else if (status_print_table(stdout, r.body, r.body_len) < 0) {
			fprintf(stderr, "thaw status: the daemon's answer has no \"functions\" array\n");
			rc = 1;
		}
	}
	rt_client_resp_free(&r);
	/* devices: memory for weights and how busy each lane is */
	if (rc == 0 && !as_json &&
	    request("status", rt_client_pick_url(url), "GET", "/v1/devices", NULL, 0, 30, &r) == 0) {
		json_t *j = r.status == 200 ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
		json_t *da = json_object_get(j, "devices");
		if (json_is_array(da)) {
			size_t i;
			json_t *d;
			printf("\n%-8s %-28s %10s %10s %6s %6s\n", "DEVICE", "NAME", "USED", "TOTAL", "BUSY",
			       "QUEUED");
			json_array_foreach(da, i, d) {
				char used[32], total[32];
				fmt_bytes(json_object_get(d, "memory_used"), used, sizeof used);
				fmt_bytes(json_object_get(d, "memory_total"), total, sizeof total);
				printf("%-8s %-28.28s %10s %10s %5.0f%% %6lld\n", str_or_dash(d, "device"),
				       str_or_dash(d, "name"), used, total,
				       100 * json_number_value(json_object_get(d, "busy_ratio")),
				       (long long)json_integer_value(json_object_get(d, "queued")));
			}
		}
		json_decref(j);
		rt_client_resp_free(&r);
	}
	return rc;
}

/* ---- functions get|rm ---- */

static void functions_usage(FILE *f)
{
	fprintf(f,
		"usage: thaw functions get NAME | rm NAME\n\n"
		"  get NAME              print the function's settings, revisions and traffic (JSON)\n"
		"  rm NAME               delete the function and all its revisions\n"
		URL_HELP
		"  -h, --help            this text\n");
}

int rt_functions_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"url", required_argument, 0, 'u'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	const char *url = NULL;
	int c;
	optind = 0;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'u': url = optarg; break;
		case 'h': functions_usage(stdout); return 0;
		default: return 2;
		}
	}
	if (optind != argc - 2 || (strcmp(argv[optind], "get") != 0 && strcmp(argv[optind], "rm") != 0)) {
		functions_usage(stderr);
		return 2;
	}
	int del = strcmp(argv[optind], "rm") == 0, rc;
	const char *name = argv[optind + 1];
	if ((rc = check_name("functions", name)) != 0)
		return rc;
	char path[128];
	snprintf(path, sizeof path, "/v1/functions/%s", name);
	rt_client_resp r;
	if (request("functions", rt_client_pick_url(url), del ? "DELETE" : "GET", path, NULL, 0, 30, &r))
		return 1;
	if ((rc = http_failed("functions", &r)) == 0) {
		if (del)
			printf("deleted %s\n", name);
		else
			print_json_body(&r);
	}
	rt_client_resp_free(&r);
	return rc;
}
