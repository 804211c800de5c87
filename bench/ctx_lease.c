/* ctx_lease.c — what a pooled lane saves: `ctx_lease fresh DEV` measures, in a new process,
 * opening the device (CUDA context, streams, cuBLAS handle) plus the first 1024^3 BF16 GEMM;
 * `ctx_lease pooled DEV N` opens a lane once, then measures N leases of it: a work item that runs
 * the same GEMM on the lane's warm handle, from submit to completion on the event loop.
 * Prints one number per line (milliseconds); bench/bench_coldstart.sh takes medians. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/kern.h"
#include "runtime/http/rt_http.h"
#include "runtime/sched/rt_lane.h"

#define D 1024

typedef struct gemm {
	rt_work w;
	float *x, *y;
	uint16_t *wt;
	int rc;
	int done;
} gemm;

static int run_gemm(kern_dev *dev, float *x, uint16_t *wt, float *y)
{
	kern_mat m = {.dt = KERN_BF16, .n = D, .k = D, .data = wt};
	int rc = kern_linear(dev, x, D, &m, NULL, KERN_ACT_NONE, y);
	return rc ? rc : kern_dev_sync(dev);
}

static int alloc_bufs(kern_dev *dev, float **x, uint16_t **wt, float **y)
{
	float *hx = calloc(D * D, sizeof(float));
	uint16_t *hw = calloc(D * D, sizeof(uint16_t));
	for (int i = 0; i < D * D; i++) {
		hx[i] = (float)(i % 7) * 0.01f;
		hw[i] = kern_f32_to_bf16((float)(i % 5) * 0.01f);
	}
	*x = kern_alloc(dev, D * D * sizeof(float));
	*y = kern_alloc(dev, D * D * sizeof(float));
	*wt = kern_alloc(dev, D * D * sizeof(uint16_t));
	int rc = (!*x || !*y || !*wt) ? -1 : 0;
	if (!rc)
		rc = kern_copy_h2d(dev, *x, hx, D * D * sizeof(float));
	if (!rc)
		rc = kern_copy_h2d(dev, *wt, hw, D * D * sizeof(uint16_t));
	free(hx);
	free(hw);
	return rc;
}

static void lane_gemm(rt_lane *l, rt_work *w)
{
	gemm *g = (gemm *)w;
	kern_dev *dev = rt_lane_dev(l);
	if (!g->x && alloc_bufs(dev, &g->x, &g->wt, &g->y) < 0) {
		g->rc = -1;
		return;
	}
	g->rc = run_gemm(dev, g->x, g->wt, g->y);
}

static void lane_done(rt_work *w)
{
	((gemm *)w)->done = 1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: ctx_lease fresh DEV | pooled DEV N\n");
		return 2;
	}
	if (!strcmp(argv[1], "fresh")) {
		uint64_t t0 = rt_now_ns();
		kern_dev *dev;
		if (kern_dev_open(argv[2], 0, &dev) < 0)
			return 1;
		float *x, *y;
		uint16_t *wt;
		if (alloc_bufs(dev, &x, &wt, &y) < 0 || run_gemm(dev, x, wt, y) < 0)
			return 1;
		printf("%.3f\n", (double)(rt_now_ns() - t0) / 1e6);
		return 0;
	}
	int n = argc > 3 ? atoi(argv[3]) : 20;
	uv_loop_t loop;
	uv_loop_init(&loop);
	rt_lane *lane;
	if (rt_lane_open(&loop, argv[2], 0, &lane) < 0)
		return 1;
	gemm g;
	memset(&g, 0, sizeof g);
	for (int i = -3; i < n; i++) {   /* 3 warm-up leases */
		g.w.run = lane_gemm;
		g.w.done = lane_done;
		g.done = 0;
		uint64_t t0 = rt_now_ns();
		rt_lane_submit(lane, &g.w);
		while (!g.done)
			uv_run(&loop, UV_RUN_ONCE);
		if (g.rc < 0)
			return 1;
		if (i >= 0)
			printf("%.3f\n", (double)(rt_now_ns() - t0) / 1e6);
	}
	rt_lane_stop(lane);
	uv_run(&loop, UV_RUN_DEFAULT);
	return 0;
}
