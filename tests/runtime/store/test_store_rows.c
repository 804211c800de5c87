/* test_store_rows.c — rt_store_rows: the split check and its messages, the texts a put and a
 * job write, the row conversions (keys, nodes, jobs, revisions) over rows given as text
 * columns, and the GET /v1/functions/{name} body (which revisions it lists, the latest's
 * settings). Both stores run the same code through tests/runtime/store/registry_contract.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/store/rt_store_rows.h"
#include "tests/t.h"

/* a row of text columns (NULL: SQL NULL), as a store would hand one over */
static int t_is_null(const rt_store_row *row, int c)
{
	return ((const char *const *)row->res)[c] == NULL;
}

static const char *t_text(const rt_store_row *row, int c)
{
	return ((const char *const *)row->res)[c];
}

static int64_t t_i64(const rt_store_row *row, int c)
{
	const char *t = t_text(row, c);
	return t ? strtoll(t, NULL, 10) : 0;
}

static double t_f64(const rt_store_row *row, int c)
{
	const char *t = t_text(row, c);
	return t ? strtod(t, NULL) : 0;
}

static const rt_store_row_ops text_cols = {
	.is_null = t_is_null, .text = t_text, .i64 = t_i64, .f64 = t_f64};

static rt_store_row row_of(const char *const *cols)
{
	return (rt_store_row){.ops = &text_cols, .res = (void *)cols};
}

static void test_traffic_ok(void)
{
	char err[256];
	rt_traffic t = {.n = 2, .e = {{.rev = 1, .percent = 30}, {.rev = RT_MANIFEST_REV_LATEST,
									    .percent = 70}}};
	T_EQ_INT(rt_store_traffic_ok(&t, err, sizeof err), 0);
	t.e[1].percent = 60;
	T_EQ_INT(rt_store_traffic_ok(&t, err, sizeof err), -EINVAL);
	T_EQ_STR(err, "field 'traffic': percents must sum to 100 (got 90)");
	t.e[1] = (rt_traffic_entry){.rev = 1, .percent = 70};
	T_EQ_INT(rt_store_traffic_ok(&t, err, sizeof err), -EINVAL);
	T_EQ_STR(err, "field 'traffic': revision 1 twice");
	t.e[1] = (rt_traffic_entry){.rev = 2, .percent = 101};
	T_EQ_INT(rt_store_traffic_ok(&t, err, sizeof err), -EINVAL);
	T_EQ_STR(err, "field 'traffic': bad entry 1");
	t.n = 0;
	T_EQ_INT(rt_store_traffic_ok(&t, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "must name 1..") != NULL);
	T_EQ_INT(rt_store_no_revision("f", 7, 3, err, sizeof err), -ENOENT);
	T_EQ_STR(err, "field 'traffic': function 'f' has no revision 7 (latest is 3)");
}

static void test_put_texts(void)
{
	char err[256], *text, *dtext;
	rt_manifest m;
	const char *src = "{\"kind\":\"echo\",\"traffic\":{\"latest\":100}}";
	T_EQ_INT(rt_manifest_parse(src, strlen(src), NULL, NULL, &m, err, sizeof err), 0);
	T_EQ_INT(rt_store_put_texts("bad name!", &m, NULL, &text, &dtext, err, sizeof err), -EINVAL);
	T_CHECK(text == NULL && dtext == NULL);
	T_EQ_INT(rt_store_put_texts("f", &m, NULL, &text, &dtext, err, sizeof err), 0);
	T_CHECK(text && strstr(text, "\"kind\":\"echo\"") && !strstr(text, "traffic"));
	T_CHECK(dtext == NULL);
	free(text);
	rt_desc d = {.known = 1, .image_bytes = 42, .kind = "echo"};
	T_EQ_INT(rt_store_put_texts("f", &m, &d, &text, &dtext, err, sizeof err), 0);
	T_CHECK(dtext && strstr(dtext, "\"image_bytes\":42"));
	free(text);
	free(dtext);
	m.traffic.e[0].percent = 50;   /* a split that does not sum to 100 is refused */
	T_EQ_INT(rt_store_put_texts("f", &m, NULL, &text, &dtext, err, sizeof err), -EINVAL);
	T_EQ_STR(err, "field 'traffic': percents must sum to 100 (got 50)");
	m.traffic.n = 0;
	const rt_traffic *s = rt_store_put_split(&m);
	T_EQ_INT(s->n, 1);
	T_EQ_INT(s->e[0].rev, RT_MANIFEST_REV_LATEST);
	T_EQ_INT(s->e[0].percent, 100);
}

static void test_job_texts(void)
{
	rt_job_row r = {.state = RT_JOB_RUNNING};
	char *p, *s, *mt;
	T_EQ_INT(rt_store_job_texts(&r, &p, &s), 0);
	T_EQ_STR(p, "{}");
	T_EQ_STR(s, "\"now\"");
	free(p);
	free(s);
	r.params = json_pack("{s:i, s:i}", "b", 2, "a", 1);
	r.schedule = json_string("idle");
	T_EQ_INT(rt_store_job_texts(&r, &p, &s), 0);
	T_EQ_STR(p, "{\"a\":1,\"b\":2}");
	T_EQ_STR(s, "\"idle\"");
	free(p);
	free(s);
	T_EQ_INT(rt_store_job_metrics(&r, &mt), 0);
	T_CHECK(mt == NULL);
	r.metrics = json_pack("{s:i}", "loss", 3);
	T_EQ_INT(rt_store_job_metrics(&r, &mt), 0);
	T_EQ_STR(mt, "{\"loss\":3}");
	free(mt);
	r.state = RT_JOB_STATES;
	T_EQ_INT(rt_store_job_metrics(&r, &mt), -EINVAL);
	T_CHECK(mt == NULL);
	rt_job_row_clear(&r);
	T_EQ_INT(rt_store_node_ok("node-a", 0), 1);
	T_EQ_INT(rt_store_node_ok("", 0), 0);
	T_EQ_INT(rt_store_node_ok("", 1), 1);
	T_EQ_INT(rt_store_node_ok(NULL, 1), 0);
	char longid[RT_NODE_ID_MAX + 2];
	memset(longid, 'n', sizeof longid - 1);
	longid[sizeof longid - 1] = 0;
	T_EQ_INT(rt_store_node_ok(longid, 0), 0);
	T_EQ_INT(rt_store_job_state("preempted"), RT_JOB_PREEMPTED);
	T_EQ_INT(rt_store_job_state("paused"), -1);
	T_EQ_INT(rt_store_job_state(NULL), -1);
}

static void test_key_and_node_rows(void)
{
	unsigned char h[RT_REGISTRY_KEY_HASH_LEN];
	memset(h, 0xab, sizeof h);
	const char *live[] = {"k1", "-", "invoke", "1000", NULL};
	rt_store_row row = row_of(live);
	rt_store_key k = {0};
	rt_store_key_from_row(&row, h, &k);
	T_EQ_STR(k.id, "k1");
	T_EQ_STR(k.scopes, "invoke");
	T_EQ_INT(k.created_ms, 1000);
	T_EQ_INT(k.revoked_ms, 0);
	T_CHECK(k.hash[0] == 0xab && k.hash[RT_REGISTRY_KEY_HASH_LEN - 1] == 0xab);
	const char *revoked0[] = {"k2", "-", "admin", "5", "0"};
	row = row_of(revoked0);
	rt_store_key_from_row(&row, NULL, &k);
	T_EQ_STR(k.id, "");             /* damaged hash: matches no key */
	T_EQ_INT(k.revoked_ms, 1);      /* revoked at 0 still reads as revoked */

	const char *node[] = {"a", "http://10.0.0.5:8080", "10", "20", "900", "{\"gpus\":1}"};
	rt_node_row n = {0};
	row = row_of(node);
	T_EQ_INT(rt_store_fill_node(&row, &n), 0);
	T_EQ_STR(n.id, "a");
	T_EQ_STR(n.advertise, "http://10.0.0.5:8080");
	T_EQ_INT(n.started_ms, 10);
	T_EQ_INT(n.beat_ms, 20);
	T_EQ_INT(n.lease_left_ms, 900);
	T_EQ_STR(n.state, "{\"gpus\":1}");
	free(n.state);
	node[5] = NULL;
	T_EQ_INT(rt_store_fill_node(&row, &n), 0);
	T_CHECK(n.state == NULL);

	const char *entry[] = {"f", "mlp", "3", "1234"};
	rt_registry_entry e;
	row = row_of(entry);
	T_EQ_INT(rt_store_fill_entry(&row, &e), 0);
	T_EQ_STR(e.name, "f");
	T_EQ_STR(e.kind, "mlp");
	T_EQ_INT(e.latest_rev, 3);
	T_EQ_INT(e.updated_ms, 1234);
	int64_t id;
	const char *idrow[] = {"77"};
	row = row_of(idrow);
	T_EQ_INT(rt_store_fill_id(&row, &id), 0);
	T_EQ_INT(id, 77);
}

static void test_job_row(void)
{
	const char *cols[24] = {
		"9", "finetune", "f", "2", "/s/f.thaw", "{\"steps\":10}", "\"idle\"", "-3", "cpu",
		"running", "0.25", "4", "not json", "1", "100", "110", NULL, "120", NULL, NULL, NULL,
		"/ck/9", "node-a", "5000"};
	rt_store_row row = row_of(cols);
	rt_job_row r;
	memset(&r, 0, sizeof r);
	rt_store_job_from_row(&row, &r);
	T_EQ_INT(r.id, 9);
	T_EQ_STR(r.type, "finetune");
	T_EQ_STR(r.function, "f");
	T_EQ_INT(r.revision, 2);
	T_EQ_STR(r.snapshot, "/s/f.thaw");
	T_EQ_INT(json_integer_value(json_object_get(r.params, "steps")), 10);
	T_EQ_STR(json_string_value(r.schedule), "idle");
	T_EQ_INT(r.priority, -3);
	T_EQ_STR(r.device, "cpu");
	T_EQ_INT(r.state, RT_JOB_RUNNING);
	T_CHECK(r.progress == 0.25);
	T_EQ_INT(r.step, 4);
	T_CHECK(json_is_null(r.metrics));   /* unreadable JSON column */
	T_EQ_INT(r.preemptions, 1);
	T_EQ_INT(r.created_ms, 100);
	T_EQ_INT(r.started_ms, 110);
	T_EQ_INT(r.finished_ms, 0);
	T_EQ_INT(r.updated_ms, 120);
	T_EQ_STR(r.error, "");
	T_EQ_INT(r.result_revision, 0);
	T_EQ_STR(r.checkpoint, "/ck/9");
	T_EQ_STR(r.owner, "node-a");
	T_EQ_INT(r.lease_until_ms, 5000);
	rt_job_row_clear(&r);
}

static void test_rev_row(void)
{
	rt_revision_info ri;
	const char *ok[] = {"3", "{\"kind\":\"echo\"}", "", "1500", "not json"};
	rt_store_row row = row_of(ok);
	T_EQ_INT(rt_store_rev_from_row(&row, "f", &ri), 0);
	T_EQ_STR(ri.name, "f");
	T_EQ_INT(ri.rev, 3);
	T_EQ_STR(ri.manifest.kind, "echo");
	T_EQ_STR(ri.snapshot_path, "");
	T_EQ_INT(ri.created_ms, 1500);
	T_EQ_INT(ri.desc.known, 0);
	const char *bad[] = {"4", "{\"kind\":", "/s", "1", NULL};
	row = row_of(bad);
	T_EQ_INT(rt_store_rev_from_row(&row, "f", &ri), -EIO);
	const char *none[] = {"5", NULL, "/s", "1", NULL};
	row = row_of(none);
	T_EQ_INT(rt_store_rev_from_row(&row, "f", &ri), -EIO);
}

static void test_fn_json(void)
{
	rt_store_fn_json b;
	char rev[16], created[24];
	const char *fn[] = {"1", "echo", "25", "0", "1767322245678"};
	const char *cols[5] = {rev, "{\"kind\":\"echo\"}", NULL, created, NULL};
	rt_store_row row = row_of(fn);
	T_EQ_INT(rt_store_fn_json_init(&b, "f"), 0);
	T_EQ_INT(rt_store_fn_json_head(&b, &row), 0);
	b.traffic = (rt_traffic){.n = 2, .e = {{.rev = RT_MANIFEST_REV_LATEST, .percent = 90},
					       {.rev = 2, .percent = 10}}};
	row = row_of(cols);
	for (int i = 1; i <= 25; i++) {
		snprintf(rev, sizeof rev, "%d", i);
		snprintf(created, sizeof created, "%d", i * 1000);
		cols[2] = i == 25 ? "/snap/f25.thaw" : "";
		T_EQ_INT(rt_store_fn_json_rev(&b, &row), 0);
	}
	json_t *o = rt_store_fn_json_done(&b);
	T_CHECK(o != NULL && b.o == NULL && b.ri == NULL);
	T_EQ_STR(json_string_value(json_object_get(o, "name")), "f");
	T_EQ_STR(json_string_value(json_object_get(o, "kind")), "echo");
	T_EQ_INT(json_integer_value(json_object_get(o, "revision")), 25);
	T_EQ_STR(json_string_value(json_object_get(o, "created")), "1970-01-01T00:00:00.000Z");
	T_EQ_STR(json_string_value(json_object_get(o, "updated")), "2026-01-02T02:50:45.678Z");
	T_EQ_INT(json_integer_value(json_object_get(o, "revisions_total")), 25);
	T_EQ_STR(json_string_value(json_object_get(o, "snapshot_path")), "/snap/f25.thaw");
	T_EQ_STR(json_string_value(json_object_get(json_object_get(o, "settings"), "kind")), "echo");
	/* the newest RT_REGISTRY_LIST_REVS (6..25) and revision 2, which takes traffic */
	json_t *revs = json_object_get(o, "revisions");
	T_EQ_INT(json_array_size(revs), RT_REGISTRY_LIST_REVS + 1);
	T_EQ_INT(json_integer_value(json_object_get(json_array_get(revs, 0), "revision")), 2);
	T_CHECK(json_is_null(json_object_get(json_array_get(revs, 0), "snapshot_path")));
	T_EQ_INT(json_integer_value(json_object_get(json_array_get(revs, 1), "revision")), 6);
	T_EQ_STR(json_string_value(json_object_get(json_array_get(revs, 1), "created")),
		 "1970-01-01T00:00:06.000Z");
	T_EQ_INT(json_integer_value(json_object_get(json_object_get(o, "traffic"), "2")), 10);
	T_EQ_INT(json_integer_value(json_object_get(json_object_get(o, "traffic"), "latest")), 90);
	json_decref(o);

	/* an unreadable revision fails the body; clear drops what was built */
	T_EQ_INT(rt_store_fn_json_init(&b, "f"), 0);
	row = row_of(fn);
	T_EQ_INT(rt_store_fn_json_head(&b, &row), 0);
	cols[1] = "[]";
	row = row_of(cols);
	T_EQ_INT(rt_store_fn_json_rev(&b, &row), -EIO);
	rt_store_fn_json_clear(&b);
	T_CHECK(b.o == NULL && b.revs == NULL && b.ri == NULL);
}

void t_main(void)
{
	T_RUN(test_traffic_ok);
	T_RUN(test_put_texts);
	T_RUN(test_job_texts);
	T_RUN(test_key_and_node_rows);
	T_RUN(test_job_row);
	T_RUN(test_rev_row);
	T_RUN(test_fn_json);
}
