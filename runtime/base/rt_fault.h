/* rt_fault.h — test-only fault injection points (tests/faults/). A point is a named
 * place where a crash would leave the most half-done state: "deploy.commit" (registry
 * transaction written, not committed), "job.checkpoint" (checkpoint.bin.tmp written, not yet
 * fsync'd and renamed), "restore" (a cold start's restore about to read the snapshot). With
 * THAW_FAULT_PAUSE=NAME (or NAME:N, the Nth time the point is reached) in the environment the
 * process logs "fault point NAME: pausing" and sleeps there (60 s) so that a test can kill -9
 * it at exactly that point. Unset: nothing (one getenv per call, on paths that are not hot).
 * The hook exists only in the test build of the daemon (thaw-test: rt_fault.c compiled with
 * THAW_TEST_HOOKS, see the Makefile); in thaw itself rt_fault_point does nothing. */
#ifndef THAW_RT_FAULT_H
#define THAW_RT_FAULT_H

/* rt_fault_point pauses when THAW_FAULT_PAUSE names this point (see above); any thread. */
void rt_fault_point(const char *name);

#endif
