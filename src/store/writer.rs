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
/// Results waiting for the writer; the poll's fetchers pause when it is full. With the batch
/// being written and the fetches in flight, this bounds the parsed documents held in memory.
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

/// A queued feed result; see [`StoreWriter::submit`]. Dropping it does not cancel the write.
#[must_use = "a receipt tells whether the result was stored"]
pub struct Receipt(oneshot::Receiver<anyhow::Result<Applied>>);

impl Receipt {
    /// What recording the result changed, once it is committed.
    pub async fn committed(self) -> anyhow::Result<Applied> {
        self.0.await.context("the database writer stopped")?
    }
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
        self.submit(feed_id, state, result).await?.committed().await
    }

    /// Queues one feed's result, waiting only for room in the queue; the receipt resolves once
    /// it is committed. A fetcher that lets go of its fetch slot between the two keeps the
    /// network busy while the writer works, and the writer gets fuller batches.
    pub async fn submit(
        &self,
        feed_id: i64,
        state: FetchState,
        result: FeedResult,
    ) -> anyhow::Result<Receipt> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Apply(Box::new(ApplyJob {
            feed_id,
            state,
            result,
            reply,
        })))
        .await?;
        Ok(Receipt(answer))
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
        let mut jobs = batch.into_iter();
        while let Some(job) = jobs.next() {
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
            } else {
                drop(savepoint); // rolls this result back alone
            }
            // A full disk or an I/O error can make SQLite roll back the whole transaction; the
            // results after it must not be written outside one, and none of the batch is stored.
            if tx.is_autocommit() {
                let cause = applied
                    .err()
                    .unwrap_or_else(|| anyhow::anyhow!("no error given"));
                replies.push((reply, Ok(Applied::default())));
                replies.extend(jobs.map(|job| (job.reply, Ok(Applied::default()))));
                return Err(cause.context("SQLite rolled the whole batch back"));
            }
            replies.push((reply, applied));
        }
        super::search::index_queued(&tx)?;
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

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::model::{ParsedEntry, ParsedFeed};
    use crate::store::testing::store_with_one_feed;

    fn document(key: &str, title: &str) -> FeedResult {
        FeedResult::Parsed {
            etag: None,
            last_modified: None,
            body_hash: key.into(),
            feed: ParsedFeed {
                entries: vec![ParsedEntry {
                    dedup_key: key.into(),
                    title: Some(title.into()),
                    content_hash: key.into(),
                    link_unique_in_doc: true,
                    ..Default::default()
                }],
                ..Default::default()
            },
            mentions: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_failing_result_rolls_back_alone_and_its_batch_mates_are_stored_and_indexed() {
        let (_dir, store, feed_id) = store_with_one_feed();
        let (writer, thread) = StoreWriter::spawn(store).unwrap();
        // Hold the writer until all three results are queued, so they form one batch.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started, writer_busy) = oneshot::channel();
        let held = {
            let writer = writer.clone();
            tokio::spawn(async move {
                writer
                    .call(move |_| {
                        let _ = started.send(());
                        hold.recv().unwrap();
                        Ok(())
                    })
                    .await
            })
        };
        writer_busy.await.unwrap();
        let state = FetchState::at(Utc::now(), Some(200));
        let first = writer
            .submit(feed_id, state.clone(), document("g:1", "Harbour cranes"))
            .await
            .unwrap();
        // No such feed: its entry's foreign key fails.
        let bad = writer
            .submit(9_999, state.clone(), document("g:2", "Orphan"))
            .await
            .unwrap();
        let second = writer
            .submit(feed_id, state, document("g:3", "Harbour ferries"))
            .await
            .unwrap();
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        assert_eq!(first.committed().await.unwrap().new, 1);
        assert!(bad.committed().await.is_err());
        assert_eq!(second.committed().await.unwrap().new, 1);
        drop(writer);
        let store = thread.join().unwrap();
        let titles: Vec<String> = store
            .conn
            .prepare("SELECT e.title FROM entries_fts f JOIN entries e ON e.id = f.rowid WHERE entries_fts MATCH 'harbour' ORDER BY e.id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(titles, ["Harbour cranes", "Harbour ferries"]);
        let entries: i64 = store
            .conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(entries, 2);
        let stories: i64 = store
            .conn
            .query_row("SELECT count(*) FROM stories", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            stories, 2,
            "the failed result's story is rolled back with it"
        );
        store
            .conn
            .execute(
                "INSERT INTO entries_fts (entries_fts, rank) VALUES ('integrity-check', 1)",
                [],
            )
            .unwrap();
    }
}
