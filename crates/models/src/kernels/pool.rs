//! A minimal fork-join pool for the matmul kernels: `threads - 1` helpers plus the caller,
//! sharing a job's work units through an atomic cursor.
//!
//! Why not candle's pool: there the caller is handed a fixed share and then spins until every
//! worker has finished its own, so a worker that wakes late (or is preempted) stalls the caller;
//! on a 2-core machine that wait was a third of decode time. Here units are *claimed*, not
//! assigned: the caller starts on them at once, a helper that wakes late simply finds fewer
//! left, and the caller only ever waits for a unit a helper has already claimed (one unit is
//! ~1 µs of work in decode). Idle helpers poll for the next job for a bounded time
//! ([`HELPER_SPIN`]), because a forward pass issues matmuls microseconds apart and a futex
//! wake-up costs more than a decode matmul; then they sleep on a condition variable, so an
//! idle process uses no CPU.
//!
//! One job at a time: a caller that finds the pool busy (another thread's matmul) runs its
//! units inline rather than queueing.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle helper polls for the next job before sleeping: longer than the gap between
/// consecutive matmuls of a decode step (attention, norms), far shorter than a human notices.
/// Measured against 0 and 50 µs in `bench/RESULTS.md`.
const HELPER_SPIN: Duration = Duration::from_micros(200);

pub(crate) struct Pool {
    shared: Arc<Shared>,
    threads: usize,
}

/// A job's closure and cursor, on the caller's stack. The caller keeps it alive until it has
/// withdrawn it from `Shared::job` and seen `Shared::joined` at zero, which is what makes the
/// `'static` erasure in [`Pool::run`] sound.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    n: usize,
    next: AtomicUsize,
    /// Each thread takes at most one unit ([`Pool::run_each`]).
    one_each: bool,
    /// Units finished (or unwound).
    done: AtomicUsize,
}

impl Job<'_> {
    fn work(&self) {
        loop {
            let u = self.next.fetch_add(1, Relaxed);
            if u >= self.n {
                return;
            }
            if self.one_each {
                // Counted on unwind too: `run_each`'s caller waits for every unit.
                let _done = Done(&self.done);
                return (self.f)(u);
            }
            (self.f)(u);
        }
    }
}

struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

struct Shared {
    /// The published job, null when none. Helpers enter it only through `joined` (below).
    job: AtomicPtr<Job<'static>>,
    /// Bumped per job; helpers poll it, then sleep on `wake` under `sleep`.
    gen: AtomicU64,
    /// Helpers inside the published job. With `job`, a Dekker pair (both SeqCst): a helper
    /// increments `joined` *then* reads `job`; the caller nulls `job` *then* reads `joined`, so
    /// either the caller waits for that helper or the helper sees null and backs out.
    joined: AtomicUsize,
    /// Whether helpers should poll for the next job after this one (see [`Pool::run`]).
    linger: AtomicBool,
    /// Helpers blocked (or about to block) on `wake`; the caller skips the futex when zero.
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
    panicked: AtomicBool,
    busy: AtomicBool,
}

impl Pool {
    /// The process-wide pool, one thread per available core.
    pub(crate) fn global() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| Pool::new(std::thread::available_parallelism().map_or(1, |n| n.get())))
    }

    pub(crate) fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            job: AtomicPtr::new(std::ptr::null_mut()),
            gen: AtomicU64::new(0),
            joined: AtomicUsize::new(0),
            linger: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            panicked: AtomicBool::new(false),
            busy: AtomicBool::new(false),
        });
        let mut started = 1;
        for i in 1..threads.max(1) {
            let s = Arc::clone(&shared);
            // A pool that could not start a helper is still correct, only narrower.
            if std::thread::Builder::new().name(format!("prom-matmul-{i}")).spawn(move || helper(&s)).is_ok() {
                started += 1;
            }
        }
        Self { shared, threads: started }
    }

    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(0..n)` across the pool and returns when every unit is done. `linger`: the caller
    /// expects another job within microseconds (decode issues short matmuls back to back), so
    /// helpers should poll for it; otherwise they sleep at once and leave the core to whatever
    /// runs between long jobs (in prefill, candle's own threads).
    pub(crate) fn run(&self, n: usize, linger: bool, f: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        if self.threads <= 1 || n <= 1 || s.busy.swap(true, Acquire) {
            return (0..n).for_each(f);
        }
        let job = Job { f, n, next: AtomicUsize::new(0), one_each: false, done: AtomicUsize::new(0) };
        self.publish(&job, linger);
        let finish = Finish { s, every: None };
        job.work();
        drop(finish);
    }

    /// Runs `f(0..threads)` with every unit on its own thread, all at once: the caller takes one
    /// and each helper one, so units may wait for each other (a barrier between them). Returns
    /// false, running nothing, when that cannot be promised: a pool of one thread, or one busy
    /// with another caller's job.
    pub(crate) fn run_each(&self, f: &(dyn Fn(usize) + Sync)) -> bool {
        let s = &*self.shared;
        if self.threads <= 1 || s.busy.swap(true, Acquire) {
            return false;
        }
        let job = Job { f, n: self.threads, next: AtomicUsize::new(0), one_each: true, done: AtomicUsize::new(0) };
        self.publish(&job, true);
        let finish = Finish { s, every: Some((&job.done, job.n)) };
        job.work();
        drop(finish);
        true
    }

    /// Publishes `job` and wakes the helpers. The pool's `busy` flag is the caller's.
    fn publish(&self, job: &Job<'_>, linger: bool) {
        let s = &*self.shared;
        // SAFETY (lifetime erasure): `Finish` withdraws the job and waits until no helper is
        // inside it before `job` goes out of scope, on unwind too.
        s.linger.store(linger, Relaxed);
        s.job.store(job as *const Job<'_> as *mut Job<'static>, SeqCst);
        s.gen.fetch_add(1, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
    }
}

/// Withdraws the published job and waits until no helper is inside it; with `every`
/// (`run_each`), first until all of its units are done, since a helper that has not yet
/// joined must still take its unit.
struct Finish<'a> {
    s: &'a Shared,
    every: Option<(&'a AtomicUsize, usize)>,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let s = self.s;
        if let Some((done, n)) = self.every {
            let mut spins = 0u32;
            while done.load(SeqCst) < n {
                spins += 1;
                if spins < 1 << 12 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        s.job.store(std::ptr::null_mut(), SeqCst);
        // A helper still inside holds at most the unit it claimed last.
        let mut spins = 0u32;
        while s.joined.load(SeqCst) != 0 {
            spins += 1;
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                // The helper was preempted mid-unit: let it run.
                std::thread::yield_now();
            }
        }
        let panicked = s.panicked.swap(false, Relaxed);
        s.busy.store(false, Release);
        if panicked && !std::thread::panicking() {
            panic!("a matmul kernel panicked on a pool thread");
        }
    }
}

fn helper(s: &Shared) {
    // 0, not the current value: a helper that starts after the first job was published joins it.
    let mut seen = 0;
    loop {
        // Poll briefly for the next job before paying for a sleep and a wake-up.
        let start = Instant::now();
        let spin = if s.linger.load(Relaxed) { HELPER_SPIN } else { Duration::ZERO };
        'spin: while s.gen.load(Acquire) == seen {
            for _ in 0..64 {
                std::hint::spin_loop();
                if s.gen.load(Acquire) != seen {
                    break 'spin;
                }
            }
            if start.elapsed() >= spin {
                let mut g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_add(1, SeqCst);
                while s.gen.load(SeqCst) == seen {
                    g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                s.sleepers.fetch_sub(1, SeqCst);
            }
        }
        seen = s.gen.load(Acquire);
        s.joined.fetch_add(1, SeqCst);
        let job = s.job.load(SeqCst);
        if !job.is_null() {
            // SAFETY: the job stays alive while `joined > 0` (see `Shared::joined`).
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*job).work() })).is_ok();
            if !ok {
                s.panicked.store(true, Relaxed);
            }
        }
        s.joined.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_runs_exactly_once_across_many_jobs() {
        let pool = Pool::new(3);
        for n in [0usize, 1, 2, 7, 100] {
            for _ in 0..50 {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                pool.run(n, true, &|u| {
                    hits[u].fetch_add(1, Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Relaxed) == 1), "n = {n}");
            }
        }
    }

    #[test]
    fn jobs_after_the_helpers_fell_asleep_still_complete() {
        let pool = Pool::new(2);
        for _ in 0..3 {
            std::thread::sleep(HELPER_SPIN * 5);
            let sum = AtomicUsize::new(0);
            pool.run(64, false, &|u| {
                sum.fetch_add(u, Relaxed);
            });
            assert_eq!(sum.load(Relaxed), 64 * 63 / 2);
        }
    }

    #[test]
    fn concurrent_callers_each_get_all_their_units() {
        let pool = Pool::new(2);
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..200 {
                        let sum = AtomicUsize::new(0);
                        pool.run(10, true, &|u| {
                            sum.fetch_add(u, Relaxed);
                        });
                        assert_eq!(sum.load(Relaxed), 45);
                    }
                });
            }
        });
    }

    #[test]
    fn run_each_runs_every_unit_at_once_on_its_own_thread() {
        for threads in [2, 3] {
            let pool = Pool::new(threads);
            for _ in 0..50 {
                // Every unit waits until all have arrived: this only returns if they run at once.
                let arrived = AtomicUsize::new(0);
                let ids = Mutex::new(Vec::new());
                assert!(pool.run_each(&|_| {
                    arrived.fetch_add(1, SeqCst);
                    while arrived.load(SeqCst) < threads {
                        std::hint::spin_loop();
                    }
                    ids.lock().unwrap().push(std::thread::current().id());
                }));
                let mut ids = ids.into_inner().unwrap();
                ids.sort_by_key(|id| format!("{id:?}"));
                ids.dedup();
                assert_eq!(ids.len(), threads, "{threads} threads");
            }
        }
    }

    #[test]
    fn run_each_declines_a_busy_or_single_thread_pool() {
        assert!(!Pool::new(1).run_each(&|_| panic!("ran on a pool of one")));
        let pool = Pool::new(2);
        let inner = Mutex::new(Vec::new());
        pool.run(4, true, &|_| {
            // Inside a job the pool is busy: nothing runs, and the caller hears so.
            inner.lock().unwrap().push(pool.run_each(&|_| panic!("ran inside a busy pool")));
        });
        assert_eq!(inner.into_inner().unwrap(), vec![false; 4]);
        let n = AtomicUsize::new(0);
        assert!(pool.run_each(&|_| {
            n.fetch_add(1, Relaxed);
        }));
        assert_eq!(n.load(Relaxed), 2, "the pool is free again afterwards");
    }

    #[test]
    fn a_panicking_unit_on_a_helper_reaches_the_caller() {
        let pool = Pool::new(2);
        let caller = std::thread::current().id();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(64, true, &|_| {
                if std::thread::current().id() != caller {
                    panic!("unit failed");
                }
                std::thread::sleep(Duration::from_micros(100));
            })
        }));
        // 64 units of 100 µs give the helper 6 ms to wake and take one.
        assert!(r.is_err(), "the helper's panic was lost");
        let sum = AtomicUsize::new(0);
        pool.run(8, false, &|u| {
            sum.fetch_add(u, Relaxed);
        });
        assert_eq!(sum.load(Relaxed), 28);
    }
}
