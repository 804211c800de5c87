/* test_faults.c — crashes and resource exhaustion (issue 7, "Faults"), each against a real
 * `thaw serve` / `thaw snapshot pack` process:
 *  - kill -9 during a deploy (registry transaction written, not committed: fault point
 *    deploy.commit), during a pack (the packer killed while its temporary file grows), during a
 *    job checkpoint (third checkpoint written to checkpoint.bin.NODE.tmp, not renamed: fault point
 *    job.checkpoint:3) and during a cold start's restore (fault point restore) -> after a
 *    restart the registry passes PRAGMA integrity_check, holds exactly the committed revisions,
 *    functions answer with the reference results, the job resumes and ends with the same
 *    metrics as an uninterrupted run, and no partial snapshot is ever under a final name or
 *    accepted by a deploy;
 *  - disk full (a 2 MiB / 4 MiB tmpfs; needs root, else skipped with the reason) during a pack
 *    and during checkpoints -> a clear error, earlier data intact, the daemon keeps serving and
 *    the job finishes once there is room again;
 *  - a corrupt snapshot (bytes flipped in one function's file) -> only that function fails, with
 *    an error naming the damage, the other keeps answering;
 *  - device memory exhausted (CPU device with a --cpu-memory budget) -> the idle function is
 *    evicted to make room, and a function larger than the budget gets a clear 503; the same on
 *    the GPU placement path with a fake GPU (--fake-gpus 1:MiB, a CPU lane budgeted as cuda:0),
 *    and on a real GPU with --gpu-memory BYTES (skipped without a GPU).
 * Also a regression found by the soak: V2 unload/load while calls arrive.
 * Fault points (runtime/base/rt_fault.h) pause the daemon with THAW_FAULT_PAUSE=NAME[:N]: they
 * exist only in the test build of the daemon, thaw-test ($THAW_TEST_BIN, else the $THAW_BIN
 * path with "-test" added), which every server of this file runs. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <jansson.h>
#include <sqlite3.h>
#include "tests/e2e/e2e.h"
#include "tests/t.h"



static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static const char *fresh_dir(const char *what)
{
	static char d[4][700];
	static int n;
	char *p = d[n % 4];
	snprintf(p, sizeof d[0], "%s/%s-%d", t_tmpdir(), what, n);
	n++;
	mkdir(p, 0755);
	return p;
}


/* packs the digits model into DATA/snapshots/NAME.thaw */
static int pack_digits(const char *data, const char *name)
{
	return t_sh(NULL, 0, "mkdir -p %s/snapshots && %s snapshot pack %s/tests/data/mlp_digits/model.safetensors "
		  "-o %s/snapshots/%s.thaw --kind mlp --quiet >/dev/null 2>&1", data, t_bin(), t_src(), data, name);
}

static int call(const e2e_server *s, const char *method, const char *path, const char *body, e2e_resp *out)
{
	return e2e_call(s, method, path, NULL, body, out);
}

/* sends a request and leaves it in flight; returns the fd (caller closes) */
static int send_async(const e2e_server *s, const char *method, const char *path, const char *body)
{
	int fd = e2e_connect(s);
	if (fd < 0)
		return -1;
	char raw[8192];
	int n = snprintf(raw, sizeof raw, "%s %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\n\r\n%s", method, path, body ? strlen(body) : 0, body ? body : "");
	if (e2e_send(fd, raw, (size_t)n) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}


/* the first 4 digits rows as an invoke body, and the reference logits/labels */
static char digits_body[16384];
static json_t *expected;

static int load_reference(void)
{
	if (expected)
		return 0;
	double rows[4][64];
	if (e2e_digits(rows, 4, &expected) < 0)
		return -1;
	size_t o = (size_t)snprintf(digits_body, sizeof digits_body, "{\"inputs\":[");
	for (int r = 0; r < 4; r++) {
		o += (size_t)snprintf(digits_body + o, sizeof digits_body - o, "%s[", r ? "," : "");
		for (int c = 0; c < 64; c++)
			o += (size_t)snprintf(digits_body + o, sizeof digits_body - o, "%s%g", c ? "," : "",
					      rows[r][c]);
		o += (size_t)snprintf(digits_body + o, sizeof digits_body - o, "]");
	}
	snprintf(digits_body + o, sizeof digits_body - o, "]}");
	return 0;
}

/* invokes fn with the digits rows: 1 when the answer matches the PyTorch reference (1e-3) */
static int digits_ok(const e2e_server *s, const char *fn)
{
	if (load_reference() < 0)
		return 0;
	char path[256];
	snprintf(path, sizeof path, "/v1/functions/%s/invoke", fn);
	e2e_resp r;
	if (call(s, "POST", path, digits_body, &r) != 200) {
		if (r.status > 0)
			fprintf(stderr, "  invoke %s: %d %s\n", fn, r.status, r.body ? r.body : "");
		if (r.status > 0)
			e2e_resp_free(&r);
		return 0;
	}
	json_error_t je;
	json_t *o = json_loads(r.body, 0, &je);
	e2e_resp_free(&r);
	int ok = o != NULL;
	json_t *outs = json_object_get(o, "outputs"), *labels = json_object_get(o, "labels");
	json_t *ref = json_object_get(expected, "first_logits"), *rl = json_object_get(expected, "labels");
	for (size_t i = 0; ok && i < 4; i++) {
		json_t *g = json_array_get(outs, i), *e = json_array_get(ref, i);
		ok = g && e && json_array_size(g) == json_array_size(e) &&
		     json_integer_value(json_array_get(labels, i)) == json_integer_value(json_array_get(rl, i));
		for (size_t k = 0; ok && k < json_array_size(g); k++) {
			double d = json_number_value(json_array_get(g, k)) - json_number_value(json_array_get(e, k));
			ok = d < 1e-3 && d > -1e-3;
		}
	}
	json_decref(o);
	return ok;
}

/* the latest revision the registry reports for fn (GET), -1 when absent/not 200 */
static long latest_rev(const e2e_server *s, const char *fn)
{
	char path[256];
	snprintf(path, sizeof path, "/v1/functions/%s", fn);
	e2e_resp r;
	if (call(s, "GET", path, NULL, &r) != 200) {
		if (r.status > 0)
			e2e_resp_free(&r);
		return -1;
	}
	json_error_t je;
	json_t *o = json_loads(r.body, 0, &je);
	long rev = (long)json_integer_value(json_object_get(o, "revision"));
	json_decref(o);
	e2e_resp_free(&r);
	return rev;
}

static int registry_intact(const char *data)
{
	char p[1024];
	snprintf(p, sizeof p, "%s/registry.db", data);
	sqlite3 *db;
	if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return 0;
	}
	sqlite3_stmt *st;
	int ok = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
		 sqlite3_step(st) == SQLITE_ROW &&
		 strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ok;
}

static const char *const base_args[] = {"--no-access-log", NULL};

/* a data directory with digits (mlp, cpu) deployed at revision 1, server stopped */
static int setup_digits(const char *data)
{
	if (pack_digits(data, "digits") != 0)
		return -1;
	e2e_server s;
	if (e2e_start_in(&s, data, base_args, NULL) < 0)
		return -1;
	int st = call(&s, "PUT", "/v1/functions/digits",
		      "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"device\":\"cpu\"}", NULL);
	e2e_stop(&s, SIGTERM, 10);
	return st == 201 ? 0 : -1;
}

static void test_kill_during_deploy(void)
{
	const char *data = fresh_dir("deploy");
	T_EQ_INT(setup_digits(data), 0);
	const char *env[] = {"THAW_FAULT_PAUSE=deploy.commit", NULL};
	e2e_server s;
	T_EQ_INT(e2e_start_in(&s, data, base_args, env), 0);
	int fd = send_async(&s, "PUT", "/v1/functions/digits",
			    "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"device\":\"cpu\",\"concurrency\":3}");
	T_CHECK(fd >= 0);
	T_CHECK(e2e_wait_log(&s, "fault point deploy.commit: pausing", 10000));
	e2e_stop(&s, SIGKILL, 5);
	if (fd >= 0)
		close(fd);
	T_CHECK(registry_intact(data));
	T_EQ_INT(e2e_start_in(&s, data, base_args, NULL), 0);
	/* the uncommitted revision 2 is gone, revision 1 serves */
	T_EQ_INT(latest_rev(&s, "digits"), 1);
	T_CHECK(digits_ok(&s, "digits"));
	T_EQ_INT(call(&s, "PUT", "/v1/functions/digits",
		      "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"device\":\"cpu\",\"concurrency\":3}", NULL), 200);
	T_EQ_INT(latest_rev(&s, "digits"), 2);
	T_CHECK(digits_ok(&s, "digits"));
	T_EQ_INT(e2e_stop(&s, SIGTERM, 10), 0);
}

static void test_kill_during_restore(void)
{
	const char *data = fresh_dir("restore");
	T_EQ_INT(setup_digits(data), 0);
	const char *env[] = {"THAW_FAULT_PAUSE=restore", NULL};
	e2e_server s;
	T_EQ_INT(e2e_start_in(&s, data, base_args, env), 0);
	load_reference();
	int fd = send_async(&s, "POST", "/v1/functions/digits/invoke", digits_body);
	T_CHECK(fd >= 0);
	T_CHECK(e2e_wait_log(&s, "fault point restore: pausing", 10000));
	e2e_stop(&s, SIGKILL, 5);
	if (fd >= 0)
		close(fd);
	T_CHECK(registry_intact(data));
	T_EQ_INT(e2e_start_in(&s, data, base_args, NULL), 0);
	T_EQ_INT(latest_rev(&s, "digits"), 1);
	T_CHECK(digits_ok(&s, "digits"));
	T_EQ_INT(e2e_stop(&s, SIGTERM, 10), 0);
}

/* writes a safetensors file with one F32 tensor of n random floats */
static int write_safetensors(const char *path, size_t n)
{
	char hdr[256];
	int hl = snprintf(hdr, sizeof hdr, "{\"w\":{\"dtype\":\"F32\",\"shape\":[%zu,1024],\"data_offsets\":[0,%zu]}}",
			  n / 1024, n / 1024 * 1024 * 4);
	while (hl % 8)
		hdr[hl++] = ' ';
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	uint64_t len = (uint64_t)hl;
	fwrite(&len, 8, 1, f);
	fwrite(hdr, 1, (size_t)hl, f);
	uint32_t x = 12345;
	float buf[4096];
	for (size_t done = 0; done < n / 1024 * 1024; done += 4096) {
		for (int i = 0; i < 4096; i++) {
			x = x * 1664525u + 1013904223u;
			buf[i] = (float)(int32_t)x / 2147483648.0f;
		}
		size_t k = n / 1024 * 1024 - done < 4096 ? n / 1024 * 1024 - done : 4096;
		fwrite(buf, 4, k, f);
	}
	return fclose(f) == 0 ? 0 : -1;
}

/* number of entries of dir whose name starts with prefix */
static int count_prefix(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

/* the name of the first entry of dir starting with prefix, or "" */
static void find_prefix(const char *dir, const char *prefix, char *out, size_t cap)
{
	out[0] = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
			snprintf(out, cap, "%s", e->d_name);
			break;
		}
	if (d)
		closedir(d);
}

static void test_kill_during_pack(void)
{
	const char *data = fresh_dir("pack");
	T_EQ_INT(setup_digits(data), 0);
	char st[800], snaps[800], out[900];
	snprintf(st, sizeof st, "%s/big.safetensors", data);
	snprintf(snaps, sizeof snaps, "%s/snapshots", data);
	snprintf(out, sizeof out, "%s/big.thaw", snaps);
	T_EQ_INT(write_safetensors(st, 24u << 20), 0);   /* 96 MiB of noise: seconds to compress */
	int killed_mid_write = 0;
	for (int attempt = 0; attempt < 3 && !killed_mid_write; attempt++) {
		pid_t pid = fork();
		if (pid == 0) {
			int nul = open("/dev/null", O_WRONLY);
			dup2(nul, 1);
			dup2(nul, 2);
			execl(t_bin(), t_bin(), "snapshot", "pack", st, "-o", out, "--kind", "mlp", "--threads", "1",
			      "--quiet", (char *)NULL);
			_exit(127);
		}
		/* wait until the temporary file has data, then kill -9 */
		char tmpname[300];
		for (int t = 0; t < 20000 && !killed_mid_write; t++) {
			find_prefix(snaps, "big.thaw.tmp", tmpname, sizeof tmpname);
			struct stat sb;
			char tp[1300];
			snprintf(tp, sizeof tp, "%s/%s", snaps, tmpname);
			if (tmpname[0] && stat(tp, &sb) == 0 && sb.st_size > (1 << 20)) {
				kill(pid, SIGKILL);
				killed_mid_write = 1;
			}
			if (waitpid(pid, NULL, WNOHANG) == pid)
				break;
			sleep_ms(1);
		}
		if (killed_mid_write)
			waitpid(pid, NULL, 0);
		else
			unlink(out);   /* finished before we caught it: try again */
	}
	T_CHECK(killed_mid_write);
	struct stat sb;
	T_CHECK(stat(out, &sb) < 0 && errno == ENOENT);   /* nothing under the final name */
	char tmpname[300], body[1200];
	find_prefix(snaps, "big.thaw.tmp", tmpname, sizeof tmpname);
	T_CHECK(tmpname[0] != 0);   /* the partial file exists (only under its temporary name) */
	e2e_server s;
	T_EQ_INT(e2e_start_in(&s, data, base_args, NULL), 0);
	/* neither name is accepted by a deploy */
	e2e_resp r;
	T_EQ_INT(call(&s, "PUT", "/v1/functions/big", "{\"kind\":\"mlp\",\"snapshot\":\"big.thaw\",\"device\":\"cpu\"}", NULL), 400);
	snprintf(body, sizeof body, "{\"kind\":\"mlp\",\"snapshot\":\"%s\",\"device\":\"cpu\"}", tmpname);
	T_EQ_INT(call(&s, "PUT", "/v1/functions/big", body, &r), 400);
	T_CHECK(r.body && strstr(r.body, "snapshot"));
	if (r.status > 0)
		e2e_resp_free(&r);
	T_EQ_INT(latest_rev(&s, "big"), -1);
	T_CHECK(digits_ok(&s, "digits"));
	T_EQ_INT(e2e_stop(&s, SIGTERM, 10), 0);
	unlink(st);
	char tp[1300];
	snprintf(tp, sizeof tp, "%s/%s", snaps, tmpname);
	/* a recent leftover is kept (a pack may be running beside the daemon); one older than 10
	 * minutes is removed at the next start, and the log says so */
	T_CHECK(stat(tp, &sb) == 0);
	struct timeval old[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
	T_EQ_INT(utimes(tp, old), 0);
	T_EQ_INT(e2e_start_in(&s, data, base_args, NULL), 0);
	T_CHECK(stat(tp, &sb) < 0 && errno == ENOENT);
	T_CHECK(e2e_log_contains(&s, "left by an interrupted snapshot pack"));
	T_CHECK(digits_ok(&s, "digits"));
	T_EQ_INT(e2e_stop(&s, SIGTERM, 10), 0);
	unlink(tp);
}

/* a tmpfs of size bytes at dir; 0, or -1 with the reason in why */
static int mount_small(const char *dir, const char *size, char *why, size_t cap)
{
	if (geteuid() != 0) {
		snprintf(why, cap, "needs root to mount a small tmpfs (CI runs as root)");
		return -1;
	}
	char opt[64];
	snprintf(opt, sizeof opt, "size=%s", size);
	if (mount("tmpfs", dir, "tmpfs", 0, opt) < 0) {
		snprintf(why, cap, "cannot mount a tmpfs here: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void test_disk_full_pack(void)
{
	const char *d = fresh_dir("fullpack");
	char mnt[800], why[200], st[800];
	snprintf(mnt, sizeof mnt, "%s/mnt", d);
	mkdir(mnt, 0755);
	if (mount_small(mnt, "2m", why, sizeof why) < 0)
		T_SKIP(why);
	/* earlier data: the digits snapshot on the small disk */
	T_EQ_INT(t_sh(NULL, 0, "%s snapshot pack %s/tests/data/mlp_digits/model.safetensors -o %s/digits.thaw --kind mlp "
		    "--quiet >/dev/null 2>&1", t_bin(), t_src(), mnt), 0);
	snprintf(st, sizeof st, "%s/big.safetensors", d);
	T_EQ_INT(write_safetensors(st, 2u << 20), 0);   /* 8 MiB of noise: does not fit */
	char cmd[3000], out[4096] = "";
	snprintf(cmd, sizeof cmd, "%s snapshot pack %s -o %s/big.thaw --kind mlp --quiet 2>&1; echo \"rc=$?\"",
		 t_bin(), st, mnt);
	FILE *p = popen(cmd, "r");
	size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
	out[n] = 0;
	if (p)
		pclose(p);
	T_CHECK(strstr(out, "rc=0") == NULL);
	T_CHECK(strstr(out, "No space left on device") != NULL);
	if (!strstr(out, "No space left on device"))
		fprintf(stderr, "  pack said: %s\n", out);
	char bigp[900];
	snprintf(bigp, sizeof bigp, "%s/big.thaw", mnt);
	struct stat sb;
	T_CHECK(stat(bigp, &sb) < 0);
	T_EQ_INT(count_prefix(mnt, "big.thaw"), 0);   /* no temporary file left either */
	T_EQ_INT(t_sh(NULL, 0, "%s snapshot verify %s/digits.thaw >/dev/null 2>&1", t_bin(), mnt), 0);
	/* and once there is room again, the same pack works */
	T_EQ_INT(umount(mnt), 0);
	unlink(st);
}

/* the job's JSON (caller frees), NULL on error */
static json_t *get_job(const e2e_server *s, long id)
{
	char path[64];
	snprintf(path, sizeof path, "/v1/jobs/%ld", id);
	e2e_resp r;
	if (call(s, "GET", path, NULL, &r) != 200) {
		if (r.status > 0)
			e2e_resp_free(&r);
		return NULL;
	}
	json_error_t je;
	json_t *o = json_loads(r.body, 0, &je);
	e2e_resp_free(&r);
	return o;
}

/* waits for a final state; returns the job (caller frees) or NULL after timeout_ms */
static json_t *wait_job(const e2e_server *s, long id, int timeout_ms)
{
	for (int t = 0; t < timeout_ms; t += 100) {
		json_t *j = get_job(s, id);
		const char *st = json_string_value(json_object_get(j, "state"));
		if (st && (!strcmp(st, "succeeded") || !strcmp(st, "failed") || !strcmp(st, "cancelled")))
			return j;
		json_decref(j);
		sleep_ms(100);
	}
	return NULL;
}

static long submit(const e2e_server *s, const char *body)
{
	e2e_resp r;
	if (call(s, "POST", "/v1/jobs", body, &r) != 202) {
		if (r.status > 0) {
			fprintf(stderr, "  submit: %d %s\n", r.status, r.body ? r.body : "");
			e2e_resp_free(&r);
		}
		return -1;
	}
	json_error_t je;
	json_t *o = json_loads(r.body, 0, &je);
	long id = (long)json_integer_value(json_object_get(o, "id"));
	json_decref(o);
	e2e_resp_free(&r);
	return id;
}

#define FT_JOB "{\"type\":\"finetune\",\"function\":\"digits\",\"revision\":1,\"params\":{\"data\":" \
	"\"%s/tests/data/digits.csv.gz\",\"epochs\":%d,\"learning_rate\":0.003,\"batch_size\":16," \
	"\"feature_scale\":0.0625,\"seed\":11}}"

static double metric(const json_t *job, const char *k)
{
	return json_number_value(json_object_get(json_object_get(job, "metrics"), k));
}

static void test_kill_during_checkpoint(void)
{
	const char *data = fresh_dir("ckpt");
	T_EQ_INT(setup_digits(data), 0);
	char root[800], body[2048];
	snprintf(root, sizeof root, "%s/tests/data", t_src());
	const char *args[] = {"--no-access-log", "--job-checkpoint", "0.02", "--allow-root", root,
			      "--node-id", "ft", NULL};
	const char *env[] = {"THAW_FAULT_PAUSE=job.checkpoint:3", NULL};
	snprintf(body, sizeof body, FT_JOB, t_src(), 40);   /* ~0.5 s here: killed long before its end */
	e2e_server s;
	T_EQ_INT(e2e_start_in(&s, data, args, env), 0);
	long id = submit(&s, body);
	T_CHECK(id > 0);
	T_CHECK(e2e_wait_log(&s, "fault point job.checkpoint: pausing", 30000));
	e2e_stop(&s, SIGKILL, 5);
	char ck[1200], tmp[1300];
	snprintf(ck, sizeof ck, "%s/jobs/%ld/checkpoint.bin", data, id);
	snprintf(tmp, sizeof tmp, "%s.ft.tmp", ck);   /* the node's own temporary name */
	struct stat sb, tb;
	T_CHECK(stat(ck, &sb) == 0 && sb.st_size > 0);   /* the second checkpoint, complete */
	T_CHECK(stat(tmp, &tb) == 0);                     /* the third, never renamed */
	T_CHECK(registry_intact(data));
	/* restart: the job resumes from checkpoint 2 and ends as an uninterrupted run would */
	T_EQ_INT(e2e_start_in(&s, data, args, NULL), 0);
	json_t *j = wait_job(&s, id, 120000);
	T_CHECK(j != NULL);
	T_EQ_STR(json_string_value(json_object_get(j, "state")), "succeeded");
	T_CHECK(e2e_log_contains(&s, "resumed from its checkpoint"));
	long ref_id = submit(&s, body);
	json_t *ref = wait_job(&s, ref_id, 120000);
	T_CHECK(ref != NULL);
	T_EQ_STR(json_string_value(json_object_get(ref, "state")), "succeeded");
	if (j && ref) {
		T_CHECK(metric(j, "loss") == metric(ref, "loss"));
		T_CHECK(metric(j, "val_loss") == metric(ref, "val_loss"));
		T_CHECK(metric(j, "accuracy") == metric(ref, "accuracy"));
		if (metric(j, "loss") != metric(ref, "loss"))
			fprintf(stderr, "  loss resumed %.9g vs uninterrupted %.9g\n", metric(j, "loss"),
				metric(ref, "loss"));
	}
	json_decref(j);
	json_decref(ref);
	T_CHECK(digits_ok(&s, "digits"));
	T_EQ_INT(e2e_stop(&s, SIGTERM, 20), 0);
}

static void test_disk_full_checkpoint(void)
{
	const char *d = fresh_dir("fullckpt");
	char data[800], why[200], root[800], body[2048];
	snprintf(data, sizeof data, "%s/data", d);
	mkdir(data, 0755);
	if (mount_small(data, "4m", why, sizeof why) < 0)
		T_SKIP(why);
	T_EQ_INT(setup_digits(data), 0);
	snprintf(root, sizeof root, "%s/tests/data", t_src());
	const char *args[] = {"--no-access-log", "--job-checkpoint", "0.02", "--allow-root", root,
			      "--node-id", "ft", NULL};
	snprintf(body, sizeof body, FT_JOB, t_src(), 200);   /* a few seconds */
	e2e_server s;
	T_EQ_INT(e2e_start_in(&s, data, args, NULL), 0);
	long id = submit(&s, body);
	T_CHECK(id > 0);
	char ck[1200], fill[900];
	snprintf(ck, sizeof ck, "%s/jobs/%ld/checkpoint.bin", data, id);
	snprintf(fill, sizeof fill, "%s/filler", data);
	struct stat sb;
	int t;
	for (t = 0; t < 30000 && stat(ck, &sb) < 0; t += 20)
		sleep_ms(20);
	T_CHECK(stat(ck, &sb) == 0);
	off_t ck_size = sb.st_size;
	/* fill the disk */
	int fd = open(fill, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	static char zeros[65536];
	while (fd >= 0 && write(fd, zeros, sizeof zeros) > 0)
		;
	while (fd >= 0 && write(fd, zeros, 512) > 0)
		;
	if (fd >= 0)
		close(fd);
	T_CHECK(e2e_wait_log(&s, "checkpoint failed: No space left on device", 20000));
	/* the last good checkpoint is intact (whole), no temporary file stays, the daemon serves */
	T_CHECK(stat(ck, &sb) == 0 && sb.st_size == ck_size);
	char tmp[1300];
	snprintf(tmp, sizeof tmp, "%s.ft.tmp", ck);   /* the node's own temporary name */
	T_CHECK(stat(tmp, &sb) < 0);
	T_EQ_INT(call(&s, "GET", "/healthz", NULL, NULL), 200);
	T_CHECK(digits_ok(&s, "digits"));
	json_t *j = get_job(&s, id);
	const char *state = json_string_value(json_object_get(j, "state"));
	/* not failed: running, or preempted by the invocation just made */
	int alive = state && (!strcmp(state, "running") || !strcmp(state, "queued") || !strcmp(state, "preempted"));
	T_CHECK(alive);
	if (!alive)
		fprintf(stderr, "  job while the disk is full: %s %s\n", state ? state : "?",
			json_string_value(json_object_get(j, "error")) ?: "");
	json_decref(j);
	/* room again: the job finishes */
	unlink(fill);
	j = wait_job(&s, id, 180000);
	T_CHECK(j != NULL);
	T_EQ_STR(json_string_value(json_object_get(j, "state")), "succeeded");
	if (j && strcmp(json_string_value(json_object_get(j, "state")) ?: "", "succeeded") != 0)
		fprintf(stderr, "  job: %s\n", json_string_value(json_object_get(j, "error")));
	json_decref(j);
	T_EQ_INT(e2e_stop(&s, SIGTERM, 20), 0);
	T_EQ_INT(umount(data), 0);
}

static void test_corrupt_snapshot(void)
{
	const char *data = fresh_dir("corrupt");
	T_EQ_INT(setup_digits(data), 0);
	T_EQ_INT(pack_digits(data, "other"), 0);
	e2e_server s;
	T_EQ_INT(e2e_start_in(&s, data, base_args, NULL), 0);
	T_EQ_INT(call(&s, "PUT", "/v1/functions/other", "{\"kind\":\"mlp\",\"snapshot\":\"other.thaw\",\"device\":\"cpu\"}", NULL), 201);
	T_CHECK(digits_ok(&s, "digits"));
	T_CHECK(digits_ok(&s, "other"));
	/* scale "other" to zero, then flip bytes in the middle of its first chunk */
	T_EQ_INT(call(&s, "POST", "/v2/repository/models/other/unload", "", NULL), 200);
	char p[900];
	snprintf(p, sizeof p, "%s/snapshots/other.thaw", data);
	int fd = open(p, O_RDWR);
	T_CHECK(fd >= 0);
	unsigned char b[16];
	T_EQ_INT(pread(fd, b, sizeof b, 4096 + 64), (long)sizeof b);
	for (size_t i = 0; i < sizeof b; i++)
		b[i] ^= 0x5a;
	T_EQ_INT(pwrite(fd, b, sizeof b, 4096 + 64), (long)sizeof b);
	close(fd);
	T_CHECK(t_sh(NULL, 0, "%s snapshot verify %s >/dev/null 2>&1", t_bin(), p) != 0);   /* it is damaged */
	for (int i = 0; i < 3; i++) {
		e2e_resp r;
		int st = call(&s, "POST", "/v1/functions/other/invoke", digits_body, &r);
		T_EQ_INT(st, 503);
		T_CHECK(r.body && (strstr(r.body, "chunk") || strstr(r.body, "checksum")));
		if (i == 0 && r.body)
			fprintf(stderr, "  corrupt snapshot answer: %d %s\n", st, r.body);
		if (st > 0)
			e2e_resp_free(&r);
		T_CHECK(digits_ok(&s, "digits"));
	}
	T_EQ_INT(call(&s, "GET", "/healthz", NULL, NULL), 200);
	T_EQ_INT(e2e_stop(&s, SIGTERM, 10), 0);
}

/* the daemon s has too little device memory for digits: its call is a 503 naming the need
 * (returned, 0 when the message has none), and the daemon stays healthy; s is stopped */
static long expect_no_room(e2e_server *s)
{
	e2e_resp r;
	T_EQ_INT(call(s, "POST", "/v1/functions/digits/invoke", digits_body, &r), 503);
	long need = 0;
	const char *m = r.body ? strstr(r.body, "not enough device memory") : NULL;
	T_CHECK(m != NULL);
	if (m && strchr(m, '('))
		need = strtol(strchr(m, '(') + 1, NULL, 10);
	if (r.status > 0)
		e2e_resp_free(&r);
	T_EQ_INT(call(s, "GET", "/healthz", NULL, NULL), 200);
	T_EQ_INT(e2e_stop(s, SIGTERM, 10), 0);
	return need;
}

/* the daemon s has room on device for one model: "other" is deployed there beside digits and
 * calls to both alternate, each evicting the other (idle) and answering right; s is stopped */
static void expect_evictions(e2e_server *s, const char *device)
{
	char man[160];
	snprintf(man, sizeof man, "{\"kind\":\"mlp\",\"snapshot\":\"other.thaw\",\"device\":\"%s\"}",
		 device);
	T_EQ_INT(call(s, "PUT", "/v1/functions/other", man, NULL), 201);
	for (int i = 0; i < 3; i++) {
		T_CHECK(digits_ok(s, "digits"));
		T_CHECK(digits_ok(s, "other"));
	}
	T_CHECK(e2e_log_contains(s, "making room"));
	T_EQ_INT(e2e_stop(s, SIGTERM, 10), 0);
}

static void test_device_memory_exhausted_cpu(void)
{
	const char *data = fresh_dir("mem");
	T_EQ_INT(setup_digits(data), 0);
	T_EQ_INT(pack_digits(data, "other"), 0);
	/* a budget smaller than one model: a clear 503 naming the need */
	const char *tiny[] = {"--no-access-log", "--cpu-memory", "1024", NULL};
	e2e_server s;
	T_EQ_INT(e2e_start_in(&s, data, tiny, NULL), 0);
	load_reference();
	long need = expect_no_room(&s);
	T_CHECK(need > 1024);
	if (need <= 1024)
		return;
	/* room for one of two: each call evicts the other (idle) and answers right */
	char budget[32];
	snprintf(budget, sizeof budget, "%ld", need + need / 2);
	const char *one[] = {"--no-access-log", "--cpu-memory", budget, NULL};
	T_EQ_INT(e2e_start_in(&s, data, one, NULL), 0);
	expect_evictions(&s, "cpu");
}

/* the same on the GPU placement path without a GPU: --fake-gpus 1:MiB is a CPU lane that the
 * scheduler places and budgets as cuda:0 (tests only; a real GPU run is not part of make test) */
static void test_device_memory_exhausted_fake_gpu(void)
{
	const char *data = fresh_dir("fakegpu");
	T_EQ_INT(pack_digits(data, "digits"), 0);
	T_EQ_INT(pack_digits(data, "other"), 0);
	T_EQ_INT(load_reference(), 0);
	const char *tiny[] = {"--no-access-log", "--no-gpu", "--fake-gpus", "1:0.005", NULL};  /* 5 KiB */
	e2e_server s;
	T_EQ_INT(e2e_start_in(&s, data, tiny, NULL), 0);
	T_EQ_INT(call(&s, "PUT", "/v1/functions/digits", "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"device\":\"cuda:0\"}", NULL), 201);
	expect_no_room(&s);
	/* 14 KiB: one 9984-byte model at a time */
	const char *one[] = {"--no-access-log", "--no-gpu", "--fake-gpus", "1:0.0137", NULL};
	T_EQ_INT(e2e_start_in(&s, data, one, NULL), 0);
	expect_evictions(&s, "cuda:0");
}

/* the same on a real GPU (skipped without one): --gpu-memory budgets cuda:0 in bytes, so the
 * real device path (cudaMalloc'd weights, eviction to the pinned host tier) runs out of room */
static void test_device_memory_exhausted_gpu(void)
{
	const char *data = fresh_dir("gpu");
	T_EQ_INT(pack_digits(data, "digits"), 0);
	T_EQ_INT(pack_digits(data, "other"), 0);
	T_EQ_INT(load_reference(), 0);
	const char *tiny[] = {"--no-access-log", "--gpu-memory", "5120", NULL};
	e2e_server s;
	T_EQ_INT(e2e_start_in(&s, data, tiny, NULL), 0);
	e2e_resp r;
	int gpu = call(&s, "GET", "/v1/devices", NULL, &r) == 200 && r.body &&
		  strstr(r.body, "\"cuda:0\"") && !strstr(r.body, "\"fake\"");
	if (r.status > 0)
		e2e_resp_free(&r);
	if (!gpu) {
		T_EQ_INT(e2e_stop(&s, SIGTERM, 10), 0);
		T_SKIP("no GPU");
	}
	T_EQ_INT(call(&s, "PUT", "/v1/functions/digits", "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"device\":\"cuda:0\"}", NULL), 201);
	expect_no_room(&s);
	/* 14 KiB: one 9984-byte model at a time on the GPU, the other waits in the host tier */
	const char *one[] = {"--no-access-log", "--gpu-memory", "14000", NULL};
	T_EQ_INT(e2e_start_in(&s, data, one, NULL), 0);
	expect_evictions(&s, "cuda:0");
}

/* found by bench/soak.sh: a V2 unload while calls kept arriving let a batch reach the lane
 * after the model was released (NULL model, SIGSEGV). Four connections invoke while the main
 * thread unloads and loads 150 times: every call answers 200, the daemon lives. */
static e2e_server hammer_srv;
static volatile int hammer_stop;
static int hammer_bad[4], hammer_n[4];

static void *hammer(void *arg)
{
	int k = (int)(intptr_t)arg;
	int fd = e2e_connect(&hammer_srv);
	char raw[16384];
	int n = snprintf(raw, sizeof raw, "POST /v1/functions/digits/invoke HTTP/1.1\r\nHost: t\r\n"
			 "Content-Length: %zu\r\n\r\n%s", strlen(digits_body), digits_body);
	while (fd >= 0 && !hammer_stop) {
		e2e_resp r;
		if (e2e_send(fd, raw, (size_t)n) < 0 || e2e_read_resp(fd, &r) < 0) {
			hammer_bad[k]++;
			break;
		}
		hammer_bad[k] += r.status != 200;
		hammer_n[k]++;
		e2e_resp_free(&r);
	}
	if (fd < 0)
		hammer_bad[k]++;
	else
		close(fd);
	return NULL;
}

static void test_unload_while_invoked(void)
{
	const char *data = fresh_dir("unload");
	T_EQ_INT(setup_digits(data), 0);
	T_EQ_INT(load_reference(), 0);
	T_EQ_INT(e2e_start_in(&hammer_srv, data, base_args, NULL), 0);
	T_CHECK(digits_ok(&hammer_srv, "digits"));
	hammer_stop = 0;
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, hammer, (void *)(intptr_t)i);
	int admin_bad = 0;
	for (int i = 0; i < 150; i++) {
		admin_bad += call(&hammer_srv, "POST", "/v2/repository/models/digits/unload", "", NULL) != 200;
		admin_bad += call(&hammer_srv, "POST", "/v2/repository/models/digits/load", "", NULL) != 200;
	}
	hammer_stop = 1;
	int bad = 0, calls = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		bad += hammer_bad[i];
		calls += hammer_n[i];
	}
	T_EQ_INT(admin_bad, 0);
	T_EQ_INT(bad, 0);
	T_CHECK(calls > 0);
	T_CHECK(digits_ok(&hammer_srv, "digits"));
	T_EQ_INT(e2e_stop(&hammer_srv, SIGTERM, 10), 0);
}

/* use_test_binary points THAW_BIN (what e2e_start_in runs) at the daemon with test hooks */
static void use_test_binary(void)
{
	char p[1024];
	const char *t = getenv("THAW_TEST_BIN"), *b = getenv("THAW_BIN");
	snprintf(p, sizeof p, "%s", t ? t : "");
	if (!t)
		snprintf(p, sizeof p, "%s-test", b ? b : "build/thaw");
	setenv("THAW_BIN", p, 1);
}

void t_main(void)
{
	use_test_binary();
	T_RUN(test_kill_during_deploy);
	T_RUN(test_kill_during_restore);
	T_RUN(test_kill_during_pack);
	T_RUN(test_disk_full_pack);
	T_RUN(test_kill_during_checkpoint);
	T_RUN(test_disk_full_checkpoint);
	T_RUN(test_corrupt_snapshot);
	T_RUN(test_device_memory_exhausted_cpu);
	T_RUN(test_device_memory_exhausted_fake_gpu);
	T_RUN(test_device_memory_exhausted_gpu);
	T_RUN(test_unload_while_invoked);
	json_decref(expected);
}
