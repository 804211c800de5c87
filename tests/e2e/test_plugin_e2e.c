/* test_plugin_e2e.c — custom function kinds end to end: the example plugin
 * functions/examples/fn_affine.c (built by make as $BUILD/examples/libthaw_affine.so) deployed
 * through `thaw serve` as "kind": "plugin:/path/libthaw_affine.so" over a snapshot packed from a
 * safetensors file written here, its answers checked against y = W x + b computed here in
 * double; the same example built as an ABI 3 kind (its table ends at hf_model_types) still
 * deploys and serves; bad plugins (outside the plugin roots, not .so, not a shared object,
 * built for ABI 1, no thaw_fn_kind symbol, name taken by a built-in, plugins disabled) refused
 * with 400/403/409 while the daemon keeps serving. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include "tests/e2e/e2e.h"
#include "tests/t.h"

#define N_OUT 3
#define N_IN 5

static e2e_server srv;
static int srv_ok;
static char so_path[1024], plug_dir[700], snap[700];
static float W[N_OUT][N_IN], B[N_OUT];

static int call(const char *method, const char *path, const char *body, const char *hdrs,
		json_t **out)
{
	e2e_resp r;
	int st = e2e_call(&srv, method, path, hdrs, body, &r);
	if (st < 0)
		return -1;
	if (out)
		*out = json_loadb(r.body, r.body_len, 0, NULL);
	if (st >= 400)
		fprintf(stderr, "  %s %s -> %d %.*s\n", method, path, st, (int)r.body_len, r.body);
	e2e_resp_free(&r);
	return st;
}

/* writes a safetensors file with "weight" [N_OUT, N_IN] and "bias" [N_OUT] (F32) */
static int write_safetensors(const char *path)
{
	char hdr[512];
	int n = snprintf(hdr, sizeof hdr, "{\"weight\":{\"dtype\":\"F32\",\"shape\":[%d,%d],"
			 "\"data_offsets\":[0,%d]},\"bias\":{\"dtype\":\"F32\",\"shape\":[%d],"
			 "\"data_offsets\":[%d,%d]}}", N_OUT, N_IN, N_OUT * N_IN * 4, N_OUT,
			 N_OUT * N_IN * 4, N_OUT * N_IN * 4 + N_OUT * 4);
	while (n % 8)
		hdr[n++] = ' ';
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	uint64_t len = (uint64_t)n;
	fwrite(&len, 8, 1, f);
	fwrite(hdr, 1, (size_t)n, f);
	fwrite(W, 4, N_OUT * N_IN, f);
	fwrite(B, 4, N_OUT, f);
	return fclose(f);
}

/* builds C source into dir/name.so; 0 or -1 */
static int build_so(const char *dir, const char *name, const char *src, char *so, size_t cap)
{
	const char *top = getenv("THAW_SRC") ? getenv("THAW_SRC") : ".";
	char c[1024], cmd[4096];
	snprintf(c, sizeof c, "%s/%s.c", dir, name);
	snprintf(so, cap, "%s/%s.so", dir, name);
	FILE *f = fopen(c, "w");
	if (!f)
		return -1;
	fputs(src, f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "${CC:-cc} -shared -fPIC -I%s -o %s %s 2>&1", top, so, c);
	return system(cmd) == 0 ? 0 : -1;
}

static void setup(void)
{
	const char *bin = getenv("THAW_BIN") ? getenv("THAW_BIN") : "build/thaw";
	char real_bin[1024], cmd[3000], st_path[800];
	if (!realpath(bin, real_bin))
		return;
	snprintf(so_path, sizeof so_path, "%.*s/examples/libthaw_affine.so",
		 (int)(strrchr(real_bin, '/') - real_bin), real_bin);
	if (access(so_path, R_OK) != 0) {
		fprintf(stderr, "  %s missing (make builds it)\n", so_path);
		return;
	}
	for (int i = 0; i < N_OUT; i++) {
		for (int j = 0; j < N_IN; j++)
			W[i][j] = (float)sin(1.0 + i * 7 + j * 3) * 2.0f;
		B[i] = 0.25f * (float)(i + 1) - 0.6f;
	}
	snprintf(plug_dir, sizeof plug_dir, "%s/plugins", t_tmpdir());
	snprintf(cmd, sizeof cmd, "mkdir -p %s", plug_dir);
	if (system(cmd) != 0)
		return;
	snprintf(st_path, sizeof st_path, "%s/affine.safetensors", t_tmpdir());
	snprintf(snap, sizeof snap, "%s/affine.thaw", t_tmpdir());
	if (write_safetensors(st_path) < 0)
		return;
	snprintf(cmd, sizeof cmd, "%s snapshot pack %s -o %s --kind affine --quiet", bin, st_path, snap);
	if (system(cmd) != 0)
		return;
	/* plugin roots: the build's examples directory and one of our own for the bad objects */
	char root1[1024];
	snprintf(root1, sizeof root1, "%.*s", (int)(strrchr(so_path, '/') - so_path), so_path);
	const char *args[] = {"--allow-root", t_tmpdir(), "--plugin-root", root1, "--plugin-root",
			      plug_dir, "--no-access-log", NULL};
	srv_ok = e2e_start(&srv, args, NULL) == 0;
}

static json_t *x_rows(int m)
{
	json_t *x = json_array();
	for (int r = 0; r < m; r++) {
		json_t *row = json_array();
		for (int j = 0; j < N_IN; j++)
			json_array_append_new(row, json_real(0.5 * r - 1.25 + 0.3 * j));
		json_array_append_new(x, row);
	}
	return x;
}

static void test_deploy_and_invoke(void)
{
	if (!srv_ok)
		T_SKIP("server or plugin not available");
	char body[2400];
	snprintf(body, sizeof body, "{\"kind\": \"plugin:%s\", \"snapshot\": \"%s\"}", so_path, snap);
	T_EQ_INT(call("PUT", "/v1/functions/aff", body, NULL, NULL), 201);
	json_t *in = json_pack("{s:o,s:s}", "x", x_rows(4), "echo_header", "x-tenant");
	char *s = json_dumps(in, JSON_COMPACT);
	json_t *out = NULL;
	T_EQ_INT(call("POST", "/v1/functions/aff/invoke", s, "X-Tenant: blue team\r\n", &out), 200);
	json_t *y = json_object_get(out, "y");
	T_EQ_INT(json_array_size(y), 4);
	double maxerr = 0;
	for (int r = 0; r < 4; r++) {
		json_t *xr = json_array_get(json_object_get(in, "x"), (size_t)r);
		for (int i = 0; i < N_OUT; i++) {
			double ref = B[i];
			for (int j = 0; j < N_IN; j++)
				ref += (double)W[i][j] * json_real_value(json_array_get(xr, (size_t)j));
			double got = json_number_value(json_array_get(json_array_get(y, (size_t)r), (size_t)i));
			maxerr = fmax(maxerr, fabs(got - ref));
		}
	}
	T_CHECK(maxerr < 1e-5);
	T_EQ_STR(json_string_value(json_object_get(out, "header")), "blue team");
	json_decref(out);
	free(s);
	json_decref(in);
	/* the plugin's own request errors */
	T_EQ_INT(call("POST", "/v1/functions/aff/invoke", "{\"x\": [[1, 2]]}", NULL, NULL), 400);
	T_EQ_INT(call("POST", "/v1/functions/aff/invoke", "{\"y\": 1}", NULL, NULL), 400);
	T_EQ_INT(call("POST", "/v1/functions/aff/invoke", "[1]", NULL, NULL), 400);
	/* the function reports its kind as deployed: plugin:<real path> */
	out = NULL;
	T_EQ_INT(call("GET", "/v1/functions/aff", NULL, NULL, &out), 200);
	const char *kind = json_string_value(json_object_get(out, "kind"));
	T_CHECK(kind && strncmp(kind, "plugin:/", 8) == 0 && strstr(kind, "libthaw_affine.so"));
	json_decref(out);
}

/* the example kind as a thaw of ABI 3 built it: the table ends at hf_model_types (no sequence
 * operations); the registry copies it into its own layout and the function serves as before */
static void test_abi3_plugin(void)
{
	if (!srv_ok)
		T_SKIP("server or plugin not available");
	const char *top = getenv("THAW_SRC") ? getenv("THAW_SRC") : ".";
	char src[3000], so[1100], kind[1200], body[2600];
	snprintf(src, sizeof src,
		 "#define thaw_fn_kind affine_kind_abi4\n"
		 "#include \"%s/functions/examples/fn_affine.c\"\n"
		 "#undef thaw_fn_kind\n"
		 "typedef struct kind_v3 {\n"
		 "	int abi;\n"
		 "	const char *name, *summary;\n"
		 "	int (*load)(const fn_load_args *, void **, fn_error *);\n"
		 "	int (*invoke)(void *, fn_call *, size_t);\n"
		 "	void (*release)(void *);\n"
		 "	int (*v2_sig)(const fn_load_args *, fn_v2_sig *, fn_error *);\n"
		 "	const char *const *hf_model_types;\n"
		 "} kind_v3;\n"
		 "static kind_v3 k3;\n"
		 "const fn_kind *thaw_fn_kind(void)\n"
		 "{\n"
		 "	const fn_kind *k = affine_kind_abi4();\n"
		 "	k3 = (kind_v3){3, \"affine3\", k->summary, k->load, k->invoke, k->release,\n"
		 "		       k->v2_sig, k->hf_model_types};\n"
		 "	return (const fn_kind *)(const void *)&k3;\n"
		 "}\n", top);
	if (build_so(plug_dir, "abi3", src, so, sizeof so) < 0)
		T_SKIP("no C compiler for the ABI 3 plugin");
	snprintf(kind, sizeof kind, "plugin:%s", so);
	snprintf(body, sizeof body, "{\"kind\": \"%s\", \"snapshot\": \"%s\"}", kind, snap);
	T_EQ_INT(call("PUT", "/v1/functions/aff3", body, NULL, NULL), 201);
	json_t *out = NULL;
	T_EQ_INT(call("POST", "/v1/functions/aff3/invoke", "{\"x\": [[1, 0, 0, 0, 0]]}", NULL, &out), 200);
	json_t *y = json_array_get(json_object_get(out, "y"), 0);
	T_EQ_INT(json_array_size(y), N_OUT);
	for (int i = 0; i < N_OUT; i++)
		T_CHECK(fabs(json_number_value(json_array_get(y, (size_t)i)) - (W[i][0] + B[i])) < 1e-5);
	json_decref(out);
	T_EQ_INT(call("POST", "/v1/functions/aff3/invoke", "{\"x\": [[1, 2]]}", NULL, NULL), 400);
}

/* the plugin's V2 signature (declared by its v2_sig, recorded at deploy): metadata and infer */
static void test_v2(void)
{
	if (!srv_ok)
		T_SKIP("server or plugin not available");
	json_t *out = NULL;
	T_EQ_INT(call("GET", "/v2/models/aff", NULL, NULL, &out), 200);
	json_t *in0 = json_array_get(json_object_get(out, "inputs"), 0);
	json_t *out0 = json_array_get(json_object_get(out, "outputs"), 0);
	T_EQ_STR(json_string_value(json_object_get(out, "platform")), "thaw_plugin");
	T_EQ_STR(json_string_value(json_object_get(in0, "name")), "x");
	T_EQ_STR(json_string_value(json_object_get(in0, "datatype")), "FP32");
	T_EQ_INT(json_integer_value(json_array_get(json_object_get(in0, "shape"), 0)), -1);
	T_EQ_INT(json_integer_value(json_array_get(json_object_get(in0, "shape"), 1)), N_IN);
	T_EQ_STR(json_string_value(json_object_get(out0, "name")), "y");
	T_EQ_INT(json_integer_value(json_array_get(json_object_get(out0, "shape"), 1)), N_OUT);
	json_decref(out);
	/* 3 rows in, flat data in row-major order; y compared with the reference */
	json_t *rows = x_rows(3), *flat = json_array();
	for (size_t r = 0; r < 3; r++)
		for (size_t j = 0; j < N_IN; j++)
			json_array_append(flat, json_array_get(json_array_get(rows, r), j));
	json_t *req = json_pack("{s:[{s:s,s:s,s:[i,i],s:o}]}", "inputs", "name", "x", "datatype", "FP32",
				"shape", 3, N_IN, "data", flat);
	char *body = json_dumps(req, JSON_COMPACT);
	out = NULL;
	T_EQ_INT(call("POST", "/v2/models/aff/infer", body, NULL, &out), 200);
	json_t *y = json_array_get(json_object_get(out, "outputs"), 0);
	T_EQ_STR(json_string_value(json_object_get(y, "name")), "y");
	T_EQ_STR(json_string_value(json_object_get(y, "datatype")), "FP32");
	T_EQ_INT(json_integer_value(json_array_get(json_object_get(y, "shape"), 0)), 3);
	T_EQ_INT(json_integer_value(json_array_get(json_object_get(y, "shape"), 1)), N_OUT);
	json_t *data = json_object_get(y, "data");
	T_EQ_INT(json_array_size(data), 3 * N_OUT);
	double maxerr = 0;
	for (size_t r = 0; r < 3; r++)
		for (int i = 0; i < N_OUT; i++) {
			double ref = B[i];
			for (int j = 0; j < N_IN; j++)
				ref += (double)W[i][j] *
				       json_number_value(json_array_get(json_array_get(rows, r), (size_t)j));
			maxerr = fmax(maxerr, fabs(json_number_value(json_array_get(data, r * N_OUT +
									(size_t)i)) - ref));
		}
	T_CHECK(maxerr < 1e-4);
	json_decref(out);
	free(body);
	json_decref(req);
	/* a shape the signature does not take, and an input it does not know */
	const char *bad[] = {
		"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2],\"data\":[1,2]}]}",
		"{\"inputs\":[{\"name\":\"z\",\"datatype\":\"FP32\",\"shape\":[1,1],\"data\":[1]}]}",
	};
	for (int i = 0; i < 2; i++) {
		out = NULL;
		T_EQ_INT(call("POST", "/v2/models/aff/infer", bad[i], NULL, &out), 400);
		const char *e = json_string_value(json_object_get(out, "error"));
		T_CHECK(e && strstr(e, "takes input 'x' FP32 with shape [-1, "));
		json_decref(out);
	}
	json_decref(rows);
}

static int deploy_status(const char *kind, json_t **out)
{
	char body[2400];
	snprintf(body, sizeof body, "{\"kind\": \"%s\", \"snapshot\": \"%s\"}", kind, snap);
	return call("PUT", "/v1/functions/bad", body, NULL, out);
}

static int err_has(json_t *o, const char *needle)
{
	const char *e = json_string_value(json_object_get(o, "error"));
	int ok = e && strstr(e, needle) != NULL;
	if (!ok)
		fprintf(stderr, "  error %s lacks '%s'\n", e ? e : "(none)", needle);
	json_decref(o);
	return ok;
}

static void test_bad_plugins(void)
{
	if (!srv_ok)
		T_SKIP("server or plugin not available");
	char so[1100], kind[1200];
	json_t *o = NULL;
	/* outside the plugin roots (a copy of the good plugin in the snapshot directory) */
	snprintf(so, sizeof so, "%s/copy.so", t_tmpdir());
	char cmd[2400];
	snprintf(cmd, sizeof cmd, "cp %s %s", so_path, so);
	T_EQ_INT(system(cmd), 0);
	snprintf(kind, sizeof kind, "plugin:%s", so);
	T_EQ_INT(deploy_status(kind, &o), 403);
	T_CHECK(err_has(o, "outside the plugin roots"));
	/* .. cannot climb out of a root */
	snprintf(kind, sizeof kind, "plugin:%s/../copy.so", plug_dir);
	T_EQ_INT(deploy_status(kind, &o), 403);
	T_CHECK(err_has(o, "outside the plugin roots"));
	/* not named .so / relative */
	T_EQ_INT(deploy_status("plugin:/etc/passwd", &o), 400);
	T_CHECK(err_has(o, "shared object"));
	T_EQ_INT(deploy_status("plugin:libthaw_affine.so", &o), 400);
	T_CHECK(err_has(o, "plugin:/absolute/path"));
	/* missing inside a root */
	snprintf(kind, sizeof kind, "plugin:%s/nothere.so", plug_dir);
	T_EQ_INT(deploy_status(kind, &o), 400);
	T_CHECK(err_has(o, "No such file"));
	/* a .so that is not a shared object */
	snprintf(so, sizeof so, "%s/text.so", plug_dir);
	FILE *f = fopen(so, "w");
	if (f) {
		fputs("hello\n", f);
		fclose(f);
	}
	snprintf(kind, sizeof kind, "plugin:%s", so);
	T_EQ_INT(deploy_status(kind, &o), 400);
	T_CHECK(err_has(o, "cannot load plugin"));
	/* built for ABI 1 */
	if (build_so(plug_dir, "v1", "#include \"functions/fn.h\"\n"
		     "static int ld(const fn_load_args *a, void **s, fn_error *e) { return 0; }\n"
		     "static int inv(void *s, json_t *const *in, json_t **o, fn_error *e, size_t n) "
		     "{ return 0; }\n"
		     "static void rel(void *s) { }\n"
		     "static const fn_kind k = {1, \"oldkind\", \"v1\", ld, (void *)inv, rel};\n"
		     "const fn_kind *thaw_fn_kind(void) { return &k; }\n", so, sizeof so) < 0)
		T_SKIP("no C compiler for the bad plugins");
	snprintf(kind, sizeof kind, "plugin:%s", so);
	T_EQ_INT(deploy_status(kind, &o), 400);
	T_CHECK(err_has(o, "built for ABI 1, this thaw loads ABI 4"));
	/* no thaw_fn_kind symbol */
	T_EQ_INT(build_so(plug_dir, "nosym", "int not_a_kind(void) { return 3; }\n", so, sizeof so), 0);
	snprintf(kind, sizeof kind, "plugin:%s", so);
	T_EQ_INT(deploy_status(kind, &o), 400);
	T_CHECK(err_has(o, "no thaw_fn_kind symbol"));
	/* a kind name that a built-in has */
	T_EQ_INT(build_so(plug_dir, "mlp2", "#include \"functions/fn.h\"\n"
			  "static int ld(const fn_load_args *a, void **s, fn_error *e) { return 0; }\n"
			  "static int inv(void *s, fn_call *c, size_t n) { return 0; }\n"
			  "static void rel(void *s) { }\n"
			  "static const fn_kind k = {FN_ABI_VERSION, \"mlp\", \"clash\", ld, inv, rel};\n"
			  "const fn_kind *thaw_fn_kind(void) { return &k; }\n", so, sizeof so), 0);
	snprintf(kind, sizeof kind, "plugin:%s", so);
	T_EQ_INT(deploy_status(kind, &o), 409);
	T_CHECK(err_has(o, "already registered"));
	/* nothing was deployed, and the daemon still serves: health and the good plugin */
	T_EQ_INT(call("GET", "/v1/functions/bad", NULL, NULL, NULL), 404);
	T_EQ_INT(call("GET", "/healthz", NULL, NULL, NULL), 200);
	T_EQ_INT(call("POST", "/v1/functions/aff/invoke", "{\"x\": [[0, 0, 0, 0, 0]]}", NULL, &o), 200);
	T_CHECK(fabs(json_number_value(json_array_get(json_array_get(json_object_get(o, "y"), 0), 2)) -
		     B[2]) < 1e-6);
	json_decref(o);
}

/* a server started without --plugin-root refuses plugin kinds (403) */
static void test_plugins_disabled(void)
{
	if (!srv_ok)
		T_SKIP("server or plugin not available");
	e2e_server other = srv;
	const char *args[] = {"--allow-root", t_tmpdir(), "--no-access-log", NULL};
	if (e2e_start(&srv, args, NULL) < 0) {
		srv = other;
		T_CHECK(0);
		return;
	}
	char kind[1200];
	json_t *o = NULL;
	snprintf(kind, sizeof kind, "plugin:%s", so_path);
	T_EQ_INT(deploy_status(kind, &o), 403);
	T_CHECK(err_has(o, "--plugin-root"));
	T_EQ_INT(e2e_stop(&srv, 15, 10), 0);
	srv = other;
}

/* the deployed plugin function survives a restart: the registry keeps plugin:<path> and the
 * object is loaded again at the cold start */
static void test_restart(void)
{
	if (!srv_ok)
		T_SKIP("server or plugin not available");
	char data[600], root1[1024];
	snprintf(data, sizeof data, "%s", srv.data_dir);
	T_EQ_INT(e2e_stop(&srv, 15, 10), 0);
	snprintf(root1, sizeof root1, "%.*s", (int)(strrchr(so_path, '/') - so_path), so_path);
	const char *args[] = {"--allow-root", t_tmpdir(), "--plugin-root", root1, "--no-access-log",
			      NULL};
	srv_ok = e2e_start_in(&srv, data, args, NULL) == 0;
	T_CHECK(srv_ok);
	if (!srv_ok)
		return;
	json_t *o = NULL;
	T_EQ_INT(call("POST", "/v1/functions/aff/invoke", "{\"x\": [[1, 0, 0, 0, 0]]}", NULL, &o), 200);
	T_CHECK(fabs(json_number_value(json_array_get(json_array_get(json_object_get(o, "y"), 0), 1)) -
		     (W[1][0] + B[1])) < 1e-5);
	json_decref(o);
}

void t_main(void)
{
	setup();
	T_RUN(test_deploy_and_invoke);
	T_RUN(test_v2);
	T_RUN(test_abi3_plugin);
	T_RUN(test_bad_plugins);
	T_RUN(test_plugins_disabled);
	T_RUN(test_restart);
	if (srv_ok)
		e2e_stop(&srv, 15, 10);
}
