//! The threads that parse and match fetched documents: one per core, at a lower CPU priority
//! than the rest of feedhound.
//!
//! A poll's pace is set by the one database writer thread: every result waits for its commit,
//! and parsing needs less than half the CPU time writing does. On tokio's blocking pool, parses
//! ran at the writer's priority, and with eight fetches in flight on two cores the writer spent
//! 0.34 s of a 2.9 s cold poll (1,000 feeds) waiting for a core. At a lower priority, parses take
//! the CPU time the writer leaves. A fixed set of threads, rather than lowering the blocking
//! pool's own threads, because the blocking pool starts a new thread whenever none is idle, and a
//! low-priority thread that has finished its work is slow to say so: the pool grew to 28
//! threads, and the allocator's per-thread arenas with it (+14 MB peak memory).
//!
//! A document that parses very slowly (or never finishes, were a parser bug to allow it) must not
//! take the pool with it. When a caller has waited [`Patience::lend_after`] for its answer, the
//! pool lends one more thread, which serves the queue until it has been idle for a while, so the
//! other feeds keep being parsed; at most as many lent threads as regular ones. When a caller has
//! waited [`Patience::give_up_after`], it stops waiting and its feed records the error: the
//! thread cannot be stopped from outside and runs on, at the lowest priority.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// How long a lent thread waits for another job before it ends.
const LENT_THREAD_IDLE: Duration = Duration::from_secs(2);

/// Runs closures on the pool's threads; the threads end when the pool is dropped.
pub struct ParsePool {
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    patience: Patience,
}

struct Shared {
    queue: Mutex<mpsc::Receiver<Job>>,
    lent_threads: AtomicUsize,
    max_lent_threads: usize,
}

/// How long a caller waits before the pool lends a thread, and before it gives up.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub lend_after: Duration,
    pub give_up_after: Duration,
}

impl Default for Patience {
    /// A document at the default size cap (16 MiB, 6,850 entries) is parsed and stored in half a
    /// second here (a cold `feedhound poll` of it, in all); these
    /// leave room for larger caps and for a busy machine, where parsing runs at the lowest
    /// priority.
    fn default() -> Patience {
        Patience {
            lend_after: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
        }
    }
}

/// Why [`ParsePool::run`] has no result.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The work panicked, or the pool's threads are gone.
    #[error("{0}")]
    Crashed(String),
    #[error("no result after {} s", .0.as_secs())]
    TooSlow(Duration),
}

impl ParsePool {
    /// Starts one thread per core the process may use.
    pub fn new() -> anyhow::Result<ParsePool> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        ParsePool::with_threads(threads, Patience::default())
    }

    /// A pool of `threads` regular threads (at least one) that waits as `patience` says.
    pub fn with_threads(threads: usize, patience: Patience) -> anyhow::Result<ParsePool> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            lent_threads: AtomicUsize::new(0),
            max_lent_threads: threads.max(1),
        });
        for _ in 0..threads.max(1) {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("feedhound-parse".into())
                .spawn(move || {
                    lower_priority();
                    // The lock is held while waiting for the next job, not while it runs.
                    while let Some(job) = shared.next_job(None) {
                        job();
                    }
                })
                .context("cannot start a parsing thread")?;
        }
        Ok(ParsePool {
            jobs,
            shared,
            patience,
        })
    }

    /// Runs `work` on a pool thread and returns its result; a panic in it is an error, and so is
    /// waiting longer than [`Patience::give_up_after`].
    pub async fn run<R, F>(&self, work: F) -> Result<R, PoolError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, mut answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(catch_unwind(AssertUnwindSafe(work)));
        });
        if self.jobs.send(job).is_err() {
            return Err(PoolError::Crashed(
                "the parsing threads have stopped".into(),
            ));
        }
        let Patience {
            lend_after,
            give_up_after,
        } = self.patience;
        let answer = match tokio::time::timeout(lend_after, &mut answer).await {
            Ok(answer) => answer,
            Err(_) => {
                self.lend_a_thread();
                let rest = give_up_after.saturating_sub(lend_after);
                tokio::time::timeout(rest, answer)
                    .await
                    .map_err(|_| PoolError::TooSlow(give_up_after))?
            }
        };
        match answer {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(panic)) => Err(PoolError::Crashed(panic_message(panic.as_ref()))),
            Err(_) => Err(PoolError::Crashed("a parsing thread stopped".into())),
        }
    }

    /// Starts a thread that serves the queue until it has been idle for [`LENT_THREAD_IDLE`],
    /// unless as many are already running as the pool has regular threads.
    fn lend_a_thread(&self) {
        let shared = &self.shared;
        let counted = shared
            .lent_threads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < shared.max_lent_threads).then_some(n + 1)
            });
        if counted.is_err() {
            return;
        }
        let lent = Arc::clone(shared);
        let started = std::thread::Builder::new()
            .name("feedhound-parse".into())
            .spawn(move || {
                lower_priority();
                while let Some(job) = lent.next_job(Some(LENT_THREAD_IDLE)) {
                    job();
                }
                lent.lent_threads.fetch_sub(1, Ordering::SeqCst);
            });
        match started {
            Ok(_) => tracing::warn!(
                "a document has been parsing for over {} s; lending the parser one more thread",
                self.patience.lend_after.as_secs()
            ),
            Err(error) => {
                shared.lent_threads.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!(%error, "cannot start a parsing thread to stand in for a slow one");
            }
        }
    }
}

impl Shared {
    /// The next job, or None when the pool is gone or, with `idle_limit`, none came in time.
    fn next_job(&self, idle_limit: Option<Duration>) -> Option<Job> {
        let queue = self.queue.lock().ok()?;
        match idle_limit {
            None => queue.recv().ok(),
            Some(limit) => queue.recv_timeout(limit).ok(),
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(message), _) => (*message).to_owned(),
        (_, Some(message)) => message.clone(),
        _ => "a panic without a message".to_owned(),
    }
}

/// Steps the calling thread back as far as `nice` goes (19). Only Linux keeps the nice value per
/// thread; elsewhere it would slow the writer too, so there it is left alone. Best effort: if it
/// fails, parsing runs at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if !under_syscall_filter() {
        // SAFETY: nice(2) only changes the calling thread's scheduling priority.
        unsafe {
            libc::nice(19);
        }
    }
}

/// Whether a seccomp filter guards this thread's system calls. systemd's `SystemCallFilter=`
/// with `~@resources` (as in README's unit) kills the process on setpriority(2), and a filter
/// cannot be asked what it allows, so under any filter the priority is not touched. When the
/// status cannot be read, the answer is yes, for the same reason.
#[cfg(target_os = "linux")]
fn under_syscall_filter() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/thread-self/status") else {
        return true;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Seccomp:"))
        .is_none_or(|mode| mode.trim() != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_result_of_the_work() {
        let pool = ParsePool::new().unwrap();
        assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
    }

    #[tokio::test]
    async fn a_panic_is_an_error_and_the_pool_keeps_working() {
        let pool = ParsePool::new().unwrap();
        let crashed = pool
            .run(|| -> u32 { panic!("malformed beyond repair") })
            .await
            .unwrap_err();
        assert!(matches!(crashed, PoolError::Crashed(_)));
        assert_eq!(crashed.to_string(), "malformed beyond repair");
        // Every thread still takes work: more jobs than threads, all answered.
        for n in 0..16 {
            assert_eq!(pool.run(move || n + 1).await.unwrap(), n + 1);
        }
    }

    /// Work that runs until `release` is sent (or dropped).
    fn stuck_until(release: mpsc::Receiver<()>) -> impl FnOnce() -> &'static str + Send {
        move || {
            let _ = release.recv();
            "released"
        }
    }

    fn impatient(give_up_after: Duration) -> Patience {
        Patience {
            lend_after: Duration::from_millis(50),
            give_up_after,
        }
    }

    #[tokio::test]
    async fn a_stuck_document_does_not_stop_the_others() {
        let pool =
            Arc::new(ParsePool::with_threads(1, impatient(Duration::from_secs(60))).unwrap());
        let (release, stuck) = mpsc::channel();
        let slow = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.run(stuck_until(stuck)).await }
        });
        // The only regular thread is stuck; these are answered by the thread the pool lends.
        for n in 0..4 {
            let answered = tokio::time::timeout(Duration::from_secs(20), pool.run(move || n * 2))
                .await
                .expect("a job queued behind a stuck one is answered");
            assert_eq!(answered.unwrap(), n * 2);
        }
        release.send(()).unwrap();
        assert_eq!(slow.await.unwrap().unwrap(), "released");
    }

    #[tokio::test]
    async fn the_caller_gives_up_on_work_that_does_not_end() {
        let pool = ParsePool::with_threads(1, impatient(Duration::from_millis(200))).unwrap();
        let (release, stuck) = mpsc::channel::<()>();
        let error = pool.run(stuck_until(stuck)).await.unwrap_err();
        assert!(matches!(error, PoolError::TooSlow(d) if d == Duration::from_millis(200)));
        drop(release);
        // The pool still answers once the work has ended.
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn parsing_threads_run_at_a_lower_priority() {
        let pool = ParsePool::new().unwrap();
        // getpriority(PRIO_PROCESS, 0) reads the calling thread's nice value on Linux.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let here = nice();
        let there = pool.run(nice).await.unwrap();
        if under_syscall_filter() {
            assert_eq!(there, here, "under a syscall filter the priority stays");
        } else {
            assert!(
                there > here || there == 19,
                "parse thread nice {there}, caller {here}"
            );
        }
    }
}
