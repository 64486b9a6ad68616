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
//! A document that parses very slowly, or never finishes (were a parser bug to allow it), must
//! not take the pool with it. When a caller has waited [`Patience::lend_after`] for its answer,
//! the pool lends one more thread, which serves the queue until it has been idle for
//! [`Patience::lent_idle`]: the other feeds keep being parsed. At most as many threads are lent
//! at once as the pool has of its own. When a document has been parsing for
//! [`Patience::give_up_after`], its caller stops waiting and its feed records the error. A thread
//! cannot be stopped from outside, so a stuck one runs on in the background; the pool remembers
//! the document and refuses it from then on, so that retries cannot pile stuck threads up until
//! none is left. A document that waited as long for a thread (every one stuck) is not refused
//! later, as it never ran: it is taken out of the queue, with its body, and its feed's poll is
//! recorded as deferred rather than failed (the feed did nothing wrong, so it does not back off)
//! and is tried again at its next poll.

use std::collections::{HashSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Runs closures on the pool's threads. When the pool is dropped its idle threads end, and busy
/// ones end after their job.
pub struct ParsePool {
    shared: Arc<Shared>,
    patience: Patience,
    /// Documents (by the caller's key) whose caller gave up on them.
    gave_up_on: Mutex<HashSet<String>>,
}

struct Shared {
    queue: Mutex<Queue>,
    work_ready: Condvar,
    max_lent_threads: usize,
}

struct Queue {
    /// With the id [`Shared::withdraw`] finds them by.
    jobs: VecDeque<(u64, Job)>,
    next_id: u64,
    lent_threads: usize,
    closed: bool,
}

/// How long a caller waits before the pool lends a thread and before it gives up, and how long a
/// lent thread waits for more work.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub lend_after: Duration,
    pub give_up_after: Duration,
    pub lent_idle: Duration,
}

impl Default for Patience {
    /// A cold `feedhound poll` of one 16 MiB document (the default `max_body_size`; 6,850
    /// entries) takes half a second on the benchmark machine, parsing and storing included.
    /// These leave room for larger caps and for a busy machine, where parsing runs last.
    fn default() -> Patience {
        Patience {
            lend_after: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
            lent_idle: Duration::from_secs(2),
        }
    }
}

/// Why [`ParsePool::run`] has no result.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The work panicked, or the pool's threads are gone.
    #[error("{0}")]
    Crashed(String),
    /// No answer within [`Patience::give_up_after`] of the work starting.
    #[error(
        "no parse result after {} s, so feedhound skips this document until it changes (is it huge or malformed?)",
        .0.as_secs()
    )]
    TooSlow(Duration),
    /// No thread took the work within [`Patience::give_up_after`]; it was withdrawn unrun.
    #[error(
        "no parsing thread was free for {} s (another document may be stuck); tried again at the next poll",
        .0.as_secs()
    )]
    NoThread(Duration),
    /// The caller gave up on this document before; it was not run again.
    #[error(
        "skipped: this document gave no parse result within {} s on an earlier try; it is parsed again when it changes",
        .0.as_secs()
    )]
    GaveUpBefore(Duration),
}

impl ParsePool {
    /// Starts one thread per core the process may use.
    pub fn new() -> anyhow::Result<ParsePool> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        ParsePool::with_threads(threads, Patience::default())
    }

    /// A pool of `threads` threads of its own (at least one) that waits as `patience` says.
    pub fn with_threads(threads: usize, patience: Patience) -> anyhow::Result<ParsePool> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                next_id: 0,
                lent_threads: 0,
                closed: false,
            }),
            work_ready: Condvar::new(),
            max_lent_threads: threads,
        });
        for _ in 0..threads {
            start_thread(Arc::clone(&shared), None).context("cannot start a parsing thread")?;
        }
        Ok(ParsePool {
            shared,
            patience,
            gave_up_on: Mutex::new(HashSet::new()),
        })
    }

    /// Runs `work` on a pool thread and returns its result. `document` names the input (its
    /// hash, say): after a caller gave up on a document, the pool refuses it without running it.
    /// A panic in `work` is an error, and so is no answer within [`Patience::give_up_after`].
    pub async fn run<R, F>(&self, document: &str, work: F) -> Result<R, PoolError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let Patience {
            lend_after,
            give_up_after,
            ..
        } = self.patience;
        if self
            .gave_up_on
            .lock()
            .is_ok_and(|set| set.contains(document))
        {
            return Err(PoolError::GaveUpBefore(give_up_after));
        }
        let (reply, mut answer) = oneshot::channel();
        let (started, mut has_started) = oneshot::channel();
        let job = self.shared.push(Box::new(move || {
            // The caller gave up while this waited in the queue: nobody wants the result.
            if reply.is_closed() {
                return;
            }
            let _ = started.send(());
            let _ = reply.send(catch_unwind(AssertUnwindSafe(work)));
        }))?;
        let lend_at = tokio::time::Instant::now() + lend_after;
        let mut lent = false;
        // The limit runs first for the wait for a thread, then again from the start of the
        // work: a stuck document ahead in the queue is not this one's fault.
        let mut started = false;
        let mut deadline = tokio::time::Instant::now() + give_up_after;
        loop {
            tokio::select! {
                biased;
                answer = &mut answer => {
                    return match answer {
                        Ok(Ok(result)) => Ok(result),
                        Ok(Err(panic)) => Err(PoolError::Crashed(panic_message(panic.as_ref()))),
                        Err(_) => Err(PoolError::Crashed("a parsing thread stopped".into())),
                    };
                }
                // An error means the job was dropped unrun; `answer` then says why.
                _ = &mut has_started, if !started => {
                    started = true;
                    deadline = tokio::time::Instant::now() + give_up_after;
                }
                () = tokio::time::sleep_until(lend_at), if !lent => {
                    self.lend_a_thread();
                    lent = true;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if started {
                        if let Ok(mut set) = self.gave_up_on.lock() {
                            set.insert(document.to_owned());
                        }
                        return Err(PoolError::TooSlow(give_up_after));
                    }
                    if self.shared.withdraw(job) {
                        return Err(PoolError::NoThread(give_up_after));
                    }
                    // A thread took it meanwhile: it is starting; wait for it as for any other.
                    started = true;
                    deadline = tokio::time::Instant::now() + give_up_after;
                }
            }
        }
    }

    /// Starts a thread that serves the queue until it has been idle for
    /// [`Patience::lent_idle`], unless as many are lent already as the pool has of its own.
    fn lend_a_thread(&self) {
        let shared = &self.shared;
        match shared.queue.lock() {
            Ok(mut queue) if queue.lent_threads < shared.max_lent_threads => {
                queue.lent_threads += 1;
            }
            _ => return,
        }
        match start_thread(Arc::clone(shared), Some(self.patience.lent_idle)) {
            Ok(_) => tracing::warn!(
                "a document has waited {} s for the parser; lending it one more thread",
                self.patience.lend_after.as_secs()
            ),
            Err(error) => {
                if let Ok(mut queue) = shared.queue.lock() {
                    queue.lent_threads -= 1;
                }
                tracing::warn!(%error, "cannot start a parsing thread to stand in for a slow one");
            }
        }
    }

    #[cfg(test)]
    fn lent_threads(&self) -> usize {
        self.shared.queue.lock().unwrap().lent_threads
    }
}

impl Drop for ParsePool {
    fn drop(&mut self) {
        if let Ok(mut queue) = self.shared.queue.lock() {
            queue.closed = true;
        }
        self.shared.work_ready.notify_all();
    }
}

impl Shared {
    /// Queues `job`; returns its id.
    fn push(&self, job: Job) -> Result<u64, PoolError> {
        let mut queue = self
            .queue
            .lock()
            .map_err(|_| PoolError::Crashed("the parsing threads have stopped".into()))?;
        let id = queue.next_id;
        queue.next_id += 1;
        queue.jobs.push_back((id, job));
        drop(queue);
        self.work_ready.notify_one();
        Ok(id)
    }

    /// Drops job `id` if no thread has taken it yet; false if one has.
    fn withdraw(&self, id: u64) -> bool {
        let Ok(mut queue) = self.queue.lock() else {
            return false;
        };
        let before = queue.jobs.len();
        queue.jobs.retain(|(queued, _)| *queued != id);
        queue.jobs.len() < before
    }

    /// The next job; None when the pool is gone or, for a lent thread (`lent_idle` given), when
    /// none came within that time. A lent thread is uncounted under the same lock that decides
    /// it ends, so the pool never counts one that will take no more work.
    fn next_job(&self, lent_idle: Option<Duration>) -> Option<Job> {
        let deadline = lent_idle.map(|idle| Instant::now() + idle);
        let mut queue = self.queue.lock().ok()?;
        loop {
            if let Some((_, job)) = queue.jobs.pop_front() {
                return Some(job);
            }
            let now = Instant::now();
            if queue.closed || deadline.is_some_and(|deadline| now >= deadline) {
                if deadline.is_some() {
                    queue.lent_threads -= 1;
                }
                return None;
            }
            queue = match deadline {
                None => self.work_ready.wait(queue).ok()?,
                Some(deadline) => self.work_ready.wait_timeout(queue, deadline - now).ok()?.0,
            };
        }
    }
}

/// A thread that serves the queue at a lower priority: for good when `lent_idle` is None, else
/// until it has waited that long for work (see [`Shared::next_job`]).
fn start_thread(shared: Arc<Shared>, lent_idle: Option<Duration>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("feedhound-parse".into())
        .spawn(move || {
            lower_priority();
            while let Some(job) = shared.next_job(lent_idle) {
                job();
            }
        })
        .map(drop)
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
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    #[tokio::test]
    async fn returns_the_result_of_the_work() {
        let pool = ParsePool::new().unwrap();
        assert_eq!(pool.run("doc", || 6 * 7).await.unwrap(), 42);
    }

    #[tokio::test]
    async fn a_panic_is_an_error_and_the_pool_keeps_working() {
        let pool = ParsePool::new().unwrap();
        let crashed = pool
            .run("doc", || -> u32 { panic!("malformed beyond repair") })
            .await
            .unwrap_err();
        assert!(matches!(crashed, PoolError::Crashed(_)));
        assert_eq!(crashed.to_string(), "malformed beyond repair");
        // Every thread still takes work: more jobs than threads, all answered.
        for n in 0..16 {
            assert_eq!(pool.run("doc", move || n + 1).await.unwrap(), n + 1);
        }
    }

    fn patience(lend_after: Duration, give_up_after: Duration) -> Patience {
        Patience {
            lend_after,
            give_up_after,
            lent_idle: Duration::from_millis(100),
        }
    }

    /// Queues work on `pool` that runs until `release` is sent (or dropped), and returns once
    /// a thread has started it.
    async fn stuck(
        pool: &Arc<ParsePool>,
        document: &'static str,
        release: mpsc::Receiver<()>,
    ) -> tokio::task::JoinHandle<Result<&'static str, PoolError>> {
        let (started, has_started) = oneshot::channel();
        let pool = Arc::clone(pool);
        let caller = tokio::spawn(async move {
            pool.run(document, move || {
                let _ = started.send(());
                let _ = release.recv();
                "released"
            })
            .await
        });
        has_started.await.expect("the stuck work starts");
        caller
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check() {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_stuck_document_does_not_stop_the_others_and_the_lent_thread_ends() {
        let one_thread = patience(Duration::from_millis(50), Duration::from_secs(60));
        let pool = Arc::new(ParsePool::with_threads(1, one_thread).unwrap());
        let (release, held) = mpsc::channel();
        let slow = stuck(&pool, "slow", held).await;
        // The pool's only thread is stuck: these are answered by the thread it lends.
        for n in 0..4 {
            let answered =
                tokio::time::timeout(Duration::from_secs(20), pool.run("quick", move || n * 2))
                    .await
                    .expect("work queued behind a stuck document is answered");
            assert_eq!(answered.unwrap(), n * 2);
        }
        assert_eq!(pool.lent_threads(), 1);
        release.send(()).unwrap();
        assert_eq!(slow.await.unwrap().unwrap(), "released");
        eventually("the lent thread ends once idle", || {
            pool.lent_threads() == 0
        })
        .await;
    }

    #[tokio::test]
    async fn no_more_threads_are_lent_than_the_pool_has() {
        let one_thread = patience(Duration::from_millis(50), Duration::from_millis(500));
        let pool = Arc::new(ParsePool::with_threads(1, one_thread).unwrap());
        let (release_first, held_first) = mpsc::channel();
        let (release_second, held_second) = mpsc::channel();
        let first = stuck(&pool, "first", held_first).await;
        // Taken by the lent thread, which gets stuck too.
        let second = stuck(&pool, "second", held_second).await;
        assert_eq!(pool.lent_threads(), 1);
        let third = pool.run("third", || ()).await.unwrap_err();
        assert!(matches!(third, PoolError::NoThread(_)), "{third:?}");
        assert_eq!(pool.lent_threads(), 1);
        drop((release_first, release_second));
        assert!(matches!(first.await.unwrap(), Err(PoolError::TooSlow(_))));
        assert!(matches!(second.await.unwrap(), Err(PoolError::TooSlow(_))));
    }

    #[tokio::test]
    async fn the_caller_gives_up_and_the_document_is_refused_from_then_on() {
        // No lending here: the pool's one thread stays stuck until released.
        let never_lend = patience(Duration::from_secs(60), Duration::from_secs(1));
        let pool = Arc::new(ParsePool::with_threads(1, never_lend).unwrap());
        let (release, held) = mpsc::channel::<()>();
        let slow = stuck(&pool, "slow", held).await;
        let queued_ran = Arc::new(AtomicBool::new(false));
        let ran = Arc::clone(&queued_ran);
        let queued = pool.run("queued", move || ran.store(true, Ordering::SeqCst));
        assert!(matches!(queued.await, Err(PoolError::NoThread(d)) if d == Duration::from_secs(1)));
        assert!(matches!(slow.await.unwrap(), Err(PoolError::TooSlow(_))));

        let again = pool.run("slow", || "parsed").await.unwrap_err();
        assert!(matches!(again, PoolError::GaveUpBefore(_)), "{again:?}");

        drop(release);
        assert_eq!(pool.run("other", || "parsed").await.unwrap(), "parsed");
        assert!(
            !queued_ran.load(Ordering::SeqCst),
            "work whose caller gave up is withdrawn"
        );
        // It never ran, so it was not the document's fault: it is taken again.
        assert_eq!(pool.run("queued", || "parsed").await.unwrap(), "parsed");
    }

    #[tokio::test]
    async fn the_time_limit_counts_from_when_parsing_starts_not_from_the_queue() {
        let never_lend = patience(Duration::from_secs(60), Duration::from_secs(6));
        let pool = Arc::new(ParsePool::with_threads(1, never_lend).unwrap());
        let (release, held) = mpsc::channel();
        let slow = stuck(&pool, "slow", held).await;
        // Waits 3 s for the thread, then parses for 4 s: 7 s in all, 4 s of it parsing.
        let patient = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move {
                pool.run("patient", || {
                    std::thread::sleep(Duration::from_secs(4));
                    "parsed"
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        release.send(()).unwrap();
        assert_eq!(slow.await.unwrap().unwrap(), "released");
        assert_eq!(patient.await.unwrap().unwrap(), "parsed");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn parsing_threads_run_at_a_lower_priority() {
        let pool = ParsePool::new().unwrap();
        // getpriority(PRIO_PROCESS, 0) reads the calling thread's nice value on Linux.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let here = nice();
        let there = pool.run("doc", nice).await.unwrap();
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
