/* replay.c — runs a libFuzzer target's LLVMFuzzerTestOneInput over its seed corpus
 * (tests/fuzz/corpus/NAME/) so that `make test` checks every seed without clang's libFuzzer.
 * A crash or sanitizer report fails the run; otherwise prints "N passed, 0 failed". */

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
	char self[512], dir[1024];
	const char *src = getenv("THAW_SRC");
	snprintf(self, sizeof self, "%s", basename(argv[0]));
	const char *name = strncmp(self, "replay_fuzz_", 12) == 0 ? self + 12 : self;
	snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", src ? src : ".", argc > 1 ? argv[1] : name);
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "replay: cannot open corpus %s\n", dir);
		printf("0 passed, 1 failed\n");
		return 1;
	}
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[2048];
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		FILE *f = fopen(p, "rb");
		if (!f)
			continue;
		fseek(f, 0, SEEK_END);
		long sz = ftell(f);
		fseek(f, 0, SEEK_SET);
		uint8_t *buf = malloc(sz > 0 ? (size_t)sz : 1);
		size_t got = fread(buf, 1, (size_t)sz, f);
		fclose(f);
		LLVMFuzzerTestOneInput(buf, got);
		free(buf);
		n++;
	}
	closedir(d);
	printf("%d passed, 0 failed\n", n);
	return 0;
}
