/* rt_cli.c — small helpers shared by the `thaw` subcommands: help flags, sizes and numbers
 * for people, JSON output whose reals read as they were written, and the progress bar.
 * See rt_cli.h. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "runtime/base/rt_clock.h"
#include "runtime/base/rt_json.h"
#include "runtime/cli/rt_cli.h"

int rt_cli_is_help(const char *arg)
{
	return arg && (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0);
}

const char *rt_cli_fmt_bytes(double bytes, char *buf, size_t cap)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	if (!isfinite(bytes) || bytes < 0) {
		snprintf(buf, cap, "-");
		return buf;
	}
	int u = 0;
	double b = bytes;
	/* 1023.9 KiB would print as "1024 KiB": move up once the rounded value reaches 1024 */
	while (u < 5 && b >= 1023.5) {
		b /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, cap, "%.0f B", b);
	else if (b < 9.995)
		snprintf(buf, cap, "%.2f %s", b, unit[u]);
	else if (b < 99.95)
		snprintf(buf, cap, "%.1f %s", b, unit[u]);
	else
		snprintf(buf, cap, "%.0f %s", b, unit[u]);
	return buf;
}

int rt_cli_json_print(FILE *f, const json_t *v, int indent)
{
	char *text = v ? rt_json_dumps(v, indent) : strdup("null");
	int rc = text && fputs(text, f) >= 0 && fputc('\n', f) != EOF ? 0 : -EIO;
	free(text);
	return rc;
}

/* ---- progress bar ---- */

void rt_cli_bar_init(rt_cli_bar *b, int on, const char *label)
{
	memset(b, 0, sizeof *b);
	b->on = on;
	b->label = label;
}

void rt_cli_bar_end(rt_cli_bar *b)
{
	if (b->on && b->open) {
		fputc('\n', stderr);
		fflush(stderr);
	}
	b->open = 0;
}

void rt_cli_bar_update(void *bar, const char *phase, uint64_t done, uint64_t total)
{
	rt_cli_bar *b = bar;
	const char *name = b->label ? b->label : phase ? phase : "";
	double t = rt_clock_mono_s();
	int end = done >= total;

	if (!b->on)
		return;
	if (b->open && strcmp(b->phase, name) != 0)
		rt_cli_bar_end(b);
	if (!b->open) {   /* a new phase: its own line and clock */
		snprintf(b->phase, sizeof b->phase, "%s", name);
		b->open = 1;
		b->t0 = t;
		b->last = 0;
	} else if (!end && t - b->last < 0.1) {
		return;
	}
	b->last = t;
	double frac = total ? (double)done / (double)total : 1.0, dt = t - b->t0;
	double rate = dt > 0 ? (double)done / dt : 0;
	char d[32], tot[32], tail[48];
	int w = 20, k = (int)(frac * w);
	if (end)
		snprintf(tail, sizeof tail, "in %.1f s", dt);
	else if (rate > 0)
		snprintf(tail, sizeof tail, "ETA %.0f s", (double)(total - done) / rate);
	else
		snprintf(tail, sizeof tail, "ETA ?");
	fprintf(stderr, "\r%s [%.*s%.*s] %3d%%  %s / %s  %.0f MB/s  %s\033[K", b->phase, k,
		"####################", w - k, "....................", (int)(frac * 100),
		rt_cli_fmt_bytes((double)done, d, sizeof d), rt_cli_fmt_bytes((double)total, tot, sizeof tot),
		rate / 1e6, tail);
	if (end) {
		fputc('\n', stderr);
		b->open = 0;
	}
	fflush(stderr);
}
