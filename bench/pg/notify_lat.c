/* notify_lat.c — NOTIFY fan-out latency of a PostgreSQL server, for bench/bench_registry_pg.sh:
 * L listener connections LISTEN on one channel (the nodes of a cluster), one more connection
 * sends R notifications (a deploy or a residency change) R_GAP_MS apart; for each, the time
 * from just before the NOTIFY is sent to its arrival at each listener. Prints the p50/p99 of a
 * single delivery and of the last delivery of each notification (fan-out complete).
 *   notify_lat CONNINFO LISTENERS ROUNDS GAP_MS [PAYLOAD_BYTES]
 * Built by the script with cc and -lpq (not part of the daemon). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libpq-fe.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof *v, cmp_d);
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

static int exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok)
		fprintf(stderr, "notify_lat: %s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: notify_lat CONNINFO LISTENERS ROUNDS GAP_MS [PAYLOAD_BYTES]\n");
		return 2;
	}
	int nl = atoi(argv[2]), rounds = atoi(argv[3]), gap = atoi(argv[4]);
	int plen = argc > 5 ? atoi(argv[5]) : 16;
	if (nl < 1 || nl > 1000 || rounds < 1 || rounds > 100000 || gap < 0 || plen < 1 || plen > 7000) {
		fprintf(stderr, "notify_lat: listeners 1..1000, rounds 1..100000, payload 1..7000 bytes\n");
		return 2;
	}
	int rc = 1;
	PGconn **ls = calloc((size_t)nl, sizeof *ls);
	struct pollfd *pf = calloc((size_t)nl, sizeof *pf);
	double *one = malloc(sizeof(double) * (size_t)nl * (size_t)rounds);
	double *all = malloc(sizeof(double) * (size_t)rounds);
	char *sql = malloc((size_t)plen + 64);
	int *got = calloc((size_t)nl, sizeof *got);
	PGconn *tx = NULL;
	size_t n_one = 0;
	if (!ls || !pf || !one || !all || !sql || !got)
		goto fail;
	for (int i = 0; i < nl; i++) {
		ls[i] = PQconnectdb(argv[1]);
		if (PQstatus(ls[i]) != CONNECTION_OK) {
			fprintf(stderr, "notify_lat: connect: %s", PQerrorMessage(ls[i]));
			goto fail;
		}
		if (exec_ok(ls[i], "LISTEN thaw_bench") != 0)
			goto fail;
		pf[i].fd = PQsocket(ls[i]);
		pf[i].events = POLLIN;
	}
	tx = PQconnectdb(argv[1]);
	if (PQstatus(tx) != CONNECTION_OK) {
		fprintf(stderr, "notify_lat: connect: %s", PQerrorMessage(tx));
		goto fail;
	}
	for (int r = 0; r < rounds; r++) {
		int n = snprintf(sql, 64, "NOTIFY thaw_bench, '%d:", r);
		memset(sql + n, 'x', (size_t)plen);
		strcpy(sql + n + plen, "'");
		memset(got, 0, sizeof(int) * (size_t)nl);
		double t0 = now_ms(), last = t0;
		if (exec_ok(tx, sql) != 0)
			goto fail;
		int left = nl;
		while (left > 0) {
			int pr = poll(pf, (nfds_t)nl, 5000);
			if (pr <= 0) {
				fprintf(stderr, "notify_lat: round %d: %d listeners heard nothing in 5 s\n", r, left);
				goto fail;
			}
			double t = now_ms();
			for (int i = 0; i < nl; i++) {
				if (!(pf[i].revents & POLLIN))
					continue;
				if (!PQconsumeInput(ls[i])) {
					fprintf(stderr, "notify_lat: %s", PQerrorMessage(ls[i]));
					goto fail;
				}
				PGnotify *nt;
				while ((nt = PQnotifies(ls[i])) != NULL) {
					if (atoi(nt->extra) == r && !got[i]) {
						got[i] = 1;
						left--;
						one[n_one++] = t - t0;
						last = t;
					}
					PQfreemem(nt);
				}
			}
		}
		all[r] = last - t0;
		double until = t0 + gap;
		while (now_ms() < until)
			poll(NULL, 0, 1);
	}
	printf("notify_fanout listeners=%d rounds=%d payload=%d one_p50_ms=%.3f one_p99_ms=%.3f "
	       "all_p50_ms=%.3f all_p99_ms=%.3f\n", nl, rounds, plen, pct(one, n_one, 0.5),
	       pct(one, n_one, 0.99), pct(all, (size_t)rounds, 0.5), pct(all, (size_t)rounds, 0.99));
	rc = 0;
fail:
	if (tx)
		PQfinish(tx);
	for (int i = 0; ls && i < nl; i++)
		if (ls[i])
			PQfinish(ls[i]);
	free(ls);
	free(pf);
	free(one);
	free(all);
	free(sql);
	free(got);
	return rc;
}
