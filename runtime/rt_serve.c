/* rt_serve.c — `thaw serve`: option parsing and start-up of the daemon. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "runtime/cli/rt_cli.h"
#include "runtime/base/rt_log.h"
#include "runtime/rt_server.h"
#include "pool/pool_log.h"

/* device_log: pool/'s failed CUDA / cuBLAS calls, as lines of the daemon's JSON log */
static void device_log(const char *msg)
{
	rt_logf(RT_LOG_ERROR, "%s", msg);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: thaw serve [OPTIONS]\n\n"
		"Runs the daemon: HTTP API on $PORT (default 8080), functions, scale to zero.\n\n"
		"options:\n"
		"  --port N              listen port (overrides $PORT; 0 picks a free port)\n"
		"  --host ADDR           listen address (default 0.0.0.0)\n"
		"  --data DIR            data directory (default ./thaw-data)\n"
		"  --registry URL        where functions, keys and jobs live (default $THAW_REGISTRY, else\n"
		"                        sqlite: = DATA/registry.db): sqlite:PATH (one machine), or\n"
		"                        postgresql://[USER@]HOST[:PORT]/DB[?PARAMS] shared by the nodes of\n"
		"                        a cluster (libpq URI; password from PGPASSWORD, ~/.pgpass or\n"
		"                        PGPASSFILE rather than the URL; it is never logged)\n"
		"  --shared-dir DIR      where uploaded snapshots and data, job checkpoints and job\n"
		"                        results live: the directory every node of a cluster mounts\n"
		"                        (default: the data directory)\n"
		"  --drain-timeout S     on SIGTERM/SIGINT, exit within S seconds (default 30)\n"
		"  --max-body BYTES      largest request body (default 67108864); over it: 413\n"
"  --max-upload BYTES    largest snapshot or data file pushed with PUT /v1/snapshots/NAME\n"
		"                        or PUT /v1/data/NAME (default 64 GiB; streamed to disk); over it: 413\n"
		"  --max-header BYTES    largest request line + headers (default 16384); over it: 431\n"
		"  --max-connections N   most open client connections (default 4096; lowered to fit the\n"
		"                        descriptor limit, whose soft value is raised to the hard one)\n"
		"  --max-connections-per-address N  most connections from one client address (default:\n"
		"                        a quarter of --max-connections, not applied to loopback peers\n"
		"                        such as a Knative queue-proxy; given: every peer; 0: no cap)\n"
		"  --probe-reserve N     connections beyond the limits that serve only /healthz, /readyz\n"
		"                        and /v2/health/* (default 32)\n"
		"  --max-body-inflight BYTES  request bodies buffered at once, all connections together\n"
		"                        (default 4 x --max-body, at least 256 MiB); past it: 503 + close\n"
		"  --max-write-queue BYTES  unsent response bytes of one connection past which it is\n"
		"                        neither read nor served until they drain (default 1048576)\n"
		"  --first-byte-timeout S  a connection that sends nothing is closed after S s (default 10)\n"
		"  --read-timeout S      a started request must arrive within S seconds (default 30): 408\n"
		"  --keepalive-timeout S  idle HTTP keep-alive connections close after S seconds\n"
		"                        (default 60); not scale to zero: that is a function's\n"
		"                        idle_timeout_s (thaw deploy --idle-timeout)\n"
		"  --idle-timeout S      deprecated spelling of --keepalive-timeout\n"
		"  --no-access-log       no per-request log line\n"
		"  --cors-origin ORIGIN  browsers on ORIGIN (scheme://host[:port], or * for any) may call\n"
		"                        the API; repeatable, at most 16 (default: none, no CORS headers)\n"
		"  --allow-root DIR      snapshots may also come from DIR (repeatable, at most 8)\n"
		"  --plugin-root DIR     function kinds \"plugin:/path/lib.so\" may be loaded from DIR\n"
		"                        (repeatable, at most 8; none: plugin kinds are refused)\n"
		"  --host-cache BYTES    host-RAM tier for evicted weights (default: a quarter of RAM)\n"
		"  --host-ttl S          host-tier entries are dropped after S idle seconds (default 600)\n"
		"  --cpu-memory BYTES    weights loaded on the CPU device (default: half of RAM)\n"
		"  --gpu-memory-share F  share of each GPU's free memory used for weights (default 0.85)\n"
		"  --gpu-memory BYTES    weight budget of each GPU in bytes instead of the share\n"
		"  --cpu-threads N       CPU backend threads (default: all cores)\n"
		"  --no-gpu              use only the CPU even when GPUs are present\n"
		"  --fake-gpus N[:MIB]   tests only, without real GPUs: N CPU lanes placed as cuda:0..N-1,\n"
		"                        each with MIB MiB of weight memory (default 256)\n"
		"  --job-idle S          \"idle\" jobs start after S seconds without invocations (default 60)\n"
		"  --job-checkpoint S    a running job checkpoints at most every S seconds (default 10)\n"
		"  --job-step-ms MS      lane time one job step may take before it yields (default 2)\n"
		"  --node-id ID          this node's id in a cluster (default: the host name; letters,\n"
		"                        digits, . _ -; at most 63)\n"
		"  --advertise URL       http://HOST:PORT other nodes reach this one at (default: the\n"
		"                        listening address when it is loopback, else none: calls are not\n"
		"                        routed here by peers)\n"
		"  --cluster-secret-file FILE  the secret nodes of a cluster sign forwarded calls with\n"
		"                        (also $THAW_CLUSTER_SECRET); without one, calls are not forwarded\n"
		"  --node-lease MS       a node that has not renewed its lease for MS ms is dead to the\n"
		"                        others: calls are no longer routed to it and its jobs resume\n"
		"                        elsewhere (default 3000; membership renewed every MS/6, job\n"
		"                        leases every MS/3)\n"
		"  --log-level L         debug|info|warn|error (default info)\n"
		"  --dev                 no API keys checked (local development only; logged loudly)\n"
		"  --trust-proxy         client address from Forwarded / X-Forwarded-For (last hop)\n"
		"  --rate-limit-key R/s,B  token bucket per API key (default off)\n"
		"  --rate-limit-ip R/s,B   token bucket per client address (default off)\n"
		"  --audit-max-bytes N   rotate DATA/audit/audit.log past N bytes (default 64 MiB)\n"
		"  --audit-days D        remove rotated audit files after D days (default 90; 0 never)\n"
		"  --audit-max-total N   remove the oldest rotated audit files past N bytes in all\n"
		"                        (default 1 GiB)\n"
		"  --no-audit            no audit log (when another system audits; benchmarks)\n"
		"\nenvironment: PORT, K_SERVICE, K_REVISION, K_CONFIGURATION (logged and in metrics)\n");
}

static int parse_num(const char *opt, const char *s, double min, double max, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "thaw serve: bad value for %s: '%s' (expected %g..%g)\n", opt, s, min, max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/* every client connection is a descriptor: the soft RLIMIT_NOFILE goes up to the hard one
 * (rt_http_open then fits --max-connections in it) */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	rlim_t was = rl.rlim_cur;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			rl.rlim_cur = was;
	}
	rt_logf(RT_LOG_INFO, "descriptor limit %llu (was %llu, hard limit %llu)",
		(unsigned long long)rl.rlim_cur, (unsigned long long)was, (unsigned long long)rl.rlim_max);
}

int rt_serve_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"port", required_argument, 0, 'p'},
		{"host", required_argument, 0, 'H'},
		{"data", required_argument, 0, 'd'},
		{"registry", required_argument, 0, 1310},
		{"shared-dir", required_argument, 0, 1300},
		{"drain-timeout", required_argument, 0, 'D'},
		{"max-body", required_argument, 0, 'b'},
		{"max-header", required_argument, 0, 'e'},
		{"max-connections", required_argument, 0, 'c'},
		{"read-timeout", required_argument, 0, 'r'},
		{"keepalive-timeout", required_argument, 0, 'i'},
		{"idle-timeout", required_argument, 0, 1208},
		{"no-access-log", no_argument, 0, 'n'},
		{"max-connections-per-address", required_argument, 0, 1201},
		{"probe-reserve", required_argument, 0, 1202},
		{"max-body-inflight", required_argument, 0, 1203},
		{"max-write-queue", required_argument, 0, 1204},
		{"first-byte-timeout", required_argument, 0, 1205},
		{"cors-origin", required_argument, 0, 1206},
		{"max-upload", required_argument, 0, 1207},
		{"log-level", required_argument, 0, 'l'},
		{"allow-root", required_argument, 0, 'A'},
		{"host-cache", required_argument, 0, 'C'},
		{"host-ttl", required_argument, 0, 'T'},
		{"cpu-memory", required_argument, 0, 'M'},
		{"gpu-memory-share", required_argument, 0, 'G'},
		{"gpu-memory", required_argument, 0, 1102},
		{"cpu-threads", required_argument, 0, 't'},
		{"no-gpu", no_argument, 0, 'N'},
		{"fake-gpus", required_argument, 0, 1101},
		{"job-idle", required_argument, 0, 'J'},
		{"job-checkpoint", required_argument, 0, 'K'},
		{"job-step-ms", required_argument, 0, 'S'},
		{"dev", no_argument, 0, 1001},
		{"trust-proxy", no_argument, 0, 1002},
		{"rate-limit-key", required_argument, 0, 1003},
		{"rate-limit-ip", required_argument, 0, 1004},
		{"audit-max-bytes", required_argument, 0, 1005},
		{"audit-days", required_argument, 0, 1006},
		{"no-audit", no_argument, 0, 1007},
		{"audit-max-total", required_argument, 0, 1041},
		{"plugin-root", required_argument, 0, 1010},
		{"node-id", required_argument, 0, 1301},
		{"advertise", required_argument, 0, 1302},
		{"cluster-secret-file", required_argument, 0, 1303},
		{"node-lease", required_argument, 0, 1304},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	rt_server_config cfg;
	rt_log_level level = RT_LOG_INFO;
	int old_idle_flag = 0;   /* --idle-timeout given */
	double v;
	int c;
	memset(&cfg, 0, sizeof cfg);
	rt_http_config_defaults(&cfg.http);
	cfg.data_dir = "./thaw-data";
	cfg.registry_url = getenv("THAW_REGISTRY");
	cfg.drain_timeout_s = 30;
	rt_sched_config_defaults(&cfg.sched);
	rt_jobs_config_defaults(&cfg.jobs);
	cfg.access.audit_days = 90;
	const char *env_port = getenv("PORT");
	if (env_port && *env_port) {
		if (parse_num("$PORT", env_port, 0, 65535, &v) < 0)
			return 2;
		cfg.http.port = (int)v;
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': if (parse_num("--port", optarg, 0, 65535, &v)) return 2; cfg.http.port = (int)v; break;
		case 'H': cfg.http.host = optarg; break;
		case 'd': cfg.data_dir = optarg; break;
		case 1310: cfg.registry_url = optarg; break;
		case 1300: cfg.shared_dir = optarg; break;
		case 'D': if (parse_num("--drain-timeout", optarg, 0, 86400, &v)) return 2; cfg.drain_timeout_s = v; break;
		case 'b': if (parse_num("--max-body", optarg, 0, 1e12, &v)) return 2; cfg.http.max_body_bytes = (size_t)v; break;
		case 'e': if (parse_num("--max-header", optarg, 256, 1 << 24, &v)) return 2; cfg.http.max_header_bytes = (size_t)v; break;
		case 'c': if (parse_num("--max-connections", optarg, 1, 1 << 20, &v)) return 2; cfg.http.max_connections = (int)v; break;
		case 'r': if (parse_num("--read-timeout", optarg, 0.001, 86400, &v)) return 2; cfg.http.read_timeout_ms = (uint64_t)(v * 1000); break;
		case 'i': if (parse_num("--keepalive-timeout", optarg, 0.001, 86400, &v)) return 2; cfg.http.idle_timeout_ms = (uint64_t)(v * 1000); break;
		case 1208: if (parse_num("--idle-timeout", optarg, 0.001, 86400, &v)) return 2; cfg.http.idle_timeout_ms = (uint64_t)(v * 1000); old_idle_flag = 1; break;
		case 'n': cfg.http.access_log = 0; break;
		case 1201: if (parse_num("--max-connections-per-address", optarg, 0, 1 << 20, &v)) return 2; cfg.http.max_conns_per_addr = v > 0 ? (int)v : -1; break;
		case 1202: if (parse_num("--probe-reserve", optarg, 0, 4096, &v)) return 2; cfg.http.probe_reserve = (int)v; break;
		case 1203: if (parse_num("--max-body-inflight", optarg, 1, 1e15, &v)) return 2; cfg.http.max_body_inflight = (size_t)v; break;
		case 1204: if (parse_num("--max-write-queue", optarg, 4096, 1e12, &v)) return 2; cfg.http.max_write_queue = (size_t)v; break;
		case 1207: if (parse_num("--max-upload", optarg, 1, 1e15, &v)) return 2; cfg.max_upload_bytes = (uint64_t)v; break;
		case 1205: if (parse_num("--first-byte-timeout", optarg, 0.001, 86400, &v)) return 2; cfg.http.first_byte_timeout_ms = (uint64_t)(v * 1000); break;
		case 1206: {
			char why[160];
			if (cfg.n_cors_origins == RT_CORS_MAX_ORIGINS) {
				fprintf(stderr, "thaw serve: at most %d --cors-origin\n", RT_CORS_MAX_ORIGINS);
				return 2;
			}
			if (rt_cors_valid_origin(optarg, why, sizeof why) < 0) {
				fprintf(stderr, "thaw serve: --cors-origin %.*s: %s\n", RT_CORS_ORIGIN_MAX,
					optarg, why);
				return 2;
			}
			cfg.cors_origins[cfg.n_cors_origins++] = optarg;
			break;
		}
		case 'A':
			if (cfg.n_allowed_roots == RT_SERVER_MAX_ROOTS) {
				fprintf(stderr, "thaw serve: at most %d --allow-root\n", RT_SERVER_MAX_ROOTS);
				return 2;
			}
			if (optarg[0] != '/') {
				fprintf(stderr, "thaw serve: --allow-root needs an absolute path\n");
				return 2;
			}
			cfg.allowed_roots[cfg.n_allowed_roots++] = optarg;
			break;
		case 1010:
			if (cfg.n_plugin_roots == RT_SERVER_MAX_ROOTS || optarg[0] != '/') {
				fprintf(stderr, "thaw serve: --plugin-root needs an absolute path (at most %d)\n",
					RT_SERVER_MAX_ROOTS);
				return 2;
			}
			cfg.plugin_roots[cfg.n_plugin_roots++] = optarg;
			break;
		case 'C': if (parse_num("--host-cache", optarg, 0, 1e15, &v)) return 2; cfg.sched.host_budget_bytes = (uint64_t)v; break;
		case 'T': if (parse_num("--host-ttl", optarg, 0.001, 1e7, &v)) return 2; cfg.sched.host_ttl_s = v; break;
		case 'M': if (parse_num("--cpu-memory", optarg, 0, 1e15, &v)) return 2; cfg.sched.cpu_budget_bytes = (uint64_t)v; break;
		case 'G': if (parse_num("--gpu-memory-share", optarg, 0.01, 1, &v)) return 2; cfg.sched.gpu_mem_share = v; break;
		case 't': if (parse_num("--cpu-threads", optarg, 0, 1024, &v)) return 2; cfg.sched.cpu_threads = (int)v; break;
		case 'N': cfg.sched.no_gpu = 1; break;
		case 1102: if (parse_num("--gpu-memory", optarg, 1, 1e15, &v)) return 2; cfg.sched.gpu_budget_bytes = (uint64_t)v; break;
		case 1101: {
			char *colon = strchr(optarg, ':');
			double mib = 256;
			if (colon)
				*colon = 0;
			if (parse_num("--fake-gpus", optarg, 1, 16, &v) ||
			    (colon && parse_num("--fake-gpus (MiB)", colon + 1, 0.001, 1 << 24, &mib)))
				return 2;
			cfg.sched.fake_gpus = (int)v;
			cfg.sched.fake_gpu_bytes = (uint64_t)(mib * (1 << 20));
			break;
		}
		case 'J': if (parse_num("--job-idle", optarg, 0, 1e7, &v)) return 2; cfg.jobs.idle_s = v; break;
		case 'K': if (parse_num("--job-checkpoint", optarg, 0, 1e7, &v)) return 2; cfg.jobs.checkpoint_s = v; break;
		case 'S': if (parse_num("--job-step-ms", optarg, 0.01, 1e5, &v)) return 2; cfg.jobs.step_ms = v; break;
		case 'l':
			if (strcmp(optarg, "debug") == 0) level = RT_LOG_DEBUG;
			else if (strcmp(optarg, "info") == 0) level = RT_LOG_INFO;
			else if (strcmp(optarg, "warn") == 0) level = RT_LOG_WARN;
			else if (strcmp(optarg, "error") == 0) level = RT_LOG_ERROR;
			else { fprintf(stderr, "thaw serve: bad --log-level '%s'\n", optarg); return 2; }
			break;
		case 1001: cfg.access.dev = 1; break;
		case 1002: cfg.access.trust_proxy = 1; break;
		case 1003:
		case 1004:
			if (rt_rate_parse(optarg, c == 1003 ? &cfg.access.limit_key : &cfg.access.limit_ip) < 0) {
				fprintf(stderr, "thaw serve: bad rate limit '%s' (expected R/s,BURST, e.g. 10/s,20)\n", optarg);
				return 2;
			}
			break;
		case 1005: if (parse_num("--audit-max-bytes", optarg, 4096, 1e15, &v)) return 2; cfg.access.audit_max_bytes = (uint64_t)v; break;
		case 1006: if (parse_num("--audit-days", optarg, 0, 1e6, &v)) return 2; cfg.access.audit_days = (int)v; break;
		case 1007: cfg.access.no_audit = 1; break;
		case 1041: if (parse_num("--audit-max-total", optarg, 4096, 1e15, &v)) return 2; cfg.access.audit_max_total = (uint64_t)v; break;
		case 1301:
			if (!rt_cluster_node_id_ok(optarg)) {
				fprintf(stderr, "thaw serve: bad --node-id '%.80s' (1..%d of A-Z a-z 0-9 . _ -)\n",
					optarg, RT_NODE_ID_MAX);
				return 2;
			}
			cfg.cluster.node_id = optarg;
			break;
		case 1302: cfg.cluster.advertise = optarg; break;
		case 1303: cfg.cluster_secret_file = optarg; break;
		case 1304: if (parse_num("--node-lease", optarg, 100, 3.6e6, &v)) return 2; cfg.cluster.lease_ms = (int64_t)v; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "thaw serve: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	/* stdin is never read (Knative contract); make sure nothing blocks on it */
	int devnull = open("/dev/null", O_RDONLY);
	if (devnull >= 0) {
		dup2(devnull, STDIN_FILENO);
		if (devnull != STDIN_FILENO)
			close(devnull);
	}
	/* the data directory holds keys, the registry, snapshots, checkpoints and audit: nothing
	 * the daemon creates is for other users (files 0600, directories 0700) */
	umask(077);
	rt_log_init(level);
	pool_log_set(device_log);
	if (old_idle_flag)
		rt_logf(RT_LOG_WARN, "thaw serve --idle-timeout is deprecated: use --keepalive-timeout "
			"(the idle timeout of HTTP keep-alive connections); scale to zero is set per "
			"function by the manifest's idle_timeout_s (thaw deploy --idle-timeout)");
	raise_fd_limit();
	uv_loop_t loop;
	if (uv_loop_init(&loop) < 0) {
		fprintf(stderr, "thaw serve: cannot create event loop\n");
		return 1;
	}
	rt_server srv;
	int rc = rt_server_init(&srv, &loop, &cfg);
	if (rc < 0) {
		uv_loop_close(&loop);
		return 1;
	}
	int code = rt_server_run(&srv);
	rt_server_free(&srv);
	uv_loop_close(&loop);
	return code;
}
