/* fuzz_jobspec.c — libFuzzer target for the parts of a job spec (the body of POST /v1/jobs)
 * that are checked without a running daemon: the schedule (rt_job_schedule_parse) and each job
 * kind's parameter check. Invariants: every refusal says why and names its field; an accepted
 * window has start != end within a day and a time zone within ±14 h, and the window test on
 * any clock value answers 0 or 1 without crashing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "runtime/jobs/rt_jobs.h"
#include "runtime/jobs/rt_jobs_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	json_t *spec = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	if (!spec)
		return 0;
	const json_t *sch = json_is_object(spec) ? json_object_get(spec, "schedule") : spec;
	rt_job_schedule s;
	err[0] = 0;
	if (rt_job_schedule_parse(sch, &s, err, sizeof err) < 0) {
		if (strncmp(err, "schedule", 8) != 0)
			abort();
	} else if (s.kind == RT_JOB_SCHED_WINDOW) {
		if (s.start_min == s.end_min || s.start_min < 0 || s.start_min > 1440 || s.end_min < 0 ||
		    s.end_min > 1440 || s.tz_min < -14 * 60 - 59 || s.tz_min > 14 * 60 + 59)
			abort();
		int64_t clocks[] = {0, -1, 1767225600000LL, INT64_MAX / 2, -(INT64_MAX / 2)};
		for (size_t i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
			int a = rt_job_schedule_allows(&s, clocks[i], 0, 0);
			if (a != 0 && a != 1)
				abort();
		}
	}
	const json_t *params = json_is_object(spec) ? json_object_get(spec, "params") : NULL;
	if (json_is_object(params)) {
		const char *kinds[] = {"finetune", "quantize"};
		for (int i = 0; i < 2; i++) {
			const rt_job_kind *k = rt_job_kind_find(kinds[i]);
			err[0] = 0;
			if (k->check(params, i ? "llama" : "mlp", err, sizeof err) < 0 &&
			    strncmp(err, "params.", 7) != 0 && strncmp(err, "function", 8) != 0)
				abort();
		}
	}
	json_decref(spec);
	return 0;
}
