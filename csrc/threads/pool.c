/* The thread pool (see pool.h). */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#define FM_POOL_MAX 256

static struct {
    pthread_mutex_t lock;         /* guards everything below */
    pthread_cond_t wake, done;
    pthread_t threads[FM_POOL_MAX];
    int n_started;
    int stopping;
    int busy;                     /* a caller's job is running: other callers go serial */
    uint64_t generation;          /* bumped per job: a worker runs each job once */
    /* the job */
    fm_task_fn fn;
    void *arg;
    int64_t n_tasks, next_task, tasks_done;
    int n_wanted;                 /* workers (besides the caller) this job may use */
    int n_joined;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
            .wake = PTHREAD_COND_INITIALIZER,
            .done = PTHREAD_COND_INITIALIZER};

/* Claims and runs tasks of the current job until none is left; called with the lock held,
   returns with it held. */
static void run_tasks(void)
{
    while (pool.next_task < pool.n_tasks) {
        const int64_t t = pool.next_task++;
        fm_task_fn fn = pool.fn;
        void *arg = pool.arg;
        pthread_mutex_unlock(&pool.lock);
        fn(arg, t);
        pthread_mutex_lock(&pool.lock);
        __atomic_store_n(&pool.tasks_done, pool.tasks_done + 1, __ATOMIC_RELEASE);
        if (pool.tasks_done == pool.n_tasks) pthread_cond_signal(&pool.done);
    }
}

/* How long an idle worker polls for the next job before it parks: a training loop's
   parallel regions come back to back, and waking a parked thread costs tens of
   microseconds on a VM. Measured on the MNIST epoch (2 threads): 50 us let the worker
   park between steps (1.49x the 1-thread speed at 1.33x its CPU time), 100 us did not
   (1.87x at 0.97x). */
#define FM_SPIN_NS 100000

/* A moment of polling; sched_yield hands the core over when a thread that has work
   shares it (a VM's vCPUs, or more threads than cores). */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    for (int i = 0; i < 16; ++i) __builtin_ia32_pause();
#endif
    sched_yield();
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void *worker(void *unused)
{
    (void)unused;
    uint64_t seen = 0;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        if (pool.generation == seen && !pool.stopping) { /* bounded spin, lock released */
            pthread_mutex_unlock(&pool.lock);
            const uint64_t until = now_ns() + FM_SPIN_NS;
            while (__atomic_load_n(&pool.generation, __ATOMIC_ACQUIRE) == seen &&
                   now_ns() < until)
                cpu_relax();
            pthread_mutex_lock(&pool.lock);
        }
        while (!pool.stopping && (pool.generation == seen || pool.n_joined >= pool.n_wanted))
            pthread_cond_wait(&pool.wake, &pool.lock);
        if (pool.stopping) break;
        seen = pool.generation;
        ++pool.n_joined;
        run_tasks();
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

static void stop_workers(void)
{
    pthread_mutex_lock(&pool.lock);
    pool.stopping = 1;
    pthread_cond_broadcast(&pool.wake);
    const int n = pool.n_started;
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < n; ++i) pthread_join(pool.threads[i], NULL);
    pool.n_started = 0;
}

/* The BLAS's own thread count while regions that call it run on the pool (see pool.h). */
static struct {
    pthread_mutex_t lock;
    int depth;  /* regions running */
    int saved;  /* the count before the first of them */
} blas_single = {.lock = PTHREAD_MUTEX_INITIALIZER};

void fm_pool_blas_single(int (*get_threads)(void), void (*set_threads)(int), int enter)
{
    if (get_threads == NULL || set_threads == NULL) return;
    pthread_mutex_lock(&blas_single.lock);
    if (enter && blas_single.depth++ == 0) {
        blas_single.saved = get_threads();
        if (blas_single.saved > 1) set_threads(1);
    } else if (!enter && --blas_single.depth == 0 && blas_single.saved > 1) {
        set_threads(blas_single.saved);
    }
    pthread_mutex_unlock(&blas_single.lock);
}

/* A forked child has the parent's memory but none of its threads: start afresh. */
static void after_fork_in_child(void)
{
    pthread_mutex_init(&blas_single.lock, NULL);
    blas_single.depth = 0;
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.n_started = 0;
    pool.stopping = 0;
    pool.busy = 0;
}

static pthread_once_t registered = PTHREAD_ONCE_INIT;

static void register_handlers(void)
{
    pthread_atfork(NULL, NULL, after_fork_in_child);
    atexit(stop_workers);
}

/* Starts workers up to `want` (lock held). Returns how many there are. */
static int grow(int want)
{
    if (want > FM_POOL_MAX) want = FM_POOL_MAX;
    while (pool.n_started < want && !pool.stopping) {
        if (pthread_create(&pool.threads[pool.n_started], NULL, worker, NULL) != 0) break;
        ++pool.n_started;
    }
    return pool.n_started;
}

void fm_pool_run(int n_threads, int64_t n_tasks, fm_task_fn fn, void *arg)
{
    if (n_tasks <= 0) return;
    if (n_threads > n_tasks) n_threads = (int)n_tasks;
    pthread_once(&registered, register_handlers);
    pthread_mutex_lock(&pool.lock);
    if (n_threads <= 1 || pool.busy || pool.stopping) {
        pthread_mutex_unlock(&pool.lock);
        for (int64_t t = 0; t < n_tasks; ++t) fn(arg, t);
        return;
    }
    pool.busy = 1;
    const int workers = grow(n_threads - 1);
    pool.fn = fn;
    pool.arg = arg;
    pool.n_tasks = n_tasks;
    pool.next_task = 0;
    pool.tasks_done = 0;
    pool.n_wanted = n_threads - 1 < workers ? n_threads - 1 : workers;
    pool.n_joined = 0;
    __atomic_store_n(&pool.generation, pool.generation + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pool.wake);
    run_tasks();
    if (pool.tasks_done < pool.n_tasks) { /* the last tasks run elsewhere: poll, then park */
        const int64_t n = pool.n_tasks;
        pthread_mutex_unlock(&pool.lock);
        const uint64_t until = now_ns() + FM_SPIN_NS;
        while (__atomic_load_n(&pool.tasks_done, __ATOMIC_ACQUIRE) < n && now_ns() < until)
            cpu_relax();
        pthread_mutex_lock(&pool.lock);
    }
    while (pool.tasks_done < pool.n_tasks) pthread_cond_wait(&pool.done, &pool.lock);
    pool.n_wanted = 0; /* late wakers find nothing to join */
    pool.busy = 0;
    pthread_mutex_unlock(&pool.lock);
}

int fm_pool_size(void)
{
    pthread_mutex_lock(&pool.lock);
    const int n = pool.n_started;
    pthread_mutex_unlock(&pool.lock);
    return n;
}
