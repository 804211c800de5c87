/* test_sched_view.c — the invoke path runs no registry statement: a function deployed into a
 * real registry is called N times through the scheduler (CPU lane, libuv loop, in-process)
 * and the store's statement counter does not move per call; key checks answer from the
 * registry's view too, and a revocation (here, or through a second registry on the same data
 * directory, as `thaw keys` in another process) counts at the next check. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>
#include "runtime/access/rt_auth.h"
#include "runtime/base/rt_metrics.h"
#include "runtime/sched/rt_sched.h"
#include "runtime/store/rt_registry.h"
#include "snapshot/snap_pack.h"
#include "tests/t.h"

#define CALLS 50

static int n_ok, n_done;

static json_t *digit_input(void)
{
	json_t *row = json_array();
	for (int i = 0; i < 64; i++)
		json_array_append_new(row, json_real((i % 7) / 7.0));
	return json_pack("{s:[o]}", "inputs", row);
}

static void on_result(const rt_call_result *r, void *ud)
{
	(void)ud;
	n_done++;
	if (r->out && r->rev == 1 && json_object_get(r->out, "outputs"))
		n_ok++;
	else if (!r->out)
		fprintf(stderr, "  call failed: %d %s\n", r->err->status, r->err->msg);
}

/* call submits one call of the digits function (no transport, no cancel hook). */
static void call(rt_sched *s)
{
	rt_call c = {.function = "digits", .in = digit_input(), .done = on_result};
	rt_sched_submit(s, &c);
}

static int stopped;
static void on_stopped(void *ud)
{
	(void)ud;
	stopped = 1;
}

static void test_invoke_runs_no_statement(void)
{
	char data[1024], snaps[1100], out[1200], src[1200], err[512];
	snprintf(data, sizeof data, "%s/view", t_tmpdir());
	mkdir(data, 0755);
	snprintf(snaps, sizeof snaps, "%s/snapshots", data);
	mkdir(snaps, 0755);
	snprintf(out, sizeof out, "%s/digits.thaw", snaps);
	snprintf(src, sizeof src, "%s/tests/data/mlp_digits/model.safetensors", t_src());
	snap_pack_opts po = {.kind = "mlp", .w = {.threads = 1}};
	T_EQ_INT(snap_pack(src, out, &po, NULL, err, sizeof err), 0);
	uv_loop_t loop;
	uv_loop_init(&loop);
	rt_registry *reg;
	T_EQ_INT(rt_registry_open(data, &reg, err, sizeof err), 0);
	rt_manifest m;
	const char *mj = "{\"kind\": \"mlp\", \"snapshot\": \"digits\", \"device\": \"cpu\"}";
	T_EQ_INT(rt_manifest_parse(mj, strlen(mj), NULL, NULL, &m, err, sizeof err), 0);
	T_EQ_INT(rt_registry_put(reg, "digits", &m, out, NULL, err, sizeof err), 0);
	rt_metrics *met = rt_metrics_new();
	rt_sched_config sc;
	rt_sched_config_defaults(&sc);
	sc.cpu_threads = 1;
	rt_sched *s;
	T_EQ_INT(rt_sched_new(&loop, reg, met, &sc, &s), 0);
	rt_sched_start(s);
	/* the first call loads the view's entry and cold-starts the function */
	call(s);
	for (int i = 0; i < 100000 && n_done < 1; i++)
		uv_run(&loop, UV_RUN_ONCE);
	T_EQ_INT(n_ok, 1);
	uint64_t before = rt_registry_statements(reg);
	for (int k = 0; k < CALLS; k++) {
		call(s);
		for (int i = 0; i < 100000 && n_done < k + 2; i++)
			uv_run(&loop, UV_RUN_ONCE);
	}
	T_EQ_INT(n_ok, CALLS + 1);
	T_EQ_INT(rt_registry_statements(reg) - before, 0);
	/* the lookups the API layer makes per call answer from the view as well */
	rt_revision_info *ri = malloc(sizeof *ri);
	rt_traffic t;
	uint32_t rev = 0;
	before = rt_registry_statements(reg);
	for (int k = 0; k < CALLS; k++) {
		T_EQ_INT(rt_registry_get(reg, "digits", ri), 0);
		T_EQ_INT(rt_registry_get_revision(reg, "digits", 1, ri), 0);
		T_EQ_INT(rt_registry_get_traffic(reg, "digits", &t), 0);
		T_EQ_INT(rt_registry_pick_revision(reg, "digits", (uint64_t)k, &rev), 0);
	}
	T_EQ_INT(rt_registry_statements(reg) - before, 0);
	T_EQ_INT(rev, 1);
	T_EQ_STR(ri->snapshot_path, out);
	/* a write through the registry is seen at once: a new revision takes the traffic */
	T_EQ_INT(rt_registry_put(reg, "digits", &m, out, NULL, err, sizeof err), 0);
	T_EQ_INT(rt_registry_pick_revision(reg, "digits", 7, &rev), 0);
	T_EQ_INT(rev, 2);
	T_EQ_INT(rt_registry_get(reg, "digits", ri), 0);
	T_EQ_INT(ri->rev, 2);
	free(ri);
	stopped = 0;
	rt_sched_stop(s, on_stopped, NULL);
	for (int i = 0; i < 100000 && !stopped; i++)
		uv_run(&loop, UV_RUN_ONCE);
	T_CHECK(stopped);
	/* the lanes' handles close after the stop: let their callbacks run */
	for (int i = 0; i < 100000 && uv_run(&loop, UV_RUN_ONCE) != 0; i++)
		;
	rt_sched_free(s);
	rt_metrics_free(met);
	rt_registry_close(reg);
	T_EQ_INT(uv_loop_close(&loop), 0);
}

static void test_key_checks_run_no_statement(void)
{
	char data[1024], err[512], key[RT_AUTH_KEY_MAX], id[RT_AUTH_ID_LEN + 1];
	char gid[RT_AUTH_ID_LEN + 1], scopes[RT_AUTH_SCOPES_MAX], authz[RT_AUTH_KEY_MAX + 16];
	snprintf(data, sizeof data, "%s/view-keys", t_tmpdir());
	mkdir(data, 0755);
	rt_registry *reg, *other;
	rt_auth *a, *a2;
	T_EQ_INT(rt_registry_open(data, &reg, err, sizeof err), 0);
	T_EQ_INT(rt_auth_open(reg, data, &a, err, sizeof err), 0);
	const char *sc[] = {"invoke:digits"};
	T_EQ_INT(rt_auth_key_create(a, sc, 1, key, id, err, sizeof err), 0);
	snprintf(authz, sizeof authz, "Bearer %s", key);
	T_EQ_INT(rt_auth_check(a, authz, gid, scopes), 0);   /* loads the keys */
	uint64_t before = rt_registry_statements(reg);
	for (int k = 0; k < CALLS; k++) {
		T_EQ_INT(rt_auth_check(a, authz, gid, scopes), 0);
		T_EQ_INT(rt_auth_check(a, "Bearer thaw_0123456789ab_nope", gid, scopes), -EACCES);
	}
	T_EQ_INT(rt_registry_statements(reg) - before, 0);
	T_EQ_INT(rt_auth_check(a, authz, gid, scopes), 0);
	T_EQ_STR(scopes, "invoke:digits");
	/* revoked here: refused at the next check */
	T_EQ_INT(rt_auth_key_revoke(a, id), 0);
	T_EQ_INT(rt_auth_check(a, authz, gid, scopes), -EACCES);
	/* made and revoked through another registry on the same directory (another process) */
	T_EQ_INT(rt_registry_open(data, &other, err, sizeof err), 0);
	T_EQ_INT(rt_auth_open(other, data, &a2, err, sizeof err), 0);
	T_EQ_INT(rt_auth_key_create(a2, sc, 1, key, id, err, sizeof err), 0);
	snprintf(authz, sizeof authz, "Bearer %s", key);
	T_EQ_INT(rt_auth_check(a, authz, gid, scopes), 0);
	T_EQ_INT(rt_auth_key_revoke(a2, id), 0);
	T_EQ_INT(rt_auth_check(a, authz, gid, scopes), -EACCES);
	/* a deploy elsewhere is seen too */
	rt_manifest m;
	rt_revision_info *ri = malloc(sizeof *ri);
	const char *mj = "{\"kind\": \"echo\"}";
	T_EQ_INT(rt_manifest_parse(mj, strlen(mj), NULL, NULL, &m, err, sizeof err), 0);
	T_EQ_INT(rt_registry_put(other, "e", &m, NULL, NULL, err, sizeof err), 0);
	T_EQ_INT(rt_registry_get(reg, "e", ri), 0);
	T_EQ_INT(rt_registry_put(other, "e", &m, NULL, NULL, err, sizeof err), 0);
	T_EQ_INT(rt_registry_get(reg, "e", ri), 0);
	T_EQ_INT(ri->rev, 2);
	T_EQ_INT(rt_registry_delete(other, "e"), 0);
	T_EQ_INT(rt_registry_get(reg, "e", ri), -ENOENT);
	/* rt_registry_invalidate drops the view: the next read loads again */
	T_EQ_INT(rt_auth_check(a, "Bearer thaw_0123456789ab_nope", gid, scopes), -EACCES);
	before = rt_registry_statements(reg);
	rt_registry_invalidate(reg, NULL);
	T_EQ_INT(rt_auth_check(a, "Bearer thaw_0123456789ab_nope", gid, scopes), -EACCES);
	T_CHECK(rt_registry_statements(reg) > before);
	free(ri);
	rt_auth_close(a2);
	rt_registry_close(other);
	rt_auth_close(a);
	rt_registry_close(reg);
}

void t_main(void)
{
	T_RUN(test_invoke_runs_no_statement);
	T_RUN(test_key_checks_run_no_statement);
}
