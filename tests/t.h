/* t.h — the tiny test harness every unit test binary uses.
 * A test file defines `void t_main(void)` that calls T_RUN(fn) for each test; checks use
 * T_CHECK / T_EQ_INT / T_EQ_STR and keep going after a failure. t.c's main() prints one line per
 * test and closes with "N passed, N failed, N skipped", which tests/run.sh sums up. */
#ifndef THAW_T_H
#define THAW_T_H
#include <stdio.h>
#include <string.h>
#include <stdint.h>

extern int t_cur_failed;   /* failures in the running test */
extern int t_cur_skipped;  /* the running test called T_SKIP */

void t_run(const char *name, void (*fn)(void));
void t_main(void);         /* defined by each test file */
/* t_tmpdir returns a fresh directory under $TMPDIR (or /tmp) for this test binary; removed
 * with its contents when the binary exits. */
const char *t_tmpdir(void);
/* t_read_file returns the whole file, NUL-terminated (malloc'd; its size in *len when len is
 * not NULL), or NULL. */
char *t_read_file(const char *path, size_t *len);
/* t_copy_file copies file from to to (created or truncated); 0 or -1. */
int t_copy_file(const char *from, const char *to);
/* t_sh runs the shell command printf(fmt, ...); with out and cap > 0 its standard output is kept
 * in out (at most cap - 1 bytes, NUL-terminated). Returns the exit status, -1 when the command
 * could not run or did not exit normally. */
int t_sh(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* t_bin, t_src: $THAW_BIN (default build/thaw) and $THAW_SRC (default .), as tests/run.sh sets
 * them. */
const char *t_bin(void);

/* T_UNDER_ASAN is 1 in AddressSanitizer builds (gcc or clang), else 0: memory figures of such
 * builds include ASan's shadow and quarantine. */
#if defined(__SANITIZE_ADDRESS__)
#define T_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_UNDER_ASAN 1
#endif
#endif
#ifndef T_UNDER_ASAN
#define T_UNDER_ASAN 0
#endif

/* t_free_port returns a TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and
 * released), or -1 when no socket could be bound. */
int t_free_port(void);
const char *t_src(void);

#define T_RUN(fn) t_run(#fn, fn)
#define T_CHECK(c) do { if (!(c)) { t_cur_failed++; \
    fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); } } while (0)
#define T_EQ_INT(a, b) do { long long t_a_ = (long long)(a), t_b_ = (long long)(b); \
    if (t_a_ != t_b_) { t_cur_failed++; fprintf(stderr, "  FAIL %s:%d: %s == %s (%lld vs %lld)\n", \
    __FILE__, __LINE__, #a, #b, t_a_, t_b_); } } while (0)
#define T_EQ_STR(a, b) do { const char *t_a_ = (a), *t_b_ = (b); \
    if (!t_a_ || !t_b_ || strcmp(t_a_, t_b_) != 0) { t_cur_failed++; \
    fprintf(stderr, "  FAIL %s:%d: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, __LINE__, #a, #b, \
    t_a_ ? t_a_ : "(null)", t_b_ ? t_b_ : "(null)"); } } while (0)
/* T_SKIP marks the running test skipped (e.g. no GPU) and returns from it. */
#define T_SKIP(why) do { t_cur_skipped = 1; fprintf(stderr, "  skip: %s\n", why); return; } while (0)
#endif
