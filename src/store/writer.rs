//! A [`Store`] on its own thread, fed through a bounded queue.
//!
//! SQLite allows one writer at a time and rusqlite is blocking, so one thread owns the
//! connection and async tasks send it work. Feed results go into a transaction as they arrive,
//! and it stays open while more are on their way (fetches announce theirs), for at most
//! [`GROUP_WINDOW`] or [`MAX_GROUP`] results. Each commit writes every page it changed to the
//! WAL again, and new entries land all over the indexes: committing per feed, or per handful
//! of feeds, would write the same index pages to disk hundreds of times in a cold poll. A result
//! that fails rolls back alone: its group is then written again with a savepoint per result,
//! and the others still commit. In the daemon, the thread also brings the search index up to
//! date whenever no work is queued, a slice at a time ([`super::search`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};

use super::entries::apply_in;
use super::{Applied, FeedResult, FetchState, Store};

/// Results committed in one transaction at most; with [`QUEUE_DEPTH`], bounds the parsed
/// documents held in memory.
const MAX_GROUP: usize = 64;
/// How long a transaction waits for announced results before it commits: what the results
/// already in it wait for their acknowledgement, at most.
const GROUP_WINDOW: Duration = Duration::from_millis(200);
/// Results waiting for the writer; the poll's fetchers pause when it is full.
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

/// Whether the writer thread works off the search index's backlog while it has nothing else to
/// do. A one-shot command does not: its run ends with its writes, and the index catches up at
/// the next search or in the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleIndexing {
    On,
    Off,
}

/// Handle to the writer thread; clone it freely. The thread ends when every handle is dropped.
#[derive(Clone)]
pub struct StoreWriter {
    jobs: mpsc::Sender<Job>,
    announced: Arc<AtomicUsize>,
}

/// A result on its way to the writer, from [`StoreWriter::announce`]; drop it just before the
/// result is submitted, or as soon as it is known there will be none.
pub struct Announcement(Arc<AtomicUsize>);

impl Drop for Announcement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
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
    pub fn spawn(
        store: Store,
        indexing: IdleIndexing,
    ) -> anyhow::Result<(StoreWriter, WriterThread)> {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let announced = Arc::new(AtomicUsize::new(0));
        let inbox = Inbox {
            queue,
            announced: announced.clone(),
            clock: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .context("cannot start the database writer's timer")?,
        };
        let handle = std::thread::Builder::new()
            .name("feedhound-db".into())
            .spawn(move || serve(store, inbox, indexing))
            .context("cannot start the database writer thread")?;
        Ok((StoreWriter { jobs, announced }, WriterThread { handle }))
    }

    /// Tells the writer a result will follow soon (a fetch has begun), so that it keeps its
    /// transaction open for it rather than committing without it. Results not announced are
    /// committed as soon as nothing else is queued.
    pub fn announce(&self) -> Announcement {
        self.announced.fetch_add(1, Ordering::Release);
        Announcement(self.announced.clone())
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

/// The writer's end of the queue.
struct Inbox {
    queue: mpsc::Receiver<Job>,
    /// Results announced and not yet submitted.
    announced: Arc<AtomicUsize>,
    /// Drives the timeout while a transaction waits for announced results.
    clock: tokio::runtime::Runtime,
}

enum Next {
    Result(ApplyJob),
    Call(Call),
    /// Nothing queued, and nothing announced, or not in time.
    Nothing,
}

impl Inbox {
    /// The next job for an open transaction, waiting at most until `deadline`, and only when
    /// a result has been announced.
    fn next_before(&mut self, deadline: Instant) -> Next {
        let job = match self.queue.try_recv() {
            Ok(job) => Some(job),
            Err(_) if self.announced.load(Ordering::Acquire) == 0 => None,
            Err(_) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let queue = &mut self.queue;
                self.clock
                    .block_on(async { tokio::time::timeout(left, queue.recv()).await })
                    .ok()
                    .flatten()
            }
        };
        match job {
            Some(Job::Apply(job)) => Next::Result(*job),
            Some(Job::Call(call)) => Next::Call(call),
            None => Next::Nothing,
        }
    }
}

fn serve(mut store: Store, mut inbox: Inbox, indexing: IdleIndexing) -> Store {
    let idle_indexing = indexing == IdleIndexing::On;
    // Whether the index may lack something: at start (a backlog from one-shot polls) and after
    // feed results, the only writes that add or edit entries. Checking costs a read, no lock.
    let mut index_behind = idle_indexing;
    loop {
        let first = match inbox.queue.try_recv() {
            Ok(job) => job,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) if index_behind => {
                index_behind = index_a_slice(&mut store);
                continue;
            }
            Err(mpsc::error::TryRecvError::Empty) => match inbox.queue.blocking_recv() {
                Some(job) => job,
                None => break,
            },
        };
        match first {
            Job::Call(call) => call(&mut store),
            Job::Apply(job) => {
                let held_call = write_group(&mut store, &mut inbox, *job);
                index_behind = idle_indexing;
                if let Some(call) = held_call {
                    call(&mut store);
                }
            }
        }
    }
    store
}

/// One slice of the search index's catch-up; returns whether there may be more to index. A
/// failure (a lock held by another program, the disk) is logged and left until the writer has
/// written the next feed results.
fn index_a_slice(store: &mut Store) -> bool {
    match store.index_search_slice() {
        Ok(indexed) => indexed > 0,
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "could not bring the search index up to date; trying again after the next feed results are written");
            false
        }
    }
}

/// Writes `first` and the results that follow it in one transaction, and answers each. Returns
/// a call that arrived meanwhile: it runs after the commit.
fn write_group(store: &mut Store, inbox: &mut Inbox, first: ApplyJob) -> Option<Call> {
    let mut group = vec![first];
    let mut held_call = None;
    // First without savepoints: inside a savepoint SQLite copies every page a result changes
    // into a sub-journal first (about 6% of a cold poll). Only when one result fails on its own
    // (not the disk, not a lock) is the group written again with a savepoint per result, so
    // that one rolls back alone and the others still commit.
    let outcome = match write_arriving(store, inbox, &mut group, &mut held_call) {
        Ok(applied) => Ok(applied),
        Err(BatchFailure::OneResult(err)) => write_after_failure(store, &group, err),
        Err(BatchFailure::Storage(err)) => Err(err),
    };
    // Nothing is acknowledged before the commit: a caller told "stored" can rely on it.
    match outcome {
        Ok(applied) => {
            for (job, applied) in group.into_iter().zip(applied) {
                let _ = job.reply.send(applied);
            }
        }
        Err(err) => {
            let hint = super::storage_hint(&err)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            let message = format!("{err:#}{hint}");
            tracing::error!(error = %message, database = %store.path().display(), "writing a batch of feed results failed");
            for job in group {
                let _ = job.reply.send(Err(anyhow::anyhow!(
                    "cannot write to the database {}: {message}",
                    store.path().display()
                )));
            }
        }
    }
    held_call
}

type Outcomes = Vec<anyhow::Result<Applied>>;

enum BatchFailure {
    /// One result could not be recorded (a constraint, a bug), or the search index could not
    /// take the batch: the results can be stored without the failing one, or without the index.
    OneResult(anyhow::Error),
    /// The database refused the transaction (lock, full disk, I/O): retrying now cannot help.
    Storage(anyhow::Error),
}

/// Every result of `group`, and those that arrive while it is open, in one transaction; any
/// failure rolls back all of them. `group` holds every result written, for a second attempt.
fn write_arriving(
    store: &mut Store,
    inbox: &mut Inbox,
    group: &mut Vec<ApplyJob>,
    held_call: &mut Option<Call>,
) -> Result<Outcomes, BatchFailure> {
    let deadline = Instant::now() + GROUP_WINDOW;
    let tx = begin(&mut store.conn)?;
    let mut applied = Vec::with_capacity(MAX_GROUP);
    loop {
        applied.push(Ok(write_one(&tx, &store.flagging, &group[applied.len()])?));
        if group.len() == MAX_GROUP {
            break;
        }
        match inbox.next_before(deadline) {
            Next::Result(job) => group.push(job),
            Next::Call(call) => {
                *held_call = Some(call);
                break;
            }
            Next::Nothing => break,
        }
    }
    commit(tx)?;
    Ok(applied)
}

/// Every result in one transaction; any failure rolls back all of them.
fn write_all(store: &mut Store, batch: &[ApplyJob]) -> Result<Outcomes, BatchFailure> {
    let tx = begin(&mut store.conn)?;
    let applied = batch
        .iter()
        .map(|job| write_one(&tx, &store.flagging, job).map(Ok))
        .collect::<Result<_, BatchFailure>>()?;
    commit(tx)?;
    Ok(applied)
}

fn begin(conn: &mut rusqlite::Connection) -> Result<rusqlite::Transaction<'_>, BatchFailure> {
    super::write_transaction(conn).map_err(|err| BatchFailure::Storage(err.into()))
}

fn write_one(
    tx: &rusqlite::Transaction<'_>,
    flagging: &super::flags::Flagging,
    job: &ApplyJob,
) -> Result<Applied, BatchFailure> {
    apply_in(tx, flagging, job.feed_id, &job.state, &job.result).map_err(|err| {
        if super::storage_hint(&err).is_none() && !tx.is_autocommit() {
            BatchFailure::OneResult(err)
        } else {
            BatchFailure::Storage(err)
        }
    })
}

fn commit(tx: rusqlite::Transaction<'_>) -> Result<(), BatchFailure> {
    // An edit or a delete still writes to the search index (the triggers of migration 0008),
    // and FTS5 writes its part at the commit: a damaged index fails the commit, not the disk.
    tx.commit().map_err(|err| {
        let err = anyhow::Error::from(err);
        match super::storage_hint(&err) {
            Some(_) => BatchFailure::Storage(err),
            None => BatchFailure::OneResult(err),
        }
    })
}

/// After a batch failed on its own (not the disk, not a lock). When the search index is what
/// refuses writes, it is set aside and the batch is written again whole; otherwise, or when that
/// fails too, result by result, so that only a failing result is lost.
fn write_after_failure(
    store: &mut Store,
    batch: &[ApplyJob],
    err: anyhow::Error,
) -> anyhow::Result<Outcomes> {
    let err = if store.set_aside_search_index_if_damaged(&err)? {
        match write_all(store, batch) {
            Ok(applied) => return Ok(applied),
            Err(BatchFailure::Storage(err)) => return Err(err),
            Err(BatchFailure::OneResult(err)) => err,
        }
    } else {
        err
    };
    tracing::debug!(error = %format!("{err:#}"), "a feed result failed; writing its batch again one result at a time");
    write_each(store, batch)
}

/// Every result in its own savepoint of one transaction: a failed one rolls back alone.
fn write_each(store: &mut Store, batch: &[ApplyJob]) -> anyhow::Result<Outcomes> {
    let mut tx = super::write_transaction(&mut store.conn)?;
    let mut applied = Vec::with_capacity(batch.len());
    for job in batch {
        let savepoint = tx.savepoint()?;
        match apply_in(
            &savepoint,
            &store.flagging,
            job.feed_id,
            &job.state,
            &job.result,
        ) {
            Ok(outcome) => {
                savepoint.commit()?;
                applied.push(Ok(outcome));
            }
            Err(err) => {
                drop(savepoint); // rolls this result back alone
                // A full disk or an I/O error can make SQLite roll back the whole transaction;
                // the results after it must not be written outside one.
                if tx.is_autocommit() {
                    return Err(err.context("SQLite rolled the whole batch back"));
                }
                applied.push(Err(err));
            }
        }
    }
    tx.commit()?;
    Ok(applied)
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
    async fn a_failing_result_rolls_back_alone_and_its_batch_mates_are_stored() {
        let (_dir, store, feed_id) = store_with_one_feed();
        let (writer, thread) = StoreWriter::spawn(store, IdleIndexing::Off).unwrap();
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
        let mut store = thread.join().unwrap();
        store.catch_up_search_index().unwrap();
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

    #[tokio::test]
    async fn a_result_waits_for_an_announced_one_at_most_the_window_then_commits_alone() {
        let (_dir, store, feed_id) = store_with_one_feed();
        let (writer, thread) = StoreWriter::spawn(store, IdleIndexing::Off).unwrap();
        let never_submitted = writer.announce();
        let started = Instant::now();
        let applied = writer
            .apply(
                feed_id,
                FetchState::at(Utc::now(), Some(200)),
                document("g:1", "Harbour cranes"),
            )
            .await
            .unwrap();
        assert!(
            started.elapsed() >= GROUP_WINDOW,
            "committed after {:?}, without waiting for the announced result",
            started.elapsed()
        );
        assert_eq!(applied.new, 1);
        drop(never_submitted);
        drop(writer);
        let store = thread.join().unwrap();
        let entries: i64 = store
            .conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(entries, 1);
    }

    #[tokio::test]
    async fn a_result_failing_in_a_transaction_kept_open_for_it_rolls_back_alone() {
        let (_dir, store, feed_id) = store_with_one_feed();
        let (writer, thread) = StoreWriter::spawn(store, IdleIndexing::Off).unwrap();
        let state = FetchState::at(Utc::now(), Some(200));
        let bad_coming = writer.announce();
        let second_coming = writer.announce();
        let first = writer
            .submit(feed_id, state.clone(), document("g:1", "Harbour cranes"))
            .await
            .unwrap();
        drop(bad_coming);
        // No such feed: its entry's foreign key fails.
        let bad = writer
            .submit(9_999, state.clone(), document("g:2", "Orphan"))
            .await
            .unwrap();
        drop(second_coming);
        let second = writer
            .submit(feed_id, state, document("g:3", "Harbour ferries"))
            .await
            .unwrap();
        assert_eq!(first.committed().await.unwrap().new, 1);
        assert!(bad.committed().await.is_err());
        assert_eq!(second.committed().await.unwrap().new, 1);
        drop(writer);
        let store = thread.join().unwrap();
        let keys: Vec<String> = store
            .conn
            .prepare("SELECT dedup_key FROM entries ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keys, ["g:1", "g:3"]);
    }

    /// The search backlog as the writer thread sees it, between two of its jobs.
    async fn backlog(writer: &StoreWriter) -> i64 {
        writer
            .call(|store| Ok(store.service_gauges()?.search_backlog))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_daemons_writer_indexes_new_entries_once_it_is_idle_and_a_one_shot_writer_does_not()
    {
        for indexing in [IdleIndexing::Off, IdleIndexing::On] {
            let (_dir, store, feed_id) = store_with_one_feed();
            let (writer, thread) = StoreWriter::spawn(store, indexing).unwrap();
            let state = FetchState::at(Utc::now(), Some(200));
            let applied = writer
                .apply(feed_id, state, document("g:1", "Harbour cranes"))
                .await
                .unwrap();
            assert_eq!(applied.new, 1);
            match indexing {
                IdleIndexing::Off => {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    assert_eq!(backlog(&writer).await, 1, "left for a later catch-up");
                }
                IdleIndexing::On => {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                    while backlog(&writer).await > 0 {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "the idle writer did not index the new entry"
                        );
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                }
            }
            drop(writer);
            thread.join().unwrap();
        }
    }
}
