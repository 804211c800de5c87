/* test_deploy.c — the deployment files, checked in `make test`: the Knative manifests
 * (every YAML parses; GPU limit, autoscaling annotations, concurrency, timeout vs drain, probes,
 * data directory on a claimed volume, a scale-to-zero and a warm single-node variant; the
 * cluster of deploy/knative/cluster: max-scale above 1, the registry URL from the CloudNativePG
 * operator's Secret, downward API, cluster secret, RWX shared volume, rendered offline by
 * kubectl; every serve option known to the built thaw), the Dockerfile
 * (multi-stage on CUDA bases, make CUDA=1, apt only, thaw serve), the systemd unit, the
 * Prometheus rules (`promtool check rules` and `promtool test rules` with
 * tests/deploy/alerts_test.yml) and the Grafana dashboard, whose every PromQL expression (and the
 * rules') must name only metrics and labels that a real `thaw serve` exports after echo was
 * deployed and called. The checks live in tests/deploy/check_deploy.py (python3 + python3-yaml);
 * each is also run on a broken copy, which it must refuse. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests/e2e/e2e.h"
#include "tests/pg.h"
#include "tests/t.h"

static const char *src;
static char scrape_path[600];

/* sh runs cmd through /bin/sh; returns its exit status (-1 when it did not exit normally) */
static int sh(const char *cmd)
{
	int st = system(cmd);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

/* check runs check_deploy.py with args (relative paths are under the source tree); 0 ok, 1
 * problems found, 2 usage or no python3-yaml. Its findings are printed unless quiet (used for
 * the broken copies, whose findings are expected). */
static int check_as(const char *args, int quiet)
{
	char cmd[8192];
	snprintf(cmd, sizeof cmd, "cd '%s' && python3 tests/deploy/check_deploy.py %s%s", src, args,
		 quiet ? " >/dev/null 2>&1" : "");
	return sh(cmd);
}

static int check(const char *args)
{
	return check_as(args, 0);
}

/* refused: the check must find problems (exit 1) in a broken copy */
static int refused(const char *args)
{
	return check_as(args, 1) == 1;
}

static int have_yaml(void)
{
	return sh("python3 -c 'import yaml' 2>/dev/null") == 0;
}

/* mutate writes sed_expr applied to the source file rel into the temp dir as name; returns the
 * new path (static buffer per call slot) */
static const char *mutate(const char *rel, const char *name, const char *sed_expr)
{
	static char out[4][700];
	static int slot;
	char *p = out[slot++ % 4];
	snprintf(p, sizeof out[0], "%s/%s", t_tmpdir(), name);
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "sed %s '%s/%s' > '%s'", sed_expr, src, rel, p);
	if (sh(cmd) != 0)
		return "/nonexistent";
	/* the mutation must have changed something, or the negative check proves nothing */
	snprintf(cmd, sizeof cmd, "cmp -s '%s/%s' '%s'", src, rel, p);
	T_CHECK(sh(cmd) == 1);
	return p;
}

static void test_yaml_parses(void)
{
	if (!have_yaml())
		T_SKIP("python3-yaml not installed (scripts/install-deps.sh)");
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "cd '%s' && test -n \"$(find deploy -name '*.yaml' -o -name '*.yml')\" "
		 "&& python3 tests/deploy/check_deploy.py yaml $(find deploy -name '*.yaml' -o -name '*.yml')",
		 src);
	T_EQ_INT(sh(cmd), 0);
	char args[1024];
	const char *b = mutate("deploy/knative/service.yaml", "broken.yaml", "-e 's/^spec:/spec: [/'");
	snprintf(args, sizeof args, "yaml '%s'", b);
	T_CHECK(refused(args));
}

static void test_knative(void)
{
	if (!have_yaml())
		T_SKIP("python3-yaml not installed (scripts/install-deps.sh)");
	T_EQ_INT(check("knative deploy/knative/service.yaml deploy/knative/service-warm.yaml"), 0);
	static const char *const bad[] = {
		"-e 's/min-scale: \"0\"/min-scale: 0/'",                 /* unquoted annotation */
		"-e 's#path: /readyz#path: /healthz#'",                   /* readiness on liveness */
		"-e 's/timeoutSeconds: 300/timeoutSeconds: 20/'",         /* grace below the drain */
		"-e 's/target: \"8\"/target: \"16\"/'",                   /* target != containerConcurrency */
		"-e 's#nvidia.com/gpu: 1#nvidia.com/gpu: 2#'",            /* not one GPU */
		"-e 's#^            - /var/lib/thaw#            - /srv/thaw#'", /* data dir off the volume */
		"-e 's/claimName: thaw-data/claimName: other/'",          /* claim not defined */
		"-e 's/memory: 64Gi/memory: 40Gi/'",                      /* budgets over the limit */
		"-e '/- --cpu-memory/,+1d'",                              /* default = node's RAM */
		"-e 's/- serve/- --port\\n            - \"9000\"\\n            - serve/'",
	};
	char args[1024];
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *m = mutate("deploy/knative/service.yaml", "service.yaml", bad[i]);
		snprintf(args, sizeof args, "knative '%s' deploy/knative/service-warm.yaml", m);
		int ok = refused(args);
		if (!ok)
			fprintf(stderr, "  mutation %zu (%s) not refused\n", i, bad[i]);
		T_CHECK(ok);
	}
	/* both variants are required */
	T_CHECK(refused("knative deploy/knative/service.yaml"));
}

/* run_manifest_args starts thaw serve with the options `check_deploy.py ARGS` prints (one a
 * line; run in the source tree), checks it is ready, runs while_up (may be NULL) on it, and
 * drains it to exit 0 on SIGTERM */
static void run_manifest_args(const char *what, const char *args, void (*while_up)(void))
{
	char cmd[8192];
	snprintf(cmd, sizeof cmd, "cd '%s' && python3 tests/deploy/check_deploy.py %s", src, args);
	FILE *p = popen(cmd, "r");
	T_CHECK(p != NULL);
	if (!p)
		return;
	static char words[40][600];
	const char *argv[42];
	int n = 0;
	while (n < 40 && fgets(words[n], sizeof words[n], p)) {
		words[n][strcspn(words[n], "\n")] = 0;
		argv[n] = words[n];
		n++;
	}
	T_EQ_INT(pclose(p), 0);
	T_CHECK(n >= 2);
	argv[n++] = "--no-access-log";
	argv[n] = NULL;
	e2e_server s;
	if (e2e_start(&s, argv, NULL) != 0) {
		fprintf(stderr, "  thaw serve refused the options of %s; its log ends:\n", what);
		t_sh(NULL, 0, "tail -n 5 '%s' >&2", s.log_path);
		T_CHECK(!"thaw serve started with the manifest's options");
		return;
	}
	e2e_resp r;
	if (e2e_request(&s, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 0) {
		T_EQ_INT(r.status, 200);
		e2e_resp_free(&r);
	} else
		T_CHECK(!"GET /readyz failed");
	if (while_up)
		while_up();
	T_EQ_INT(e2e_stop(&s, 15, 10), 0);
}

/* the options the single-node Knative manifests give thaw serve are ones this thaw accepts: it
 * starts with them, is ready, and drains to exit 0 on SIGTERM */
static void test_knative_args_run(void)
{
	if (!have_yaml())
		T_SKIP("python3-yaml not installed (scripts/install-deps.sh)");
	static const char *const files[] = {"deploy/knative/service.yaml",
					    "deploy/knative/service-warm.yaml"};
	for (size_t k = 0; k < 2; k++) {
		char args[700];
		snprintf(args, sizeof args, "args %s", files[k]);
		run_manifest_args(files[k], args, NULL);
	}
}

/* serve_help writes `thaw serve --help` of the binary under test to the temp dir; its path */
static const char *serve_help(void)
{
	static char help[700];
	snprintf(help, sizeof help, "%s/serve-help.txt", t_tmpdir());
	T_EQ_INT(t_sh(NULL, 0, "'%s' serve --help > '%s' 2>&1", t_bin(), help), 0);
	return help;
}

/* the cluster manifest's options start a thaw too, with what Kubernetes would give them made
 * local: the registry an SQLite file (the same --registry option), the pod name and IP, the
 * shared volume and the cluster secret's mount as temporary directories. Skipped, like
 * test_serve_flags, while the built thaw has no cluster options. */
static void test_cluster_args_run(void)
{
	if (!have_yaml())
		T_SKIP("python3-yaml not installed (scripts/install-deps.sh)");
	char args[4096];
	snprintf(args, sizeof args, "flags '%s' deploy/knative/service.yaml deploy/knative/service-warm.yaml "
		 "deploy/knative/cluster", serve_help());
	if (check_as(args, 1) == 3)
		T_SKIP("this thaw serve has no cluster options yet");
	const char *tmp = t_tmpdir();
	T_EQ_INT(t_sh(NULL, 0, "mkdir -p '%s/cl-shared' '%s/cl-secret' && head -c 32 /dev/urandom | base64 "
		      "> '%s/cl-secret/secret' && chmod 600 '%s/cl-secret/secret'", tmp, tmp, tmp, tmp), 0);
	snprintf(args, sizeof args, "args deploy/knative/cluster '--registry=sqlite:%s/cl-registry.db' "
		 "POD_NAME=thaw-00001-deployment-7d9c5-x2x4q POD_IP=127.0.0.1 "
		 "'/var/lib/thaw-shared=%s/cl-shared' '/etc/thaw/cluster=%s/cl-secret'", tmp, tmp, tmp);
	run_manifest_args("deploy/knative/cluster", args, NULL);
}

static char pg_uri[1024];

/* while the manifest's thaw runs: its heartbeat row names the pod and the advertised pod IP */
static void node_row_is_the_pod(void)
{
	char row[512] = "";
	for (int i = 0; i < 60; i++) {
		if (t_pg_query1(pg_uri, "SELECT id || ' ' || advertise FROM nodes", row, sizeof row) == 0)
			break;
		usleep(50000);
	}
	T_EQ_STR(row, "thaw-00001-deployment-7d9c5-x2x4q http://127.0.0.1:8080");
}

/* the cluster manifest's exact --registry (postgresql://$(PGUSER)@$(PGHOST):$(PGPORT)/
 * $(PGDATABASE), as the operator's Secret fills it) on a real PostgreSQL: thaw connects, and
 * heartbeats under the pod's name and IP from the downward API */
static void test_cluster_args_pg(void)
{
	if (!have_yaml())
		T_SKIP("python3-yaml not installed (scripts/install-deps.sh)");
	char args[4096];
	snprintf(args, sizeof args, "flags '%s' deploy/knative/service.yaml deploy/knative/service-warm.yaml "
		 "deploy/knative/cluster", serve_help());
	if (check_as(args, 1) == 3)
		T_SKIP("this thaw serve has no cluster options yet");
	t_pg *pg = t_pg_server();
	if (!pg || t_pg_new_db(pg, pg_uri, sizeof pg_uri) != 0)
		return;
	/* the database name of "postgresql:///thaw_N?host=..."; the socket directory as a URI host */
	char db[64] = "", host[600] = "";
	sscanf(pg_uri, "postgresql:///%63[^?]", db);
	const char *dir = t_pg_socket_dir(pg);
	for (size_t i = 0, o = 0; dir[i] && o + 4 < sizeof host; i++) {
		if (dir[i] == '/') {
			memcpy(host + o, "%2F", 3);
			o += 3;
		} else
			host[o++] = dir[i];
	}
	T_CHECK(db[0] != 0);
	const char *tmp = t_tmpdir();
	T_EQ_INT(t_sh(NULL, 0, "mkdir -p '%s/pg-shared' '%s/pg-secret' && head -c 32 /dev/urandom | base64 "
		      "> '%s/pg-secret/secret' && chmod 600 '%s/pg-secret/secret'", tmp, tmp, tmp, tmp), 0);
	snprintf(args, sizeof args, "args deploy/knative/cluster PGUSER=postgres 'PGHOST=%s' PGPORT=5432 "
		 "PGDATABASE=%s POD_NAME=thaw-00001-deployment-7d9c5-x2x4q POD_IP=127.0.0.1 "
		 "'/var/lib/thaw-shared=%s/pg-shared' '/etc/thaw/cluster=%s/pg-secret'", host, db, tmp, tmp);
	run_manifest_args("deploy/knative/cluster on PostgreSQL", args, node_row_is_the_pod);
}

/* mutate_dir copies deploy/knative/cluster into the temp dir as name and applies sed_expr to
 * its file rel; returns the copy's path (static buffer per call slot) */
static const char *mutate_dir(const char *name, const char *rel, const char *sed_expr)
{
	static char out[4][700];
	static int slot;
	char *p = out[slot++ % 4];
	snprintf(p, sizeof out[0], "%s/%s", t_tmpdir(), name);
	if (t_sh(NULL, 0, "rm -rf '%s' && cp -r '%s/deploy/knative/cluster' '%s' && sed -i %s '%s/%s'",
		 p, src, p, sed_expr, p, rel) != 0)
		return "/nonexistent";
	T_CHECK(t_sh(NULL, 0, "cmp -s '%s/deploy/knative/cluster/%s' '%s/%s'", src, rel, p, rel) == 1);
	return p;
}

/* deploy/knative/cluster: several pods on a CloudNativePG registry and a shared volume; each
 * weakening of it is refused */
static void test_cluster(void)
{
	if (!have_yaml())
		T_SKIP("python3-yaml not installed (scripts/install-deps.sh)");
	T_EQ_INT(check("cluster deploy/knative/cluster"), 0);
	static const struct {
		const char *file, *sed;
	} bad[] = {
		{"service.yaml", "-e 's/max-scale: \"8\"/max-scale: \"1\"/'"},           /* one pod */
		{"service.yaml", "-e 's/name: thaw-registry-app/name: thaw-db/'"},        /* not the operator's */
		{"service.yaml", "-e 's/key: password/key: username/'"},                  /* wrong password */
		{"service.yaml", "-e '/name: PGPASSWORD/,+4d'"},                          /* no password */
		{"service.yaml", "-e 's/key: host/key: uri/'"},                           /* password in argv */
		{"service.yaml", "-e 's#$(PGHOST):$(PGPORT)#thaw-registry-rw:5432#'"},    /* literal address */
		{"service.yaml", "-e 's#- postgresql://$(PGUSER)@#- postgresql://thaw:pw@#'"},
		{"service.yaml", "-e 's/secretKeyRef:/configMapKeyRef:/'"},              /* not a Secret */
		{"service.yaml", "-e 's/defaultMode: 0440/defaultMode: 0400/'"},          /* unreadable */
		{"service.yaml", "-e '/fsGroup: 10001/d'"},                               /* unreadable */
		{"service.yaml", "-e 's/defaultMode: 0440/defaultMode: 0660/'"},          /* writable */
		{"service.yaml", "-e '/runAsUser: 10001/d'"},                             /* unverifiable */
		{"service.yaml", "-e 's/fieldPath: status.podIP/fieldPath: status.hostIP/'"},
		{"service.yaml", "-e 's/fieldPath: metadata.name/fieldPath: metadata.namespace/'"},
		{"service.yaml", "-e 's#http://$(POD_IP):8080#http://$(POD_IP):9090#'"},  /* not the port */
		{"service.yaml", "-e 's#- http://$(POD_IP):8080#- http://10.0.0.5:8080#'"}, /* no downward API */
		{"service.yaml", "-e 's/readOnly: true/readOnly: false/'"},               /* secret writable */
		{"service.yaml", "-e 's#- /etc/thaw/cluster/secret#- /var/lib/thaw/secret#'"},
		{"service.yaml", "-e '/- --allow-root/,+1d'"},
		{"service.yaml", "-e 's#^            - /var/lib/thaw$#            - /var/lib/thaw-shared/data#'"},
		{"service.yaml", "-e 's/emptyDir:/hostPath:/'"},                          /* data not per pod */
		{"service.yaml", "-e 's/claimName: thaw-shared/claimName: other/'"},
		{"service.yaml", "-e 's/- \"3000\"/- \"100\"/'"},                         /* lease too short */
		{"shared-volume.yaml", "-e 's/ReadWriteMany/ReadWriteOnce/'"},
		{"registry.yaml", "-e 's/instances: 3/instances: 1/'"},
		{"registry.yaml", "-e '/owner: thaw/d'"},
		{"registry.yaml", "-e 's/size: 10Gi/size: lots/'"},
		{"registry.yaml", "-e 's/max_connections: \"100\"/max_connections: \"20\"/'"},
		{"registry.yaml", "-e 's#postgresql.cnpg.io/v1#apps/v1#'"},              /* no operator */
		{"kustomization.yaml", "-e '/- shared-volume.yaml/d'"},
	};
	char args[1024];
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *m = mutate_dir("cluster", bad[i].file, bad[i].sed);
		snprintf(args, sizeof args, "cluster '%s'", m);
		int ok = refused(args);
		if (!ok)
			fprintf(stderr, "  mutation %zu (%s: %s) not refused\n", i, bad[i].file, bad[i].sed);
		T_CHECK(ok);
	}
	/* a Secret written into the files is refused too */
	const char *m = mutate_dir("cluster", "shared-volume.yaml",
				   "-e '$a ---\\napiVersion: v1\\nkind: Secret\\nmetadata:\\n  name: s\\nstringData:\\n  secret: x'");
	snprintf(args, sizeof args, "cluster '%s'", m);
	T_CHECK(refused(args));
	/* the single-node variants stay single-node */
	m = mutate("deploy/knative/service.yaml", "service.yaml",
		   "-e 's/max-scale: \"1\"/max-scale: \"4\"/'");
	snprintf(args, sizeof args, "knative '%s' deploy/knative/service-warm.yaml", m);
	T_CHECK(refused(args));
}

/* every option deploy/knative gives thaw serve is one the built thaw lists in `serve --help`
 * (read from the binary at test time). A thaw that predates clusters (its help lacks the
 * registry URL option and any it lacks is used only by the cluster manifest) skips, naming
 * the options; once it has that option, every other one must be there too. */
static void test_serve_flags(void)
{
	if (!have_yaml())
		T_SKIP("python3-yaml not installed (scripts/install-deps.sh)");
	const char *help = serve_help();
	char args[2048];
	snprintf(args, sizeof args, "flags '%s' deploy/knative/service.yaml deploy/knative/service-warm.yaml "
		 "deploy/knative/cluster", help);
	int rc = check(args);
	/* an option thaw does not have is refused, in a single-node manifest with any thaw */
	char bad[2048];
	const char *m = mutate("deploy/knative/service.yaml", "service.yaml",
			       "-e 's/- --cpu-threads/- --cpu-thread-count/'");
	snprintf(bad, sizeof bad, "flags '%s' '%s' deploy/knative/service-warm.yaml deploy/knative/cluster",
		 help, m);
	T_EQ_INT(check_as(bad, 1), 1);
	if (rc == 3)
		T_SKIP("this thaw serve has no cluster options yet (listed above)");
	T_EQ_INT(rc, 0);
}

/* kubectl, offline: `kubectl kustomize` renders the cluster (every resource exists, the
 * namespace applies to each), the rendering passes the cluster checks, and `kubectl label
 * --local` (which parses objects without a server) reads every manifest as the kinds meant */
static void test_kubectl_offline(void)
{
	if (t_sh(NULL, 0, "command -v kubectl >/dev/null 2>&1") != 0) {
		T_CHECK(!"kubectl is not installed (scripts/install-deps.sh installs kubernetes-client)");
		return;
	}
	char out[4096], rendered[700];
	snprintf(rendered, sizeof rendered, "%s/rendered.yaml", t_tmpdir());
	T_EQ_INT(t_sh(NULL, 0, "cd '%s' && kubectl kustomize deploy/knative/cluster > '%s'", src, rendered), 0);
	char args[1024];
	snprintf(args, sizeof args, "cluster '%s'", rendered);
	if (have_yaml())
		T_EQ_INT(check(args), 0);
	T_EQ_INT(t_sh(out, sizeof out, "grep -c '^  namespace: thaw$' '%s'", rendered), 0);
	T_EQ_INT(atoi(out), 3);
	T_EQ_INT(t_sh(out, sizeof out, "kubectl label --local -f '%s' thaw.check=1 -o name | sort", rendered), 0);
	T_EQ_STR(out, "cluster.postgresql.cnpg.io/thaw-registry\npersistentvolumeclaim/thaw-shared\n"
		      "service.serving.knative.dev/thaw\n");
	static const char *const single[] = {"service.yaml", "service-warm.yaml"};
	static const char *const want[] = {
		"persistentvolumeclaim/thaw-data\nservice.serving.knative.dev/thaw\n",
		"persistentvolumeclaim/thaw-warm-data\nservice.serving.knative.dev/thaw-warm\n"};
	for (size_t i = 0; i < 2; i++) {
		T_EQ_INT(t_sh(out, sizeof out, "cd '%s' && kubectl label --local -f deploy/knative/%s "
			      "thaw.check=1 -o name | sort", src, single[i]), 0);
		T_EQ_STR(out, want[i]);
	}
	/* kubectl refuses a kustomization naming a missing file and a manifest that does not parse */
	const char *m = mutate_dir("cluster-k", "kustomization.yaml", "-e 's/- registry.yaml/- nosuch.yaml/'");
	T_CHECK(t_sh(NULL, 0, "kubectl kustomize '%s' >/dev/null 2>&1", m) != 0);
	m = mutate_dir("cluster-k", "service.yaml", "-e 's/^spec:/spec: [/'");
	T_CHECK(t_sh(NULL, 0, "kubectl label --local -f '%s/service.yaml' thaw.check=1 -o name "
		     ">/dev/null 2>&1", m) != 0);
}

static void test_dockerfile(void)
{
	T_EQ_INT(check("dockerfile deploy/docker/Dockerfile"), 0);
	static const char *const bad[] = {
		"-e 's/ CUDA=1//'",                                       /* CPU build */
		"-e 's/\"serve\", //'",                                   /* does not run serve */
		"-e 's/-runtime-/-devel-/'",                              /* fat final stage */
		"-e '/^FROM.*runtime/,$d'",                               /* single stage */
		"-e 's/libjansson-dev //'",                               /* a dependency missing */
		"-e 's#^COPY . .#RUN curl -sL https://example.com/x | sh\\nCOPY . .#'",
	};
	char args[1024];
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *m = mutate("deploy/docker/Dockerfile", "Dockerfile", bad[i]);
		snprintf(args, sizeof args, "dockerfile '%s'", m);
		int ok = refused(args);
		if (!ok)
			fprintf(stderr, "  mutation %zu (%s) not refused\n", i, bad[i]);
		T_CHECK(ok);
	}
}

static void test_systemd(void)
{
	T_EQ_INT(check("systemd deploy/systemd/thaw.service"), 0);
	char args[1024];
	/* each weakening of the unit is refused: the drain, the user, the hardening, the devices */
	static const char *const bad[] = {
		"-e 's/TimeoutStopSec=.*/TimeoutStopSec=20/'",
		"-e 's/^User=thaw/User=root/'",
		"-e '/^User=/d'",
		"-e '/^NoNewPrivileges=/d'",
		"-e 's/^ProtectSystem=strict/ProtectSystem=full/'",
		"-e 's/^CapabilityBoundingSet=/CapabilityBoundingSet=CAP_SYS_ADMIN/'",
		"-e '/^SystemCallFilter=@system-service/d'",
		"-e 's/^RestrictAddressFamilies=.*/RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_PACKET/'",
		"-e 's/^DevicePolicy=closed/PrivateDevices=yes/'",
		"-e '/char-nvidia-uvm/d'",
		"-e 's/^UMask=0077/UMask=0022/'",
		"-e 's/^StateDirectory=thaw/StateDirectory=other/'",
		"-e 's/^\\[Install\\]/MemoryDenyWriteExecute=yes\\n[Install]/'",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *m = mutate("deploy/systemd/thaw.service", "thaw.service", bad[i]);
		snprintf(args, sizeof args, "systemd '%s'", m);
		int ok = refused(args);
		if (!ok)
			fprintf(stderr, "  mutation %zu (%s) not refused\n", i, bad[i]);
		T_CHECK(ok);
	}
}

/* systemd's own reading of the unit, where systemd-analyze is installed: no unknown or
 * malformed directive (verify prints nothing), and an exposure score of at most 3.0 of 10
 * (`systemd-analyze security`; the unit running as root without hardening scored 9.6) */
static void test_systemd_analyze(void)
{
	if (sh("command -v systemd-analyze >/dev/null 2>&1") != 0)
		T_SKIP("systemd-analyze not installed");
	char cmd[8192], unit[700], out[700];
	snprintf(unit, sizeof unit, "%s/unit", t_tmpdir());
	snprintf(out, sizeof out, "%s/verify.txt", t_tmpdir());
	/* ExecStart must name an executable that exists here: the binary under test */
	char bin[PATH_MAX];
	if (!realpath(t_bin(), bin))
		T_SKIP("no thaw binary");
	snprintf(cmd, sizeof cmd, "mkdir -p '%s' && sed 's#^ExecStart=/usr/local/bin/thaw#ExecStart=%s#' "
		 "'%s/deploy/systemd/thaw.service' > '%s/thaw.service'", unit, bin, src, unit);
	T_EQ_INT(sh(cmd), 0);
	snprintf(cmd, sizeof cmd, "cd '%s' && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "
		 "./thaw.service > '%s' 2>&1", unit, out);
	int rc = sh(cmd);
	char *text = t_read_file(out, NULL);
	if (rc != 0 || (text && text[0]))
		fprintf(stderr, "  systemd-analyze verify: %d: %s\n", rc, text ? text : "");
	T_EQ_INT(rc, 0);
	T_CHECK(text && text[0] == 0);
	free(text);
	snprintf(cmd, sizeof cmd, "cd '%s' && systemd-analyze security --offline=yes --threshold=30 "
		 "./thaw.service >/dev/null 2>&1", unit);
	T_EQ_INT(sh(cmd), 0);
}

static void test_alerts_promtool(void)
{
	if (sh("command -v promtool >/dev/null 2>&1") != 0)
		T_SKIP("promtool not installed (Debian prometheus, scripts/install-deps.sh)");
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "cd '%s' && for f in $(find deploy -path '*prometheus*' -name '*.yml'); do "
		 "promtool check rules \"$f\" >/dev/null || exit 1; done", src);
	T_EQ_INT(sh(cmd), 0);
	/* the rules fire on series over their thresholds and stay quiet below them */
	snprintf(cmd, sizeof cmd, "cd '%s/tests/deploy' && promtool test rules alerts_test.yml >/dev/null",
		 src);
	T_EQ_INT(sh(cmd), 0);
	/* promtool itself refuses a broken expression */
	const char *m = mutate("deploy/prometheus/alerts.yml", "alerts.yml",
			       "-e 's/> 0.01/> > 0.01/'");
	snprintf(cmd, sizeof cmd, "promtool check rules '%s' >/dev/null 2>&1", m);
	T_CHECK(sh(cmd) != 0);
}

static void test_alerts_coverage(void)
{
	if (!have_yaml())
		T_SKIP("python3-yaml not installed (scripts/install-deps.sh)");
	T_EQ_INT(check("alerts deploy/prometheus/alerts.yml"), 0);
	static const char *const bad[] = {
		"-e 's/severity: critical/severity: page/'",
		"-e 's/> 0.9$/> 0.95/'",
		"-e 's/state=\"failed\"/state=\"cancelled\"/g'",
	};
	char args[1024];
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *m = mutate("deploy/prometheus/alerts.yml", "alerts.yml", bad[i]);
		snprintf(args, sizeof args, "alerts '%s'", m);
		T_CHECK(refused(args));
	}
}

static void test_dashboard(void)
{
	if (!have_yaml())
		T_SKIP("python3-yaml not installed (scripts/install-deps.sh)");
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "python3 -m json.tool '%s/deploy/grafana/dashboard.json' >/dev/null", src);
	T_EQ_INT(sh(cmd), 0);
	T_EQ_INT(check("dashboard deploy/grafana/dashboard.json"), 0);
	char args[1024];
	const char *m = mutate("deploy/grafana/dashboard.json", "dashboard.json",
			       "-e 's/thaw_cold_starts_total/thaw_cold_start_total/'");
	snprintf(args, sizeof args, "dashboard '%s'", m);
	T_CHECK(refused(args));
}

/* scrape a real daemon: deploy and call echo so the per-function families have series */
static int scrape_live(void)
{
	e2e_server s;
	const char *args[] = {"--no-access-log", NULL};
	if (e2e_start(&s, args, NULL) != 0)
		return -1;
	int ok = 1;
	e2e_resp r;
	const char *put = "PUT /v1/functions/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
			  "Content-Length: 15\r\n\r\n{\"kind\":\"echo\"}";
	if (e2e_request(&s, put, &r) != 0)
		ok = 0;
	else {
		T_CHECK(r.status == 201 || r.status == 200);
		e2e_resp_free(&r);
	}
	const char *inv = "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
			  "Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
	if (ok && e2e_request(&s, inv, &r) == 0) {
		T_EQ_INT(r.status, 200);
		e2e_resp_free(&r);
	} else
		ok = 0;
	if (ok && e2e_request(&s, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 0) {
		T_EQ_INT(r.status, 200);
		T_CHECK(strstr(r.body, "# TYPE thaw_invocations_total counter") != NULL);
		T_CHECK(strstr(r.body, "thaw_device_memory_bytes{") != NULL);
		FILE *f = fopen(scrape_path, "w");
		if (f) {
			fwrite(r.body, 1, r.body_len, f);
			fclose(f);
		} else
			ok = 0;
		e2e_resp_free(&r);
	} else
		ok = 0;
	T_EQ_INT(e2e_stop(&s, 15, 10), 0);
	return ok ? 0 : -1;
}

static void test_promql_names_exported(void)
{
	if (!have_yaml())
		T_SKIP("python3-yaml not installed (scripts/install-deps.sh)");
	snprintf(scrape_path, sizeof scrape_path, "%s/metrics.txt", t_tmpdir());
	if (scrape_live() != 0) {
		T_CHECK(!"scraping a live thaw serve failed");
		return;
	}
	char args[2048];
	snprintf(args, sizeof args, "promql '%s' runtime deploy/grafana/dashboard.json "
		 "deploy/prometheus/alerts.yml", scrape_path);
	T_EQ_INT(check(args), 0);
	static const char *const bad[] = {
		"-e 's/thaw_lane_busy_ratio/thaw_lane_busy/'",                      /* unknown metric */
		"-e 's/thaw_queue_duration_seconds_bucket/thaw_queue_duration_seconds/'", /* bare histogram */
		"-e 's/sum by (state) (thaw_jobs)/sum by (status) (thaw_jobs)/'",   /* unknown label */
		"-e 's/thaw_function_state{function/thaw_function_state{fn/'",      /* unknown label */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *m = mutate("deploy/grafana/dashboard.json", "dashboard.json", bad[i]);
		snprintf(args, sizeof args, "promql '%s' runtime '%s'", scrape_path, m);
		int ok = refused(args);
		if (!ok)
			fprintf(stderr, "  mutation %zu (%s) not refused\n", i, bad[i]);
		T_CHECK(ok);
	}
}

void t_main(void)
{
	src = getenv("THAW_SRC");
	if (!src)
		src = ".";
	T_RUN(test_yaml_parses);
	T_RUN(test_knative);
	T_RUN(test_knative_args_run);
	T_RUN(test_cluster);
	T_RUN(test_serve_flags);
	T_RUN(test_cluster_args_run);
	T_RUN(test_cluster_args_pg);
	T_RUN(test_kubectl_offline);
	T_RUN(test_dockerfile);
	T_RUN(test_systemd);
	T_RUN(test_systemd_analyze);
	T_RUN(test_alerts_promtool);
	T_RUN(test_alerts_coverage);
	T_RUN(test_dashboard);
	T_RUN(test_promql_names_exported);
}
