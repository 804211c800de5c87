/* rt_lane.c — see rt_lane.h. Two FIFO queues under one mutex; a condition variable wakes the
 * thread; finished items go to a done list that a uv_async drains on the loop thread. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/base/rt_clock.h"
#include "runtime/sched/rt_lane.h"
#include "runtime/base/rt_log.h"

struct rt_lane {
	char name[32];            /* label: the scheduler's device name */
	char spec[32];            /* device opened by the backend */
	int cpu_threads;
	kern_dev *dev;
	int is_cuda;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	rt_work *head[2], *tail[2];
	int nqueued;
	rt_work *done_head, *done_tail;
	int stopping;
	int started, start_rc;
	uint64_t busy_ns;
	uv_async_t async;
	/* time-sharing hooks */
	rt_lane_invoke_hook_fn invoke_hook;
	void *invoke_hook_ud;
	uint64_t last_invoke_ns;
};

static void push(rt_work **head, rt_work **tail, rt_work *w)
{
	w->next = NULL;
	if (*tail)
		(*tail)->next = w;
	else
		*head = w;
	*tail = w;
}

static rt_work *pop(rt_work **head, rt_work **tail)
{
	rt_work *w = *head;
	if (w) {
		*head = w->next;
		if (!*head)
			*tail = NULL;
		w->next = NULL;
	}
	return w;
}

static void *lane_main(void *arg)
{
	rt_lane *l = arg;
	int rc = kern_dev_open(l->spec, l->cpu_threads, &l->dev);
	pthread_mutex_lock(&l->mu);
	l->started = 1;
	l->start_rc = rc;
	if (rc == 0)
		l->is_cuda = kern_dev_is_cuda(l->dev);
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	if (rc < 0)
		return NULL;
	for (;;) {
		pthread_mutex_lock(&l->mu);
		while (!l->head[0] && !l->head[1] && !l->stopping)
			pthread_cond_wait(&l->cv, &l->mu);
		rt_work *w = pop(&l->head[0], &l->tail[0]);
		if (!w)
			w = pop(&l->head[1], &l->tail[1]);
		if (!w) {   /* stopping and drained */
			pthread_mutex_unlock(&l->mu);
			break;
		}
		l->nqueued--;
		rt_lane_invoke_hook_fn hook = w->cls == RT_WORK_INVOKE ? l->invoke_hook : NULL;
		void *hook_ud = l->invoke_hook_ud;
		pthread_mutex_unlock(&l->mu);
		w->started_ns = rt_clock_mono_ns();
		if (hook)
			hook(hook_ud, l, w, 1);
		w->run(l, w);
		w->finished_ns = rt_clock_mono_ns();
		pthread_mutex_lock(&l->mu);
		l->busy_ns += w->finished_ns - w->started_ns;
		if (w->cls == RT_WORK_INVOKE)
			l->last_invoke_ns = w->finished_ns;
		push(&l->done_head, &l->done_tail, w);
		pthread_mutex_unlock(&l->mu);
		uv_async_send(&l->async);
	}
	kern_dev_close(l->dev);
	l->dev = NULL;
	return NULL;
}

static void on_async(uv_async_t *a)
{
	rt_lane *l = a->data;
	pthread_mutex_lock(&l->mu);
	rt_work *list = l->done_head;
	l->done_head = l->done_tail = NULL;
	pthread_mutex_unlock(&l->mu);
	while (list) {
		rt_work *n = list->next;
		if (list->done)
			list->done(list);
		list = n;
	}
}

static void on_async_closed(uv_handle_t *h)
{
	rt_lane *l = h->data;
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cv);
	free(l);
}

int rt_lane_open(uv_loop_t *loop, const char *spec, int cpu_threads, rt_lane **out)
{
	return rt_lane_open_as(loop, spec, spec, cpu_threads, out);
}

int rt_lane_open_as(uv_loop_t *loop, const char *spec, const char *label, int cpu_threads,
		    rt_lane **out)
{
	int rc;
	rt_lane *l = calloc(1, sizeof *l);
	if (!l)
		return -ENOMEM;
	if (strlen(spec) >= sizeof l->spec || strlen(label) >= sizeof l->name) {
		free(l);
		return -EINVAL;
	}
	strcpy(l->spec, spec);
	strcpy(l->name, label);
	l->cpu_threads = cpu_threads;
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	rc = uv_async_init(loop, &l->async, on_async);
	if (rc < 0) {
		pthread_mutex_destroy(&l->mu);
		pthread_cond_destroy(&l->cv);
		free(l);
		return rc;
	}
	l->async.data = l;
	l->last_invoke_ns = rt_clock_mono_ns();
	rc = pthread_create(&l->thread, NULL, lane_main, l);
	if (rc) {
		uv_close((uv_handle_t *)&l->async, on_async_closed);
		return -rc;
	}
	pthread_mutex_lock(&l->mu);
	while (!l->started)
		pthread_cond_wait(&l->cv, &l->mu);
	rc = l->start_rc;
	pthread_mutex_unlock(&l->mu);
	if (rc < 0) {
		pthread_join(l->thread, NULL);
		uv_close((uv_handle_t *)&l->async, on_async_closed);
		return rc;
	}
	*out = l;
	return 0;
}

int rt_lane_submit(rt_lane *l, rt_work *w)
{
	int cls = w->cls == RT_WORK_BACKGROUND ? 1 : 0;
	w->enqueued_ns = rt_clock_mono_ns();
	pthread_mutex_lock(&l->mu);
	if (l->stopping) {
		pthread_mutex_unlock(&l->mu);
		return -ESHUTDOWN;
	}
	push(&l->head[cls], &l->tail[cls], w);
	l->nqueued++;
	if (cls == 0)
		l->last_invoke_ns = w->enqueued_ns;
	rt_lane_invoke_hook_fn hook = cls == 0 ? l->invoke_hook : NULL;
	void *hook_ud = l->invoke_hook_ud;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	if (hook)
		hook(hook_ud, l, w, 0);
	return 0;
}

int rt_lane_has_waiting(rt_lane *l)
{
	pthread_mutex_lock(&l->mu);
	int r = l->head[0] != NULL;
	pthread_mutex_unlock(&l->mu);
	return r;
}

void rt_lane_stop(rt_lane *l)
{
	pthread_mutex_lock(&l->mu);
	l->stopping = 1;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->thread, NULL);
	on_async(&l->async);   /* deliver what finished during the stop */
	uv_close((uv_handle_t *)&l->async, on_async_closed);
}

kern_dev *rt_lane_dev(rt_lane *l) { return l->dev; }
const char *rt_lane_name(const rt_lane *l) { return l->name; }
int rt_lane_is_cuda(const rt_lane *l) { return l->is_cuda; }

uint64_t rt_lane_busy_ns(rt_lane *l)
{
	pthread_mutex_lock(&l->mu);
	uint64_t b = l->busy_ns;
	pthread_mutex_unlock(&l->mu);
	return b;
}

int rt_lane_queued(rt_lane *l)
{
	pthread_mutex_lock(&l->mu);
	int n = l->nqueued;
	pthread_mutex_unlock(&l->mu);
	return n;
}

void rt_lane_set_invoke_hook(rt_lane *l, rt_lane_invoke_hook_fn fn, void *ud)
{
	pthread_mutex_lock(&l->mu);
	l->invoke_hook = fn;
	l->invoke_hook_ud = ud;
	pthread_mutex_unlock(&l->mu);
}

uint64_t rt_lane_last_invoke_ns(rt_lane *l)
{
	pthread_mutex_lock(&l->mu);
	uint64_t t = l->last_invoke_ns;
	pthread_mutex_unlock(&l->mu);
	return t;
}
