/* pg.c — the PostgreSQL test server of tests/pg.h. */
#include "tests/pg.h"
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <libpq-fe.h>
#include "tests/t.h"

struct t_pg {
	char dir[128];       /* the temporary directory; the socket lives here */
	char data[160];      /* dir/data */
	char log[160];       /* dir/log */
	char bin[512];
	uid_t uid;           /* the server's user (postgres when we are root) */
	gid_t gid;
	int running;
	int ndb;
	pid_t owner;         /* the process that started it (forked tests leave it alone) */
	int watch_fd;        /* write end of the watchdog's pipe */
};

static t_pg server;
static int server_made;

/* fail counts a failure of the running test with a message */
static void fail(const char *fmt, const char *a)
{
	fprintf(stderr, "  FAIL pg harness: ");
	fprintf(stderr, fmt, a);
	fprintf(stderr, "\n");
	t_cur_failed++;
}

/* run_as runs bin/prog with args (NULL-terminated) as the server's user, output appended to
 * the log; its exit status, or -1 */
static int run_as(t_pg *pg, const char *prog, const char *const *args)
{
	char path[640];
	const char *argv[24];
	int k = 0;
	snprintf(path, sizeof path, "%s/%s", pg->bin, prog);
	argv[k++] = path;
	for (int i = 0; args[i] && k < 23; i++)
		argv[k++] = args[i];
	argv[k] = NULL;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(pg->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		int nul = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (nul >= 0)
			dup2(nul, 0);
		if (pg->uid != getuid()) {
			if (setgid(pg->gid) != 0 || setuid(pg->uid) != 0)
				_exit(126);
		}
		execv(path, (char *const *)argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* postmaster_pid reads the first line of data/postmaster.pid; 0 when none */
static pid_t postmaster_pid(const t_pg *pg)
{
	char p[200], line[32] = "";
	snprintf(p, sizeof p, "%s/postmaster.pid", pg->data);
	FILE *f = fopen(p, "r");
	if (!f)
		return 0;
	if (!fgets(line, sizeof line, f))
		line[0] = 0;
	fclose(f);
	return (pid_t)atol(line);
}

static void at_exit(void)
{
	if (!server_made || server.owner != getpid())
		return;
	if (server.running) {
		const char *a[] = {"-D", server.data, "-w", "-s", "-m", "immediate", "stop", NULL};
		run_as(&server, "pg_ctl", a);
	}
	nftw(server.dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	server_made = 0;
}

/* watchdog: a child that waits for the test binary to die however it dies (its pipe's write
 * end closes), then stops the server at once and removes the directory */
static void start_watchdog(t_pg *pg)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		return;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[1]);
		setpgid(0, 0);   /* out of the test's process group: a group kill reaches the test */
		char c;
		while (read(fds[0], &c, 1) < 0 && errno == EINTR)
			;
		pid_t pm = postmaster_pid(pg);
		if (pm > 0 && kill(pm, SIGQUIT) == 0) {
			for (int i = 0; i < 200 && kill(pm, 0) == 0; i++)
				usleep(10000);
		}
		nftw(pg->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
		_exit(0);
	}
	close(fds[0]);
	pg->watch_fd = pid > 0 ? fds[1] : -1;
	if (pid < 0)
		close(fds[1]);
}

static int make_server(t_pg *pg)
{
	const char *bin = getenv("THAW_PG_BIN");
	memset(pg, 0, sizeof *pg);
	pg->watch_fd = -1;
	snprintf(pg->bin, sizeof pg->bin, "%s", bin && *bin ? bin : T_PG_BIN_DEFAULT);
	char p[640];
	snprintf(p, sizeof p, "%s/initdb", pg->bin);
	glob_t g;
	if (!(bin && *bin) && access(p, X_OK) != 0 &&
	    glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0) {
		/* another major version of Debian's packages (the newest: glob sorts) */
		snprintf(p, sizeof p, "%s", g.gl_pathv[g.gl_pathc - 1]);
		snprintf(pg->bin, sizeof pg->bin, "%.*s", (int)(strlen(p) - strlen("/initdb")), p);
		globfree(&g);
	}
	if (access(p, X_OK) != 0) {
		fail("PostgreSQL not found: no %s (install postgresql: scripts/install-deps.sh)", p);
		return -1;
	}
	pg->uid = getuid();
	pg->gid = getgid();
	if (pg->uid == 0) {
		struct passwd *pw = getpwnam("postgres");
		if (!pw) {
			fail("%s", "running as root and there is no user postgres to run the server");
			return -1;
		}
		pg->uid = pw->pw_uid;
		pg->gid = pw->pw_gid;
	}
	snprintf(pg->dir, sizeof pg->dir, "/tmp/thaw-pg-XXXXXX");
	if (!mkdtemp(pg->dir)) {
		fail("mkdtemp: %s", strerror(errno));
		return -1;
	}
	if (chown(pg->dir, pg->uid, pg->gid) != 0) {
		fail("chown of the server directory: %s", strerror(errno));
		rmdir(pg->dir);
		return -1;
	}
	snprintf(pg->data, sizeof pg->data, "%s/data", pg->dir);
	snprintf(pg->log, sizeof pg->log, "%s/log", pg->dir);
	int lfd = open(pg->log, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (lfd < 0 || fchown(lfd, pg->uid, pg->gid) != 0) {
		fail("creating the server log: %s", strerror(errno));
		if (lfd >= 0)
			close(lfd);
		rmdir(pg->dir);
		return -1;
	}
	close(lfd);
	pg->owner = getpid();
	server_made = 1;
	atexit(at_exit);
	start_watchdog(pg);
	const char *a[] = {"-D", pg->data, "-U", "postgres", "-A", "trust", "--no-sync",
			   "--no-instructions", "-E", "UTF8", "--locale=C", NULL};
	if (run_as(pg, "initdb", a) != 0) {
		fail("initdb failed (log: %s)", pg->log);
		return -1;
	}
	return 0;
}

const char *t_pg_socket_dir(t_pg *pg)
{
	return pg->dir;
}

int t_pg_start(t_pg *pg)
{
	if (pg->running)
		return 0;
	char opts[400];
	snprintf(opts, sizeof opts, "-c listen_addresses='' -c unix_socket_directories='%s' "
		 "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
		 "-c max_connections=200", pg->dir);
	const char *a[] = {"-D", pg->data, "-l", pg->log, "-w", "-s", "-t", "30", "-o", opts,
			   "start", NULL};
	if (run_as(pg, "pg_ctl", a) != 0) {
		fail("pg_ctl start failed (log: %s)", pg->log);
		return -1;
	}
	pg->running = 1;
	return 0;
}

int t_pg_stop(t_pg *pg)
{
	if (!pg->running)
		return 0;
	const char *a[] = {"-D", pg->data, "-w", "-s", "-m", "fast", "stop", NULL};
	if (run_as(pg, "pg_ctl", a) != 0) {
		fail("pg_ctl stop failed (log: %s)", pg->log);
		return -1;
	}
	pg->running = 0;
	return 0;
}

t_pg *t_pg_server(void)
{
	if (!server_made && make_server(&server) < 0)
		return NULL;
	if (!server.running && t_pg_start(&server) < 0)
		return NULL;
	return &server;
}

static PGconn *connect_uri(const char *uri)
{
	PGconn *c = PQconnectdb(uri);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "  pg harness: connect: %s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

int t_pg_new_db(t_pg *pg, char *uri, size_t cap)
{
	char admin[300], sql[64];
	int n = ++pg->ndb;
	snprintf(admin, sizeof admin, "postgresql:///postgres?host=%s&user=postgres", pg->dir);
	snprintf(sql, sizeof sql, "CREATE DATABASE thaw_%d", n);
	if (t_pg_exec(admin, sql) < 0) {
		fail("%s failed", sql);
		return -1;
	}
	snprintf(uri, cap, "postgresql:///thaw_%d?host=%s&user=postgres", n, pg->dir);
	return 0;
}

int t_pg_exec(const char *uri, const char *sql)
{
	PGconn *c = connect_uri(uri);
	if (!c)
		return -1;
	PGresult *r = PQexec(c, sql);
	int st = PQresultStatus(r);
	int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	if (!ok)
		fprintf(stderr, "  pg harness: %s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	return ok ? 0 : -1;
}

int t_pg_query1(const char *uri, const char *sql, char *out, size_t cap)
{
	PGconn *c = connect_uri(uri);
	if (!c)
		return -1;
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0;
	if (ok)
		snprintf(out, cap, "%s", PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
	else
		fprintf(stderr, "  pg harness: %s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	return ok ? 0 : -1;
}
