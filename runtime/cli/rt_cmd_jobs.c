/* rt_cmd_jobs.c — `thaw jobs submit|list|show|cancel`: a client of the daemon's jobs API
 * (POST /v1/jobs, GET /v1/jobs, GET|DELETE /v1/jobs/ID; docs/api.md, "Jobs API").
 * Exit status: 0 success (show --follow: the job succeeded), 1 failure at run time (server
 * unreachable, non-2xx answer, a followed job that failed or was cancelled), 2 bad usage. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include "runtime/cli/rt_cli.h"
#include "runtime/cli/rt_client.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: thaw jobs submit TYPE (--function NAME [--revision N] | --snapshot F) [options]\n"
		"       thaw jobs list [--state S] [--json]\n"
		"       thaw jobs show ID [--follow]\n"
		"       thaw jobs cancel ID\n\n"
		"Batch jobs that run on idle devices and yield to invocations within milliseconds.\n"
		"TYPE is quantize (int8 weight-only copy of a function's snapshot) or finetune (full\n"
		"fine-tune of an mlp on a CSV data set). The result becomes a new revision of the function;\n"
		"traffic moves to it only with --param promote=true.\n\n"
		"submit options:\n"
		"  --function NAME       source function (its latest revision, or --revision N)\n"
		"  --snapshot F          source snapshot instead (DATA/snapshots name or allowed path)\n"
		"  --param KEY=VALUE     a job parameter (repeatable); VALUE is read as JSON when it parses\n"
		"                        (numbers, true/false), else as a string. finetune: data, epochs,\n"
		"                        learning_rate, batch_size, seed, validation_split, task,\n"
		"                        feature_scale, promote; quantize: method (int8|int8:32), data,\n"
		"                        feature_scale, promote\n"
		"  --params JSON         all parameters as one JSON object (merged before --param)\n"
		"  --schedule S          now (default), idle, or HH:MM-HH:MM[@TZ] (a daily window; TZ is UTC\n"
		"                        or +HH:MM / -HH:MM)\n"
		"  --priority N          higher runs first, -1000..1000 (default 0)\n"
		"  --device D            auto (default), cpu or cuda:N\n"
		"  --json                print the queued job as JSON instead of \"job N queued\"\n"
		"                        (list: the jobs as JSON instead of a table)\n"
		"show options:\n"
		"  --follow              poll until the job ends, with a progress bar on a terminal\n"
		"common:\n"
		"  --url URL             daemon URL (default $THAW_URL, else http://$HOST:$PORT when\n"
		"                        either is set, else " RT_CLIENT_DEFAULT_URL ")\n"
		"  -h, --help            this text\n");
}

static int request(const char *url, const char *method, const char *path, const char *body,
		   rt_client_resp *resp)
{
	rt_client_url u;
	char err[512];
	if (rt_client_url_parse(url, &u, err, sizeof err) < 0) {
		fprintf(stderr, "thaw jobs: %s\n", err);
		return 1;
	}
	int rc = rt_client_request(&u, method, path, body, body ? strlen(body) : 0, "application/json",
				   30, resp, err, sizeof err);
	if (rc < 0) {
		fprintf(stderr, "thaw jobs: %s (is `thaw serve` running there? set --url, $THAW_URL or $PORT)\n", err);
		return 1;
	}
	if (resp->status < 200 || resp->status >= 300) {
		char msg[1024];
		rt_client_error_text(resp, msg, sizeof msg);
		fprintf(stderr, "thaw jobs: HTTP %d: %s\n", resp->status, msg);
		rt_client_resp_free(resp);
		return 1;
	}
	return 0;
}

static int parse_schedule(const char *s, json_t **out)
{
	if (!strcmp(s, "now") || !strcmp(s, "idle")) {
		*out = json_string(s);
		return 0;
	}
	char win[32], tz[16] = "UTC";
	const char *at = strchr(s, '@');
	size_t wl = at ? (size_t)(at - s) : strlen(s);
	if (wl >= sizeof win || (at && strlen(at + 1) >= sizeof tz))
		return -1;
	memcpy(win, s, wl);
	win[wl] = 0;
	if (at)
		snprintf(tz, sizeof tz, "%s", at + 1);
	*out = json_pack("{s:s,s:s}", "window", win, "tz", tz);
	return 0;
}

static int cmd_submit(int argc, char **argv, const char *url)
{
	static const struct option opts[] = {
		{"function", required_argument, 0, 'f'}, {"revision", required_argument, 0, 'r'},
		{"snapshot", required_argument, 0, 's'}, {"param", required_argument, 0, 'p'},
		{"params", required_argument, 0, 'P'}, {"schedule", required_argument, 0, 'S'},
		{"priority", required_argument, 0, 'n'}, {"device", required_argument, 0, 'd'},
		{"json", no_argument, 0, 'j'}, {"url", required_argument, 0, 'u'},
		{"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
	};
	json_t *spec = json_object(), *params = json_object(), *sched = NULL;
	json_t *plist = json_array();
	int c, rc = 2, as_json = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': json_object_set_new(spec, "function", json_string(optarg)); break;
		case 'r': json_object_set_new(spec, "revision", json_integer(atoll(optarg))); break;
		case 's': json_object_set_new(spec, "snapshot", json_string(optarg)); break;
		case 'p': json_array_append_new(plist, json_string(optarg)); break;
		case 'P': {
			json_t *v = json_loads(optarg, 0, NULL);
			if (!json_is_object(v)) {
				fprintf(stderr, "thaw jobs submit: --params: not a JSON object\n");
				json_decref(v);
				goto out;
			}
			json_object_update(params, v);
			json_decref(v);
			break;
		}
		case 'S':
			json_decref(sched);
			if (parse_schedule(optarg, &sched) < 0) {
				fprintf(stderr, "thaw jobs submit: --schedule: now, idle or HH:MM-HH:MM[@TZ]\n");
				goto out;
			}
			break;
		case 'n': json_object_set_new(spec, "priority", json_integer(atoll(optarg))); break;
		case 'd': json_object_set_new(spec, "device", json_string(optarg)); break;
		case 'j': as_json = 1; break;
		case 'u': url = optarg; break;
		case 'h': usage(stdout); rc = 0; goto out;
		default: usage(stderr); goto out;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "thaw jobs submit: give the job TYPE (quantize or finetune)\n");
		goto out;
	}
	json_object_set_new(spec, "type", json_string(argv[optind]));
	size_t i;
	json_t *pv;
	json_array_foreach(plist, i, pv) {
		const char *kv = json_string_value(pv), *eq = strchr(kv, '=');
		if (!eq || eq == kv) {
			fprintf(stderr, "thaw jobs submit: --param %s: expected KEY=VALUE\n", kv);
			goto out;
		}
		char key[128];
		snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
		json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
		json_object_set_new(params, key, v ? v : json_string(eq + 1));
	}
	json_object_set(spec, "params", params);
	if (sched)
		json_object_set(spec, "schedule", sched);
	char *body = json_dumps(spec, JSON_COMPACT);
	rt_client_resp r = {0};
	rc = request(rt_client_pick_url(url), "POST", "/v1/jobs", body, &r);
	free(body);
	if (rc == 0) {
		json_t *o = json_loadb(r.body, r.body_len, 0, NULL);
		if (as_json && o)
			rt_cli_json_print(stdout, o, 0);
		else
			printf("job %lld queued\n", (long long)json_integer_value(json_object_get(o, "id")));
		json_decref(o);
		rt_client_resp_free(&r);
	}
out:
	json_decref(spec);
	json_decref(params);
	json_decref(sched);
	json_decref(plist);
	return rc;
}

static const char *str_or(const json_t *o, const char *k, const char *def)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : def;
}

static int cmd_list(int argc, char **argv, const char *url)
{
	static const struct option opts[] = {
		{"state", required_argument, 0, 's'}, {"json", no_argument, 0, 'j'},
		{"url", required_argument, 0, 'u'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
	};
	const char *state = NULL;
	int c, as_json = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': state = optarg; break;
		case 'j': as_json = 1; break;
		case 'u': url = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	char path[128];
	snprintf(path, sizeof path, "/v1/jobs%s%s", state ? "?state=" : "", state ? state : "");
	rt_client_resp r = {0};
	if (request(rt_client_pick_url(url), "GET", path, NULL, &r))
		return 1;
	json_t *o = json_loadb(r.body, r.body_len, 0, NULL);
	rt_client_resp_free(&r);
	if (as_json) {
		int rc = o ? rt_cli_json_print(stdout, o, 0) : -EPROTO;
		if (!o)
			fprintf(stderr, "thaw jobs list: the daemon's answer is not JSON\n");
		json_decref(o);
		return rc < 0 ? 1 : 0;
	}
	printf("%-5s %-9s %-20s %-10s %8s %8s  %s\n", "ID", "TYPE", "SOURCE", "STATE", "PROGRESS",
	       "STEP", "RESULT / ERROR");
	size_t i;
	json_t *j;
	json_array_foreach(json_object_get(o, "jobs"), i, j) {
		char src[64], res[160] = "";
		const json_t *rr = json_object_get(j, "result");
		if (json_is_string(json_object_get(j, "function")))
			snprintf(src, sizeof src, "%s@%lld", str_or(j, "function", ""),
				 (long long)json_integer_value(json_object_get(j, "revision")));
		else {
			const char *s = str_or(j, "snapshot", ""), *b = strrchr(s, '/');
			snprintf(src, sizeof src, "%s", b ? b + 1 : s);
		}
		if (json_is_object(rr) && json_is_integer(json_object_get(rr, "revision")))
			snprintf(res, sizeof res, "revision %lld",
				 (long long)json_integer_value(json_object_get(rr, "revision")));
		else if (json_is_object(rr))
			snprintf(res, sizeof res, "%s", str_or(rr, "snapshot", ""));
		else
			snprintf(res, sizeof res, "%s", str_or(j, "error", ""));
		printf("%-5lld %-9s %-20s %-10s %7.1f%% %8lld  %s\n",
		       (long long)json_integer_value(json_object_get(j, "id")), str_or(j, "type", "?"), src,
		       str_or(j, "state", "?"), json_number_value(json_object_get(j, "progress")) * 100,
		       (long long)json_integer_value(json_object_get(j, "step")), res);
	}
	json_decref(o);
	return 0;
}

static int finished(const char *st)
{
	return !strcmp(st, "succeeded") || !strcmp(st, "failed") || !strcmp(st, "cancelled");
}

static int cmd_show(int argc, char **argv, const char *url)
{
	static const struct option opts[] = {
		{"follow", no_argument, 0, 'f'}, {"url", required_argument, 0, 'u'},
		{"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
	};
	int c, follow = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hf", opts, NULL)) != -1) {
		switch (c) {
		case 'f': follow = 1; break;
		case 'u': url = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "thaw jobs show: give the job ID\n");
		return 2;
	}
	char path[96];
	snprintf(path, sizeof path, "/v1/jobs/%s", argv[optind]);
	int tty = isatty(STDERR_FILENO);
	double last = -1;
	char last_state[32] = "";
	for (;;) {
		rt_client_resp r = {0};
		if (request(rt_client_pick_url(url), "GET", path, NULL, &r))
			return 1;
		json_t *o = json_loads(r.body, 0, NULL);
		rt_client_resp_free(&r);
		const char *st = str_or(o, "state", "?");
		double p = json_number_value(json_object_get(o, "progress"));
		if (!follow || finished(st)) {
			if (follow && tty)
				fputc('\n', stderr);
			rt_cli_json_print(stdout, o, 2);
			int rc = follow && strcmp(st, "succeeded") ? 1 : 0;
			json_decref(o);
			return rc;
		}
		if (tty) {
			int w = 30, fill = (int)(p * w + 0.5);
			fprintf(stderr, "\r[%.*s%*s] %5.1f%%  %-10s step %lld", fill,
				"##############################", w - fill, "", p * 100, st,
				(long long)json_integer_value(json_object_get(o, "step")));
			const json_t *m = json_object_get(json_object_get(o, "metrics"), "loss");
			if (json_is_number(m))
				fprintf(stderr, "  loss %.4f", json_number_value(m));
			fflush(stderr);
		} else if (p != last || strcmp(st, last_state)) {
			fprintf(stderr, "%s %.1f%%\n", st, p * 100);
		}
		last = p;
		snprintf(last_state, sizeof last_state, "%s", st);
		json_decref(o);
		struct timespec ts = {0, 250 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

static int cmd_cancel(int argc, char **argv, const char *url)
{
	static const struct option opts[] = {
		{"url", required_argument, 0, 'u'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'u': url = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "thaw jobs cancel: give the job ID\n");
		return 2;
	}
	char path[96];
	snprintf(path, sizeof path, "/v1/jobs/%s", argv[optind]);
	rt_client_resp r = {0};
	if (request(rt_client_pick_url(url), "DELETE", path, NULL, &r))
		return 1;
	rt_client_resp_free(&r);
	printf("job %s cancelled\n", argv[optind]);
	return 0;
}

int rt_jobs_main(int argc, char **argv)
{
	if (argc < 2 || rt_cli_is_help(argv[1])) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *sub = argv[1];
	if (!strcmp(sub, "submit"))
		return cmd_submit(argc - 1, argv + 1, NULL);
	if (!strcmp(sub, "list"))
		return cmd_list(argc - 1, argv + 1, NULL);
	if (!strcmp(sub, "show"))
		return cmd_show(argc - 1, argv + 1, NULL);
	if (!strcmp(sub, "cancel"))
		return cmd_cancel(argc - 1, argv + 1, NULL);
	fprintf(stderr, "thaw jobs: unknown subcommand '%s' (submit, list, show, cancel)\n", sub);
	return 2;
}
