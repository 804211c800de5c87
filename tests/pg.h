/* pg.h — a real PostgreSQL 15 server for tests: initdb into a fresh temporary directory,
 * pg_ctl start listening on a Unix socket in that directory only (listen_addresses='',
 * fsync=off), one server per test binary, shared by its tests (each test takes a database of
 * its own). As root the server runs as user postgres (initdb refuses root). The server is
 * stopped and its directory removed when the binary exits, also when a test aborts or is
 * killed by SIGTERM/SIGINT.
 *
 * PostgreSQL missing is a failure, not a skip: t_pg_server returns NULL after counting a
 * failure with a message naming what was not found (make test installs it). */
#ifndef THAW_TESTS_PG_H
#define THAW_TESTS_PG_H
#include <stddef.h>

/* PostgreSQL binaries (override with $THAW_PG_BIN; when this one is missing, the newest
 * /usr/lib/postgresql/N/bin). */
#define T_PG_BIN_DEFAULT "/usr/lib/postgresql/15/bin"

typedef struct t_pg t_pg;

/* t_pg_server starts the binary's server on first use (a few hundred ms) and returns it;
 * later calls return the same one (started again if a test stopped it). NULL after a counted
 * failure when it cannot start. */
t_pg *t_pg_server(void);

/* t_pg_new_db creates a fresh empty database (named thaw_N) and writes its libpq URI,
 * "postgresql:///thaw_N?host=<socket dir>&user=postgres", to uri. 0 or -1 (failure counted). */
int t_pg_new_db(t_pg *pg, char *uri, size_t cap);

/* t_pg_socket_dir: the directory of the server's Unix socket. */
const char *t_pg_socket_dir(t_pg *pg);

/* t_pg_stop stops the server (pg_ctl stop -m fast: open connections are cut) and
 * t_pg_start starts it again on the same directory with the same data: together an outage.
 * 0 or -1. */
int t_pg_stop(t_pg *pg);
int t_pg_start(t_pg *pg);

/* t_pg_exec runs sql (one or more statements, no parameters) on the database of uri; 0 or -1
 * (the server's message on stderr). For a test that arranges rows behind the store's back. */
int t_pg_exec(const char *uri, const char *sql);

/* t_pg_query1 runs sql and copies the first column of the first row to out ("" for NULL);
 * 0, or -1 when it fails or returns no row. */
int t_pg_query1(const char *uri, const char *sql, char *out, size_t cap);

#endif
