/* test_cluster_e2e.c — three `thaw serve` nodes on one PostgreSQL registry (a real
 * PostgreSQL 15 started by tests/pg.c, Unix socket only) behind haproxy round-robin (the
 * stand-in for Knative's router), each with one fake GPU: a deploy on one node is callable
 * through the balancer on every node within 1 s; traffic splits and rollbacks made on any node
 * hold on all; keys made or revoked on one node count on all; a call claiming to be forwarded
 * without a valid signature is refused; a snapshot pushed through the balancer serves on every
 * node (the shared directory); under steady calls a function
 * is cold-started once in the cluster and a second one lands on a node with more free memory;
 * kill -9 of the node holding a warm function: calls keep succeeding, none past its deadline;
 * PostgreSQL stopped for 10 s: warm calls answer 200, deploys 503 naming the database, and
 * everything works again once it is back, without restarting a node. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "tests/e2e/e2e.h"
#include "tests/e2e/haproxy.h"
#include "tests/pg.h"
#include "tests/t.h"

#define NODES 3

static t_pg *pg;
static char uri[512];
static char shared[512], secret_file[600], snap[700];
static char key_hdr[256];          /* "Authorization: Bearer ...\r\n" of an admin key */
static e2e_server node[NODES];
static int up[NODES];
static e2e_haproxy lb;
static e2e_server lbs;             /* the balancer, as a server to call */
static const char *bin, *src;

/* starts node i (again on its port when port > 0) */
static int start_node(int i, int port)
{
	char id[16], ps[16];
	snprintf(id, sizeof id, "n%d", i + 1);
	snprintf(ps, sizeof ps, "%d", port);
	const char *args[] = {"--auth", "--port", ps, "--registry", uri, "--node-id", id,
			      "--cluster-secret-file", secret_file, "--node-lease", "1200",
			      "--no-gpu", "--fake-gpus", "1:0.05", "--allow-root", shared,
			      "--shared-dir", shared, "--no-access-log", NULL};
	up[i] = e2e_start(&node[i], args, NULL) == 0;
	return up[i] ? 0 : -1;
}

static int call(const e2e_server *s, const char *method, const char *path, const char *body,
		e2e_resp *r)
{
	return e2e_call(s, method, path, key_hdr, body, r);
}

static int status_of(const e2e_server *s, const char *method, const char *path,
		     const char *body)
{
	e2e_resp r;
	memset(&r, 0, sizeof r);
	int st = call(s, method, path, body, &r) < 0 ? -1 : r.status;
	e2e_resp_free(&r);
	return st;
}

static const char *digits_in =
	"{\"inputs\":[[0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,"
	"0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0]]}";

/* invokes fn through s; the answer's status, and its Thaw-Revision / Thaw-Node when given */
static int invoke(const e2e_server *s, const char *fn, int *rev, char *nodebuf, size_t cap)
{
	char path[160];
	snprintf(path, sizeof path, "/v1/functions/%s/invoke", fn);
	e2e_resp r;
	memset(&r, 0, sizeof r);
	if (call(s, "POST", path, digits_in, &r) < 0)
		return -1;
	if (rev) {
		char *v = e2e_header(&r, "Thaw-Revision");
		*rev = v ? atoi(v) : -1;
		free(v);
	}
	if (nodebuf) {
		char *v = e2e_header(&r, "Thaw-Node");
		snprintf(nodebuf, cap, "%s", v ? v : "");
		free(v);
	}
	int st = r.status;
	e2e_resp_free(&r);
	return st;
}

/* the sum over the live nodes of the counter lines of /metrics starting with prefix */
static double metric_sum(const char *prefix)
{
	double sum = 0;
	for (int i = 0; i < NODES; i++) {
		if (!up[i])
			continue;
		e2e_resp r;
		memset(&r, 0, sizeof r);
		if (call(&node[i], "GET", "/metrics", NULL, &r) == 200 && r.body)
			for (char *l = r.body; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
				if (!strncmp(l, prefix, strlen(prefix))) {
					char *sp = strchr(l, ' ');
					if (sp)
						sum += atof(sp + 1);
				}
		e2e_resp_free(&r);
	}
	return sum;
}

static int deploy(const e2e_server *s, const char *fn, const char *extra_fields)
{
	char path[160], body[1200];
	snprintf(path, sizeof path, "/v1/functions/%s", fn);
	snprintf(body, sizeof body, "{\"kind\":\"mlp\",\"snapshot\":\"%s\"%s%s}", snap,
		 extra_fields ? "," : "", extra_fields ? extra_fields : "");
	return status_of(s, "PUT", path, body);
}

/* waits up to ms until every live node answers invoke(fn) with revision want (0: any) */
static int all_nodes_serve(const char *fn, int want, int ms)
{
	double end = e2e_now_s() + ms / 1000.0;
	while (e2e_now_s() < end) {
		int ok = 1;
		for (int i = 0; i < NODES && ok; i++) {
			int rev = 0;
			if (up[i] && (invoke(&node[i], fn, &rev, NULL, 0) != 200 || (want && rev != want)))
				ok = 0;
		}
		if (ok)
			return 1;
		usleep(20000);
	}
	return 0;
}

static void test_deploy_traffic_keys(void)
{
	T_EQ_INT(deploy(&node[0], "alpha", NULL), 201);
	T_CHECK(all_nodes_serve("alpha", 1, 1000));
	for (int i = 0; i < 6; i++)
		T_EQ_INT(invoke(&lbs, "alpha", NULL, NULL, 0), 200);
	/* revision 2 deployed on node 2 takes the traffic; node 3 rolls back to 1 */
	T_EQ_INT(deploy(&node[1], "alpha", "\"concurrency\":4"), 200);
	T_CHECK(all_nodes_serve("alpha", 2, 1000));
	T_EQ_INT(status_of(&node[2], "PUT", "/v1/functions/alpha", "{\"traffic\":{\"1\":100}}"), 200);
	T_CHECK(all_nodes_serve("alpha", 1, 1000));
	/* a key made on node 2 works on nodes 1 and 3; revoked on node 3, refused on node 1 */
	e2e_resp r;
	memset(&r, 0, sizeof r);
	T_EQ_INT(call(&node[1], "POST", "/v1/keys", "{\"scopes\":[\"invoke:alpha\"]}", &r), 201);
	json_t *k = r.body ? json_loads(r.body, 0, NULL) : NULL;
	e2e_resp_free(&r);
	const char *kv = json_string_value(json_object_get(k, "key"));
	const char *kid = json_string_value(json_object_get(k, "id"));
	T_CHECK(kv && kid);
	if (kv && kid) {
		char hdr[256], path[128];
		snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", kv);
		for (int i = 0; i < NODES; i++) {
			double end = e2e_now_s() + 1.0;
			int st = 0;
			while (e2e_now_s() < end) {
				memset(&r, 0, sizeof r);
				st = e2e_call(&node[i], "POST", "/v1/functions/alpha/invoke", hdr,
					      digits_in, &r);
				e2e_resp_free(&r);
				if (st == 200)
					break;
				usleep(10000);
			}
			T_EQ_INT(st, 200);
		}
		snprintf(path, sizeof path, "/v1/keys/%s", kid);
		T_EQ_INT(status_of(&node[2], "DELETE", path, NULL), 200);
		double end = e2e_now_s() + 1.0;
		int st = 0;
		while (e2e_now_s() < end) {
			memset(&r, 0, sizeof r);
			e2e_call(&node[0], "POST", "/v1/functions/alpha/invoke", hdr, digits_in, &r);
			st = r.status;
			e2e_resp_free(&r);
			if (st == 401)
				break;
			usleep(20000);
		}
		T_EQ_INT(st, 401);
	}
	json_decref(k);
}

/* which node holds fn warm, from the nodes' /v1/cluster views of themselves; -1 none */
static int holder(const char *fn)
{
	for (int i = 0; i < NODES; i++) {
		if (!up[i])
			continue;
		e2e_resp r;
		memset(&r, 0, sizeof r);
		int found = 0;
		if (call(&node[i], "GET", "/v1/cluster", NULL, &r) == 200) {
			json_t *o = json_loads(r.body, 0, NULL), *n;
			size_t j;
			json_array_foreach(json_object_get(o, "nodes"), j, n)
				if (json_is_true(json_object_get(n, "self")) &&
				    json_object_get(json_object_get(n, "functions"), fn))
					found = 1;
			json_decref(o);
		}
		e2e_resp_free(&r);
		if (found)
			return i;
	}
	return -1;
}

static void test_cold_once_and_placement(void)
{
	T_EQ_INT(deploy(&node[2], "beta", NULL), 201);
	for (int i = 0; i < 30; i++)
		T_EQ_INT(invoke(&lbs, "beta", NULL, NULL, 0), 200);
	T_EQ_INT((int)metric_sum("thaw_cold_starts_total{function=\"beta\""), 1);
	if ((int)metric_sum("thaw_cold_starts_total{function=\"beta\"") != 1)
		for (int i = 0; i < NODES; i++) {
			char c2[800];
			snprintf(c2, sizeof c2, "grep -E 'forward of|cold start|beta' %s | grep -v '\"request\"' | head -20 >&2", node[i].log_path);
			fprintf(stderr, "node %d:\n", i + 1);
			if (system(c2) != 0)
				fprintf(stderr, "  (nothing)\n");
		}
	int hb = holder("beta");
	T_CHECK(hb >= 0);
	/* the node holding beta has less free memory: gamma goes elsewhere */
	usleep(400000);   /* a beat carries beta's memory to every view */
	T_EQ_INT(deploy(&node[0], "gamma", NULL), 201);
	for (int i = 0; i < 12; i++)
		T_EQ_INT(invoke(&lbs, "gamma", NULL, NULL, 0), 200);
	T_EQ_INT((int)metric_sum("thaw_cold_starts_total{function=\"gamma\""), 1);
	int hg = holder("gamma");
	T_CHECK(hg >= 0 && hg != hb);
	T_CHECK(metric_sum("thaw_forwarded_calls_total") > 0);
}

static void test_node_death(void)
{
	int hb = holder("beta");
	T_CHECK(hb >= 0);
	if (hb < 0)
		return;
	kill(node[hb].pid, SIGKILL);
	e2e_stop(&node[hb], SIGKILL, 5);
	up[hb] = 0;
	int ok = 0;
	double worst = 0;
	for (int i = 0; i < 30; i++) {
		double t0 = e2e_now_s();
		int st = invoke(&lbs, "beta", NULL, NULL, 0);
		double dt = e2e_now_s() - t0;
		if (dt > worst)
			worst = dt;
		ok += st == 200;
	}
	T_EQ_INT(ok, 30);
	T_CHECK(worst < 10.0);   /* the function's timeout_s default is 30: none waits that long */
	T_CHECK(holder("beta") >= 0);
	T_EQ_INT(start_node(hb, node[hb].port), 0);
	T_CHECK(e2e_haproxy_wait_up(&lb, NODES, 5000));
}

static void test_database_outage(void)
{
	/* beta and gamma are warm somewhere; every node knows where */
	for (int i = 0; i < 6; i++)
		T_EQ_INT(invoke(&lbs, "gamma", NULL, NULL, 0), 200);
	T_EQ_INT(t_pg_stop(pg), 0);
	double end = e2e_now_s() + 10.0;
	int calls = 0, good = 0, deploys = 0, refused = 0;
	while (e2e_now_s() < end) {
		good += invoke(&lbs, "gamma", NULL, NULL, 0) == 200;
		calls++;
		if (calls % 10 == 0) {
			e2e_resp r;
			memset(&r, 0, sizeof r);
			char body[1000];
			snprintf(body, sizeof body, "{\"kind\":\"mlp\",\"snapshot\":\"%s\"}", snap);
			call(&node[calls / 10 % NODES], "PUT", "/v1/functions/delta", body, &r);
			deploys++;
			refused += r.status == 503 && r.body && strstr(r.body, "postgresql");
			if (!(r.status == 503 && r.body && strstr(r.body, "postgresql")))
				fprintf(stderr, "  deploy in the outage (node %d): %d %s\n",
					calls / 10 % NODES + 1, r.status, r.body ? r.body : "");
			e2e_resp_free(&r);
		}
		usleep(50000);
	}
	T_CHECK(calls > 20);
	T_EQ_INT(good, calls);
	T_EQ_INT(refused, deploys);
	T_EQ_INT(t_pg_start(pg), 0);
	int st = 0;
	end = e2e_now_s() + 10.0;
	while (e2e_now_s() < end && (st = deploy(&node[1], "delta", NULL)) != 201)
		usleep(100000);
	T_EQ_INT(st, 201);
	T_CHECK(all_nodes_serve("delta", 1, 3000));
}

/* a snapshot pushed through the balancer lands in the shared directory: a function deployed
 * from it by name (through the balancer too) is callable on every node */
static void test_upload_shared(void)
{
	char cmd[2400], code[16] = "";
	snprintf(cmd, sizeof cmd, "curl -s -o /dev/null -w '%%{http_code}' -X PUT --data-binary @%s "
		 "-H '%.*s' http://127.0.0.1:%d/v1/snapshots/pushed.thaw", snap,
		 (int)strlen(key_hdr) - 2, key_hdr, lbs.port);
	FILE *p = popen(cmd, "r");
	T_CHECK(p && fgets(code, sizeof code, p));
	if (p)
		pclose(p);
	T_EQ_STR(code, "201");
	T_EQ_INT(status_of(&lbs, "PUT", "/v1/functions/pushed",
			   "{\"kind\":\"mlp\",\"snapshot\":\"pushed.thaw\"}"), 201);
	T_CHECK(all_nodes_serve("pushed", 1, 2000));
}

/* a client cannot pass a call off as forwarded: an unsigned, expired or foreign signature is
 * refused with 403 on every node */
static void test_forged_forward(void)
{
	const char *forged[] = {
		"X-Thaw-Forwarded: n1;99999999999999;00\r\n",
		"X-Thaw-Forwarded: n1;1;0000000000000000000000000000000000000000000000000000000000000000\r\n",
		"X-Thaw-Forwarded: garbage\r\n",
	};
	for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
		char hdr[512];
		snprintf(hdr, sizeof hdr, "%s%s", key_hdr, forged[i]);
		for (int n = 0; n < NODES; n++) {
			e2e_resp r;
			memset(&r, 0, sizeof r);
			T_EQ_INT(e2e_call(&node[n], "POST", "/v1/functions/alpha/invoke", hdr, digits_in,
					  &r), 403);
			T_CHECK(r.body && strstr(r.body, "X-Thaw-Forwarded"));
			e2e_resp_free(&r);
		}
	}
}

static int ready;   /* the setup went through: the other tests run */

static void test_setup(void)
{
	bin = getenv("THAW_BIN");
	src = getenv("THAW_SRC");
	T_CHECK(bin && src);
	if (!bin || !src)
		return;
	pg = t_pg_server();
	T_CHECK(pg);
	if (!pg || t_pg_new_db(pg, uri, sizeof uri) < 0)
		return;
	snprintf(shared, sizeof shared, "/tmp/thaw-cluster-XXXXXX");
	T_CHECK(mkdtemp(shared));
	chmod(shared, 0755);
	snprintf(secret_file, sizeof secret_file, "%s/cluster.secret", shared);
	FILE *f = fopen(secret_file, "w");
	T_CHECK(f);
	if (!f)
		return;
	fprintf(f, "an-e2e-test-cluster-secret-0123456789\n");
	fclose(f);
	snprintf(snap, sizeof snap, "%s/digits.thaw", shared);
	char cmd[2400];
	snprintf(cmd, sizeof cmd, "%s snapshot pack %s/tests/data/mlp_digits/model.safetensors -o %s "
		 "--kind mlp >/dev/null", bin, src, snap);
	T_EQ_INT(system(cmd), 0);
	/* the cluster's first admin key, made on the registry before any node runs */
	snprintf(cmd, sizeof cmd, "%s keys create --scope admin --registry '%s' --data %s/cli",
		 bin, uri, shared);
	FILE *p = popen(cmd, "r");
	char line[512] = "", keyv[256] = "";
	while (p && fgets(line, sizeof line, p)) {
		char *k = strstr(line, "thaw_");
		if (k)
			sscanf(k, "%255s", keyv);
	}
	T_CHECK(p);
	if (p)
		T_EQ_INT(pclose(p), 0);
	T_CHECK(keyv[0]);
	if (!keyv[0])
		return;
	snprintf(key_hdr, sizeof key_hdr, "Authorization: Bearer %s\r\n", keyv);
	int ports[NODES];
	for (int i = 0; i < NODES; i++) {
		T_EQ_INT(start_node(i, 0), 0);
		if (!up[i])
			return;
		ports[i] = node[i].port;
	}
	T_EQ_INT(e2e_haproxy_start(&lb, ports, NODES, NULL, NULL), 0);
	lbs.port = lb.port;
	T_CHECK(e2e_haproxy_wait_up(&lb, NODES, 5000));
	ready = 1;
}

#define RUN_READY(fn) do { if (ready) T_RUN(fn); } while (0)

void t_main(void)
{
	T_RUN(test_setup);
	RUN_READY(test_deploy_traffic_keys);
	RUN_READY(test_forged_forward);
	RUN_READY(test_upload_shared);
	RUN_READY(test_cold_once_and_placement);
	RUN_READY(test_node_death);
	RUN_READY(test_database_outage);
	if (lb.pid > 0)
		e2e_haproxy_stop(&lb);
	for (int i = 0; i < NODES; i++)
		if (up[i])
			e2e_stop(&node[i], SIGTERM, 10);
	if (shared[0]) {
		char cmd[600];
		snprintf(cmd, sizeof cmd, "rm -rf %s", shared);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", shared);
	}
}
