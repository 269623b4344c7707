/* plan/pool.c - the planner's worker threads, kept between plans.
 *
 * DESIGN.  A whole plan is short beside what starting a thread (clone, a
 * fresh stack, page faults in a paravirtualised guest) or waking an idle
 * one costs on the VMs eplb was measured on (docs/planner.md, "Threads,
 * and what a cold plan pays"): a second thread started inside eplb_plan
 * made a cold two-thread plan no faster than one thread.  So workers are
 * started once, by the first plan that wants them or ahead of it
 * (eplb_plan_warm_up, which a program calls before it reads its
 * statistics), and sleep between plans.  Workers started ahead spin for
 * a bounded time first (WARM_SPIN_S) so that the plan that follows does
 * not wait for a sleeping vCPU.
 *
 * A job is a function that takes work from a shared counter until none is
 * left (plan.c's plan_worker): any number of threads may run it, and a
 * worker that wakes after the caller closed the job skips it, so a slow
 * wake never delays the plan.  One job at a time; a second caller that
 * finds the pool busy (two threads planning at once) is told so and starts
 * its own threads.  After fork() the child has no workers: the pool starts
 * empty there.  At exit (or when libeplb.so is unloaded) workers are told
 * to stop and joined.
 *
 * Linux starts a new thread on its creator's CPU and, on the VMs measured,
 * was slow to move it to an idle one: until then the two shared a
 * CPU and a cold two-thread plan was no faster than one thread (a
 * spinning worker even slowed the reading of statistics).  So a worker is
 * started on another CPU the process may use, and once it runs it takes
 * back the process's whole CPU set: it is not pinned, only started where
 * it can run at once. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getcpu, CPU_SET, pthread_*affinity_np */
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "plan/internal.h"

/* How long workers started ahead of a plan spin before they sleep: long
 * enough to cover reading statistics (a few ms), short enough not to hold
 * a core for nothing when the plan never comes. */
#define WARM_SPIN_S 0.05

typedef struct {
  pthread_mutex_t lock; /* everything below, except gen's spinning reads */
  pthread_cond_t work;  /* a job was posted, or quit */
  pthread_cond_t done;  /* the last worker of a closed job left it */
  pthread_mutex_t run;  /* held by the one caller running a job */
  pthread_t tid[EPLB_MAX_PLAN_THREADS];
  int32_t workers;
  atomic_uint_fast64_t gen; /* job number, bumped when one is posted */
  void *(*fn)(void *);
  void *arg;
  int open;       /* the current job may still be joined */
  int32_t want;   /* workers the current job may take */
  int32_t joined; /* workers that took it */
  int32_t active; /* workers still running it */
  int quit;
  double spin_until;  /* workers spin, not sleep, until this time */
  cpu_set_t allowed;  /* the CPUs of the thread that started the workers */
  void (*warm)(void); /* run once by a worker started ahead of a plan */
} pool_t;

static pool_t pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
                      .work = PTHREAD_COND_INITIALIZER,
                      .done = PTHREAD_COND_INITIALIZER,
                      .run = PTHREAD_MUTEX_INITIALIZER};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* Spins until a job after `seen` is posted or `until` passes; 1 if one
 * was.  Reads gen only: no lock is taken while spinning. */
static int spin_for_job(uint_fast64_t seen, double until) {
  while (now_s() < until) {
    for (int i = 0; i < 64; i++) {
      if (atomic_load_explicit(&pool.gen, memory_order_acquire) != seen)
        return 1;
      cpu_relax();
    }
    sched_yield(); /* should this CPU be shared, the other thread runs */
  }
  return 0;
}

/* arg: the job number when the worker was started, shifted left once,
 * with bit 0 set when it should run pool.warm first. */
static void *pool_main(void *arg) {
  uint_fast64_t seen = (uint_fast64_t)(uintptr_t)arg >> 1;
  int warm_first = (int)((uintptr_t)arg & 1);
  pthread_mutex_lock(&pool.lock);
  if (CPU_COUNT(&pool.allowed) > 0)
    pthread_setaffinity_np(pthread_self(), sizeof(pool.allowed), &pool.allowed);
  void (*warm)(void) = pool.warm;
  if (warm_first && warm != NULL) {
    pthread_mutex_unlock(&pool.lock);
    warm();
    pthread_mutex_lock(&pool.lock);
  }
  for (;;) {
    while (!pool.quit && atomic_load(&pool.gen) == seen) {
      double until = pool.spin_until;
      if (now_s() < until) {
        pthread_mutex_unlock(&pool.lock);
        spin_for_job(seen, until);
        pthread_mutex_lock(&pool.lock);
        continue;
      }
      pthread_cond_wait(&pool.work, &pool.lock);
    }
    if (pool.quit)
      break;
    seen = atomic_load(&pool.gen);
    if (!pool.open || pool.joined >= pool.want)
      continue; /* closed before this worker woke, or enough joined */
    pool.joined++;
    pool.active++;
    void *(*fn)(void *) = pool.fn;
    void *job = pool.arg;
    pthread_mutex_unlock(&pool.lock);
    fn(job);
    pthread_mutex_lock(&pool.lock);
    if (--pool.active == 0 && !pool.open)
      pthread_cond_signal(&pool.done);
  }
  pthread_mutex_unlock(&pool.lock);
  return NULL;
}

/* The child of a fork has the parent's memory but none of its workers. */
static void pool_after_fork_child(void) {
  pthread_mutex_init(&pool.lock, NULL);
  pthread_mutex_init(&pool.run, NULL);
  pthread_cond_init(&pool.work, NULL);
  pthread_cond_init(&pool.done, NULL);
  pool.workers = 0;
  pool.open = 0;
  pool.joined = pool.active = 0;
  pool.quit = 0;
  pool.spin_until = 0;
}

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_register(void) {
  pthread_atfork(NULL, NULL, pool_after_fork_child);
}

/* Stops and joins the workers: at exit, or when libeplb.so is unloaded
 * (a worker must not outlive the code it runs). */
__attribute__((destructor)) static void pool_stop(void) {
  pthread_mutex_lock(&pool.lock);
  pool.quit = 1;
  /* Spinning workers read gen only: a new number ends their spin. */
  atomic_fetch_add_explicit(&pool.gen, 1, memory_order_release);
  int32_t n = pool.workers;
  pthread_cond_broadcast(&pool.work);
  pthread_mutex_unlock(&pool.lock);
  for (int32_t i = 0; i < n; i++)
    pthread_join(pool.tid[i], NULL);
  pthread_mutex_lock(&pool.lock);
  pool.workers = 0;
  pool.quit = 0;
  pthread_mutex_unlock(&pool.lock);
}

/* Grows the pool to n workers (lock held); returns how many there are.
 * New workers run pool.warm first when `warm` is set. */
static int32_t grow(int32_t n, int warm) {
  pthread_once(&pool_once, pool_register);
  if (n > EPLB_MAX_PLAN_THREADS - 1)
    n = EPLB_MAX_PLAN_THREADS - 1;
  if (pool.workers >= n)
    return pool.workers;
  /* Worker i starts on the i-th allowed CPU after the caller's. */
  int here = sched_getcpu(), ncpu = CPU_SETSIZE;
  if (sched_getaffinity(0, sizeof(pool.allowed), &pool.allowed) != 0 ||
      here < 0) {
    CPU_ZERO(&pool.allowed);
    ncpu = 0; /* unknown: start workers anywhere */
  }
  for (int cpu = here; pool.workers < n;) {
    pthread_attr_t attr;
    int have_attr = pthread_attr_init(&attr) == 0;
    if (have_attr && ncpu > 0 && CPU_COUNT(&pool.allowed) > 1) {
      do
        cpu = (cpu + 1) % ncpu;
      while (!CPU_ISSET(cpu, &pool.allowed) || cpu == here);
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      pthread_attr_setaffinity_np(&attr, sizeof(one), &one);
    }
    uintptr_t tag = (uintptr_t)atomic_load(&pool.gen) << 1 | (warm != 0);
    int rc = pthread_create(&pool.tid[pool.workers], have_attr ? &attr : NULL,
                            pool_main, (void *)tag);
    if (have_attr)
      pthread_attr_destroy(&attr);
    if (rc != 0)
      break; /* fewer workers: the callers do the rest */
    pool.workers++;
  }
  return pool.workers;
}

int32_t eplb__usable_cpus(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
    return CPU_COUNT(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > INT32_MAX ? INT32_MAX : (int32_t)n;
}

int32_t eplb__pool_warm_up(int32_t n, void (*warm)(void)) {
  pthread_mutex_lock(&pool.lock);
  pool.spin_until = now_s() + WARM_SPIN_S;
  pool.warm = warm; /* read by the workers started now */
  int32_t got = grow(n, warm != NULL);
  pthread_mutex_unlock(&pool.lock);
  return got;
}

/* Another thread holds the pool: fn on `extra` threads of this call's own,
 * as planning did before the pool (a thread that cannot be started leaves
 * its share to the others). */
static void run_unpooled(int32_t extra, void *(*fn)(void *), void *arg) {
  pthread_t tid[EPLB_MAX_PLAN_THREADS];
  int32_t started = 0;
  for (int32_t t = 0; t < extra && t < EPLB_MAX_PLAN_THREADS; t++)
    if (pthread_create(&tid[started], NULL, fn, arg) == 0)
      started++;
  fn(arg);
  for (int32_t t = 0; t < started; t++)
    pthread_join(tid[t], NULL);
}

void eplb__pool_run(int32_t extra, void *(*fn)(void *), void *arg) {
  if (extra < 1) {
    fn(arg);
    return;
  }
  if (pthread_mutex_trylock(&pool.run) != 0) {
    run_unpooled(extra, fn, arg);
    return;
  }
  pthread_mutex_lock(&pool.lock);
  grow(extra, 0); /* workers started for a job run it at once */
  pool.fn = fn;
  pool.arg = arg;
  pool.want = extra;
  pool.joined = 0;
  pool.open = 1;
  pool.spin_until = 0; /* the plan came: workers sleep after it */
  atomic_fetch_add_explicit(&pool.gen, 1, memory_order_release);
  pthread_cond_broadcast(&pool.work);
  pthread_mutex_unlock(&pool.lock);
  fn(arg);
  pthread_mutex_lock(&pool.lock);
  pool.open = 0;
  while (pool.active > 0)
    pthread_cond_wait(&pool.done, &pool.lock);
  pthread_mutex_unlock(&pool.lock);
  pthread_mutex_unlock(&pool.run);
}
