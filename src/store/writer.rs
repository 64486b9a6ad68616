//! A [`Store`] on its own thread, fed through a bounded queue.
//!
//! SQLite allows one writer at a time and rusqlite is blocking, so one thread owns the
//! connection and async tasks send it work. Feed results that queue up while a transaction is
//! being written are committed together in the next one: a commit (an fsync of the WAL) per
//! feed would make the disk, not the CPU, the limit of a cold poll. Each result gets its own
//! savepoint, so one that fails rolls back alone and the others of the batch still commit.

use std::thread::JoinHandle;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};

use super::entries::apply_in;
use super::{Applied, FeedResult, FetchState, Store};

/// Results committed in one transaction at most; bounds the time other work waits.
const MAX_BATCH: usize = 64;
/// Results waiting for the writer; the poll's fetchers pause when it is full, which bounds the
/// memory held by parsed documents.
const QUEUE_DEPTH: usize = 32;

type Call = Box<dyn FnOnce(&mut Store) + Send>;

enum Job {
    Apply(Box<ApplyJob>),
    Call(Call),
}

struct ApplyJob {
    feed_id: i64,
    state: FetchState,
    result: FeedResult,
    reply: oneshot::Sender<anyhow::Result<Applied>>,
}

/// Handle to the writer thread; clone it freely. The thread ends when every handle is dropped.
#[derive(Clone)]
pub struct StoreWriter {
    jobs: mpsc::Sender<Job>,
}

/// Joins the writer thread; obtained with [`StoreWriter::spawn`].
pub struct WriterThread {
    handle: JoinHandle<Store>,
}

impl WriterThread {
    /// Waits until every handle is dropped and queued work is done; returns the store.
    pub fn join(self) -> anyhow::Result<Store> {
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the database writer thread panicked"))
    }
}

impl StoreWriter {
    pub fn spawn(store: Store) -> anyhow::Result<(StoreWriter, WriterThread)> {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let handle = std::thread::Builder::new()
            .name("feedhound-db".into())
            .spawn(move || serve(store, queue))
            .context("cannot start the database writer thread")?;
        Ok((StoreWriter { jobs }, WriterThread { handle }))
    }

    /// Records one feed's result; resolves once it is committed.
    pub async fn apply(
        &self,
        feed_id: i64,
        state: FetchState,
        result: FeedResult,
    ) -> anyhow::Result<Applied> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Apply(Box::new(ApplyJob {
            feed_id,
            state,
            result,
            reply,
        })))
        .await?;
        answer.await.context("the database writer stopped")?
    }

    /// Runs `f` on the writer thread, after the work queued before it.
    pub async fn call<R, F>(&self, f: F) -> anyhow::Result<R>
    where
        F: FnOnce(&mut Store) -> anyhow::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Call(Box::new(move |store| {
            let _ = reply.send(f(store));
        })))
        .await?;
        answer.await.context("the database writer stopped")?
    }

    async fn send(&self, job: Job) -> anyhow::Result<()> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| anyhow::anyhow!("the database writer stopped"))
    }
}

fn serve(mut store: Store, mut queue: mpsc::Receiver<Job>) -> Store {
    let mut held_call: Option<Call> = None;
    while let Some(first) = queue.blocking_recv() {
        let mut batch = match first {
            Job::Call(call) => {
                call(&mut store);
                continue;
            }
            Job::Apply(job) => vec![*job],
        };
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(Job::Apply(job)) => batch.push(*job),
                Ok(Job::Call(call)) => {
                    held_call = Some(call);
                    break;
                }
                Err(_) => break,
            }
        }
        write_batch(&mut store, batch);
        if let Some(call) = held_call.take() {
            call(&mut store);
        }
    }
    store
}

fn write_batch(store: &mut Store, batch: Vec<ApplyJob>) {
    let mut replies = Vec::with_capacity(batch.len());
    let outcome = (|| -> anyhow::Result<()> {
        let mut tx = super::write_transaction(&mut store.conn)?;
        for job in batch {
            let ApplyJob {
                feed_id,
                state,
                result,
                reply,
            } = job;
            let savepoint = tx.savepoint()?;
            let applied = apply_in(&savepoint, &store.flagging, feed_id, &state, &result);
            if applied.is_ok() {
                savepoint.commit()?;
            } // else dropping the savepoint rolls this result back alone
            replies.push((reply, applied));
        }
        tx.commit()?;
        Ok(())
    })();
    // Nothing is acknowledged before the commit: a caller told "stored" can rely on it.
    match outcome {
        Ok(()) => {
            for (reply, applied) in replies {
                let _ = reply.send(applied);
            }
        }
        Err(err) => {
            let hint = super::storage_hint(&err)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            let message = format!("{err:#}{hint}");
            tracing::error!(error = %message, database = %store.path().display(), "writing a batch of feed results failed");
            for (reply, _) in replies {
                let _ = reply.send(Err(anyhow::anyhow!(
                    "cannot write to the database {}: {message}",
                    store.path().display()
                )));
            }
        }
    }
}
