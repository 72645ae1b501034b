/*
 * The C core's thread pool: POSIX threads, created lazily once per process, parked on a
 * condition variable when idle, re-created in a forked child, stopped at exit. Besides
 * the SIMD dispatch table it is the only process state the core holds; the work it runs
 * keeps its scratch memory in the caller's (the plan's) arrays.
 */
#ifndef FASTMLP_POOL_H
#define FASTMLP_POOL_H

#include <stdint.h>

typedef void (*fm_task_fn)(void *arg, int64_t task);

/* Runs fn(arg, t) for t in [0, n_tasks) on up to n_threads threads (the caller is one of
   them) and returns when all are done. Tasks are claimed in order by whichever thread is
   free, so a task's result must not depend on the thread that runs it. With n_threads <= 1,
   or when the pool is busy with another caller's work, the caller runs every task itself. */
void fm_pool_run(int n_threads, int64_t n_tasks, fm_task_fn fn, void *arg);

/* A region that calls BLAS from several pool threads at once brackets itself with this
   (enter 1, then 0): a BLAS with a pool of its own (OpenBLAS) would otherwise put its
   threads on the same cores as ours. The first region in saves the BLAS's thread count and
   sets 1; the last one out restores it. NULL functions (a BLAS without them): nothing. */
void fm_pool_blas_single(int (*get_threads)(void), void (*set_threads)(int), int enter);

/* Worker threads started so far (0 before the first parallel run). */
int fm_pool_size(void);

#endif /* FASTMLP_POOL_H */
