/* rt_lane.c — see rt_lane.h. Two FIFO queues and a ring of active steppers under one mutex; a
 * condition variable wakes the thread; finished items and steppers with results go to done
 * lists that a uv_async drains on the loop thread. The thread's turn order: invocation items
 * queued before the last step ended, then the next active stepper's step, and background items
 * only when neither waits. */
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
	int ninvoke;              /* of nqueued: invocation items */
	int before_step;          /* invocation items to run before the next step */
	rt_stepper *run_head, *run_tail;   /* active steppers, in turn order */
	uint64_t steps;
	rt_work *done_head, *done_tail;
	rt_stepper *sdone_head, *sdone_tail;   /* steppers whose deliver is due */
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

static void ring_push(rt_lane *l, rt_stepper *st)
{
	st->run_next = NULL;
	if (l->run_tail)
		l->run_tail->run_next = st;
	else
		l->run_head = st;
	l->run_tail = st;
}

/* one step of the stepper at the head of the ring; called and returns with l->mu held */
static void run_one_step(rt_lane *l)
{
	rt_stepper *st = l->run_head;
	l->run_head = st->run_next;
	if (!l->run_head)
		l->run_tail = NULL;
	st->run_next = NULL;
	pthread_mutex_unlock(&l->mu);
	uint64_t t0 = rt_clock_mono_ns();
	int fl = st->step(l, st);
	uint64_t t1 = rt_clock_mono_ns();
	pthread_mutex_lock(&l->mu);
	l->busy_ns += t1 - t0;
	l->last_invoke_ns = t1;
	l->steps++;
	if (fl & RT_STEP_MORE)
		ring_push(l, st);
	else
		st->running = 0;
	/* what queued up during the step runs before the next one */
	l->before_step = l->ninvoke;
	if ((fl & RT_STEP_DELIVER) && !st->delivering) {
		st->delivering = 1;
		st->done_next = NULL;
		if (l->sdone_tail)
			l->sdone_tail->done_next = st;
		else
			l->sdone_head = st;
		l->sdone_tail = st;
		pthread_mutex_unlock(&l->mu);
		uv_async_send(&l->async);
		pthread_mutex_lock(&l->mu);
	}
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
		while (!l->head[0] && !l->head[1] && !l->run_head && !l->stopping)
			pthread_cond_wait(&l->cv, &l->mu);
		if (l->run_head && (!l->head[0] || l->before_step <= 0)) {
			run_one_step(l);
			pthread_mutex_unlock(&l->mu);
			continue;
		}
		rt_work *w = pop(&l->head[0], &l->tail[0]);
		if (w) {
			l->ninvoke--;
			if (l->before_step > 0)
				l->before_step--;
		} else {
			w = pop(&l->head[1], &l->tail[1]);
		}
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
	rt_stepper *sl = l->sdone_head;
	l->sdone_head = l->sdone_tail = NULL;
	pthread_mutex_unlock(&l->mu);
	/* deliveries first: a work item that released a stepper finished after its last step */
	while (sl) {
		pthread_mutex_lock(&l->mu);
		rt_stepper *n = sl->done_next;
		sl->delivering = 0;   /* a later step may ask again (done_next is free again) */
		pthread_mutex_unlock(&l->mu);
		sl->deliver(sl);
		sl = n;
	}
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
	if (cls == 0) {
		l->ninvoke++;
		l->last_invoke_ns = w->enqueued_ns;
	}
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
	int r = l->head[0] != NULL || l->run_head != NULL;
	pthread_mutex_unlock(&l->mu);
	return r;
}

void rt_lane_stepper_wake(rt_lane *l, rt_stepper *st)
{
	pthread_mutex_lock(&l->mu);
	if (!st->running) {
		st->running = 1;
		if (!l->run_head)   /* the first active stepper: what is queued now goes first */
			l->before_step = l->ninvoke;
		ring_push(l, st);
		pthread_cond_signal(&l->cv);
	}
	pthread_mutex_unlock(&l->mu);
}

void rt_lane_stepper_remove(rt_lane *l, rt_stepper *st)
{
	pthread_mutex_lock(&l->mu);
	if (st->running) {
		rt_stepper *prev = NULL;
		for (rt_stepper *p = l->run_head; p; prev = p, p = p->run_next)
			if (p == st) {
				if (prev)
					prev->run_next = st->run_next;
				else
					l->run_head = st->run_next;
				if (l->run_tail == st)
					l->run_tail = prev;
				break;
			}
		st->run_next = NULL;
		st->running = 0;
	}
	pthread_mutex_unlock(&l->mu);
}

uint64_t rt_lane_steps(rt_lane *l)
{
	pthread_mutex_lock(&l->mu);
	uint64_t n = l->steps;
	pthread_mutex_unlock(&l->mu);
	return n;
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
