/* parse_nodes.c — what a node's read of the node list costs it in CPU, for
 * bench/bench_registry_pg.sh: parses N copies of one node's published state (a JSON file) with
 * jansson, as a node parses every live row each beat, and prints the time per full list and
 * the heap the parsed list takes while it is kept (the peers' residents a node routes by).
 *   parse_nodes STATE.json NODES ROUNDS */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: parse_nodes STATE.json NODES ROUNDS\n");
		return 2;
	}
	int nodes = atoi(argv[2]), rounds = atoi(argv[3]);
	if (nodes < 1 || nodes > 10000 || rounds < 1 || rounds > 100000) {
		fprintf(stderr, "parse_nodes: nodes 1..10000, rounds 1..100000\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "rb");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	static char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	double t0 = now_ms();
	size_t entries = 0;
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < nodes; i++) {
			json_error_t err;
			json_t *j = json_loadb(buf, n, 0, &err);
			if (!j) {
				fprintf(stderr, "parse_nodes: %s: line %d: %s\n", argv[1], err.line, err.text);
				return 1;
			}
			entries += json_object_size(json_object_get(j, "residents"));
			json_decref(j);
		}
	}
	double per = (now_ms() - t0) / rounds;
	/* one list kept: the heap in use before and after */
	json_t **kept = calloc((size_t)nodes, sizeof *kept);
	if (!kept)
		return 1;
	size_t before = mallinfo2().uordblks;
	for (int i = 0; i < nodes; i++) {
		kept[i] = json_loadb(buf, n, 0, NULL);
		if (!kept[i])
			return 1;
	}
	size_t held = mallinfo2().uordblks - before;
	for (int i = 0; i < nodes; i++)
		json_decref(kept[i]);
	free(kept);
	printf("parse_node_list nodes=%d bytes=%zu ms_per_list=%.2f residents_per_list=%zu "
	       "heap_kept_bytes=%zu\n", nodes, n * (size_t)nodes, per, entries / (size_t)rounds, held);
	return 0;
}
