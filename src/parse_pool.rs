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

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, mpsc};

use anyhow::Context;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Runs closures on the pool's threads; the threads end when the pool is dropped.
pub struct ParsePool {
    jobs: mpsc::Sender<Job>,
}

/// The work panicked, or the pool's threads are gone.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Crashed(String);

impl ParsePool {
    /// Starts one thread per core the process may use.
    pub fn new() -> anyhow::Result<ParsePool> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name("feedhound-parse".into())
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held while waiting for the next job, not while it runs.
                        let next = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = next else { return };
                        job();
                    }
                })
                .context("cannot start a parsing thread")?;
        }
        Ok(ParsePool { jobs })
    }

    /// Runs `work` on a pool thread and returns its result; a panic in it is an error.
    pub async fn run<R, F>(&self, work: F) -> Result<R, Crashed>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(catch_unwind(AssertUnwindSafe(work)));
        });
        if self.jobs.send(job).is_err() {
            return Err(Crashed("the parsing threads have stopped".into()));
        }
        match answer.await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(panic)) => Err(Crashed(panic_message(panic.as_ref()))),
            Err(_) => Err(Crashed("a parsing thread stopped".into())),
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
        assert_eq!(crashed.to_string(), "malformed beyond repair");
        // Every thread still takes work: more jobs than threads, all answered.
        for n in 0..16 {
            assert_eq!(pool.run(move || n + 1).await.unwrap(), n + 1);
        }
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
