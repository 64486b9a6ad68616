//! A [`Store`] on its own thread, fed through a bounded queue.
//!
//! SQLite allows one writer at a time and rusqlite is blocking, so one thread owns the
//! connection and async tasks send it work. Feed results go into one transaction as they
//! arrive, and it stays open while more are about to follow: a refresh announces its result
//! once the document is downloaded, while it is parsed and matched. A transaction closes at
//! the latest [`GROUP_WINDOW`] after its first result was written, or at [`MAX_GROUP`]
//! results. Each commit writes every page it changed to the WAL again, and new entries land all
//! over the indexes: committing per feed, or per handful of feeds, would write the same index
//! pages hundreds of times in a cold poll. A result that fails rolls back alone: its group is
//! then written again with a savepoint per result, and the others still commit. Calls (reads,
//! alert bookkeeping) that arrive meanwhile run after the commit, in order. In the daemon, the
//! thread also brings the search index up to date whenever no work is queued, a slice at a time
//! ([`super::search`]), and gives back the memory that work took once it has stored and indexed
//! nothing for a while.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::entries::apply_in;
use super::{Applied, FeedResult, FetchState, Store};

/// Results committed in one transaction at most; it bounds the results a failing disk turns
/// away at once.
const MAX_GROUP: usize = 64;
/// How long a transaction stays open for more results after its first is written; what a
/// result (and a call queued behind it) waits for the commit, beyond the writing itself.
const GROUP_WINDOW: Duration = Duration::from_millis(200);
/// Parsed documents held for the writer, queued or in its open transaction, in bytes of text
/// (see [`held_bytes`]); the poll's fetchers pause when it is full. It is what lets parsing go
/// on while the writer is held up by a checkpoint (about 0.1 s per 64 MiB of WAL, fsyncs
/// included; `WAL_CHECKPOINT_BYTES` says how often). With a queue of 32 results (about 9 MiB of
/// the harness corpus's documents, with the 64 of an open transaction) the parsers sat idle at
/// every checkpoint. 16 MiB takes 4–6% off a cold poll of 1,000 feeds, for 4 MB more peak
/// memory there and 10 MB more at 10,000 feeds (87 MB), where the writer sets the pace and the
/// budget stays full; 24 MiB saved no more time and took 16 MB more at 10,000 feeds (103 MB).
/// A count alone would not bound memory: one document may hold 50 entries or 5,000.
const HELD_BYTES: usize = 16 << 20;
/// Jobs waiting for the writer, results and calls. The budget above holds about 160 of the
/// harness corpus's 50-entry documents, so this binds only for small documents (10 MB of 256
/// documents of 20 entries), where it keeps the count of waiting tasks bounded too.
const QUEUE_DEPTH: usize = 256;
/// How long the daemon's writer goes without storing feed results or indexing entries before
/// it gives memory back: long beside the gaps between one poll's results (milliseconds to
/// seconds), short beside the gaps between polls (minutes). After a release, the next write
/// reads the pages it needs again, from the system's file cache.
const RELEASE_AFTER: Duration = Duration::from_secs(10);

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
    /// The result's share of [`HELD_BYTES`], given back when the job is dropped after its
    /// commit.
    _held: OwnedSemaphorePermit,
}

/// What the writer thread does while it has nothing queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenIdle {
    /// The daemon's: works off the search index's backlog, and once it has stored and indexed
    /// nothing for a while (`RELEASE_AFTER`), gives back the memory that work left behind
    /// (SQLite's page cache, freed heap).
    Maintain,
    /// A one-shot command's: its run ends with its writes, and the index catches up at the next
    /// search or in the daemon.
    Wait,
}

/// Handle to the writer thread; clone it freely. The thread ends when every handle is dropped.
#[derive(Clone)]
pub struct StoreWriter {
    jobs: mpsc::Sender<Job>,
    announcements: Arc<Announcements>,
    /// Room left in [`HELD_BYTES`], in KiB.
    room: Arc<Semaphore>,
}

/// Results announced and not yet submitted, and a wake-up for the writer when none are left.
#[derive(Default)]
struct Announcements {
    pending: AtomicUsize,
    none_left: Notify,
}

/// A result on its way to the writer, from [`StoreWriter::announce`]. Submitting it through
/// [`Announcement::submit`] withdraws it; so does dropping it, when there will be no result.
#[must_use = "the writer keeps its transaction open while an announcement is alive"]
pub struct Announcement {
    writer: StoreWriter,
}

impl Announcement {
    /// [`StoreWriter::submit`] for the announced result.
    pub async fn submit(
        self,
        feed_id: i64,
        state: FetchState,
        result: FeedResult,
    ) -> anyhow::Result<Receipt> {
        let writer = self.writer.clone();
        // Withdrawn before the result is queued: a writer that finds neither commits at once,
        // where the other order could leave it waiting out its window for a result it has
        // already written.
        drop(self);
        writer.submit(feed_id, state, result).await
    }
}

impl Drop for Announcement {
    fn drop(&mut self) {
        let announcements = &self.writer.announcements;
        if announcements.pending.fetch_sub(1, Ordering::Relaxed) == 1 {
            announcements.none_left.notify_one();
        }
    }
}

/// What a [`Receipt`] holds, as context of the cause, when the database refused this result
/// alone (a constraint, a bug): it was rolled back and the rest of its transaction committed,
/// so the caller can go on with other feeds. Any other error is the writer's or the disk's.
#[derive(Debug, thiserror::Error)]
#[error("the database refused this feed's result (the other results were stored)")]
pub struct ResultRefused;

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
    pub fn spawn(store: Store, when_idle: WhenIdle) -> anyhow::Result<(StoreWriter, WriterThread)> {
        StoreWriter::spawn_with_timing(store, when_idle, GROUP_WINDOW, RELEASE_AFTER)
    }

    fn spawn_with_timing(
        store: Store,
        when_idle: WhenIdle,
        window: Duration,
        release_after: Duration,
    ) -> anyhow::Result<(StoreWriter, WriterThread)> {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let announcements = Arc::new(Announcements::default());
        let seen_by_writer = announcements.clone();
        let handle = std::thread::Builder::new()
            .name("feedhound-db".into())
            .spawn(move || {
                let inbox = Inbox::new(queue, seen_by_writer, window, release_after);
                serve(store, inbox, when_idle)
            })
            .context("cannot start the database writer thread")?;
        Ok((
            StoreWriter {
                jobs,
                announcements,
                room: Arc::new(Semaphore::new(HELD_KIB)),
            },
            WriterThread { handle },
        ))
    }

    /// Tells the writer a result will follow soon, so that it keeps its transaction open for
    /// it rather than committing without it. Announce only what is a moment away (a document
    /// being parsed), not a download: the open transaction holds the write lock. Results not
    /// announced are committed as soon as nothing else is queued.
    pub fn announce(&self) -> Announcement {
        self.announcements.pending.fetch_add(1, Ordering::Relaxed);
        Announcement {
            writer: self.clone(),
        }
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

    /// Queues one feed's result, waiting only for room (see [`HELD_BYTES`]); the receipt
    /// resolves once it is committed. A fetcher that lets go of its fetch slot between the two
    /// keeps the network busy while the writer works.
    pub async fn submit(
        &self,
        feed_id: i64,
        state: FetchState,
        result: FeedResult,
    ) -> anyhow::Result<Receipt> {
        // A document larger than the whole budget waits until nothing else is held.
        let kib = held_bytes(&result).div_ceil(1024).clamp(1, HELD_KIB);
        let held = Arc::clone(&self.room)
            .acquire_many_owned(kib as u32)
            .await
            .context("the database writer stopped")?;
        let (reply, answer) = oneshot::channel();
        self.send(Job::Apply(Box::new(ApplyJob {
            feed_id,
            state,
            result,
            reply,
            _held: held,
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

const HELD_KIB: usize = HELD_BYTES / 1024;

/// Roughly the memory a result holds: its text, and a little per entry and per mention.
fn held_bytes(result: &FeedResult) -> usize {
    let FeedResult::Parsed { feed, mentions, .. } = result else {
        return 0;
    };
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let entries: usize = feed
        .entries
        .iter()
        .map(|e| {
            std::mem::size_of_val(e)
                + e.dedup_key.len()
                + e.content_hash.len()
                + [&e.guid, &e.link, &e.canonical_link, &e.key_with_own_link]
                    .into_iter()
                    .chain([&e.title, &e.author, &e.summary, &e.content])
                    .map(text)
                    .sum::<usize>()
        })
        .sum();
    let mentions: usize = mentions
        .iter()
        .flatten()
        .map(|m| std::mem::size_of_val(m) + m.snippet.len())
        .sum();
    entries + mentions
}

/// The writer's end of the queue.
struct Inbox {
    queue: mpsc::Receiver<Job>,
    announcements: Arc<Announcements>,
    window: Duration,
    /// The daemon's [`RELEASE_AFTER`].
    release_after: Duration,
    /// Drives the waits for announced results and for [`RELEASE_AFTER`]; without one (it could
    /// not be built) the writer commits whenever its queue is empty and keeps its memory.
    timer: Option<tokio::runtime::Runtime>,
    /// Calls that arrived while a transaction was open; run after its commit.
    held_calls: Vec<Call>,
}

impl Inbox {
    fn new(
        queue: mpsc::Receiver<Job>,
        announcements: Arc<Announcements>,
        window: Duration,
        release_after: Duration,
    ) -> Inbox {
        let timer = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .inspect_err(|err| {
                tracing::warn!(error = %err, "the database writer commits feed results without waiting for announced ones (and the daemon's keeps its memory when idle): its timer could not be set up");
            })
            .ok();
        Inbox {
            queue,
            announcements,
            window,
            release_after,
            timer,
            held_calls: Vec::new(),
        }
    }

    /// Waits for the next job, or until every handle is dropped; with a `deadline`, at most
    /// until then.
    fn next_job(&mut self, deadline: Option<Instant>) -> Waited {
        match (deadline, &self.timer) {
            (Some(deadline), Some(timer)) => {
                let queue = &mut self.queue;
                timer.block_on(async {
                    tokio::select! {
                        job = queue.recv() => job.map_or(Waited::Closed, Waited::Arrived),
                        () = tokio::time::sleep_until(deadline.into()) => Waited::TimeUp,
                    }
                })
            }
            _ => self
                .queue
                .blocking_recv()
                .map_or(Waited::Closed, Waited::Arrived),
        }
    }

    /// The next result for a transaction open until `deadline`: one already queued, or one
    /// that arrives in time while results are announced. Calls met on the way are held.
    fn next_result_before(&mut self, deadline: Instant) -> Option<ApplyJob> {
        loop {
            if Instant::now() >= deadline {
                return None;
            }
            let job = match self.queue.try_recv() {
                Ok(job) => job,
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if self.announcements.pending.load(Ordering::Relaxed) == 0 {
                        return None;
                    }
                    let timer = self.timer.as_ref()?;
                    let (queue, announcements) = (&mut self.queue, &self.announcements);
                    let woke = timer.block_on(async {
                        tokio::select! {
                            job = queue.recv() => job.map_or(Woke::Closed, Woke::Arrived),
                            () = announcements.none_left.notified() => Woke::NoneAnnounced,
                            () = tokio::time::sleep_until(deadline.into()) => Woke::TimeUp,
                        }
                    });
                    match woke {
                        Woke::Arrived(job) => job,
                        Woke::Closed | Woke::TimeUp => return None,
                        // Looked at again above, with the queue: a result may be in it.
                        Woke::NoneAnnounced => continue,
                    }
                }
            };
            match job {
                Job::Apply(job) => return Some(*job),
                Job::Call(call) => self.held_calls.push(call),
            }
        }
    }
}

/// How a wait for the next job ended.
enum Waited {
    Arrived(Job),
    Closed,
    TimeUp,
}

/// Why a wait for an announced result ended.
enum Woke {
    Arrived(Job),
    Closed,
    NoneAnnounced,
    TimeUp,
}

fn serve(mut store: Store, mut inbox: Inbox, when_idle: WhenIdle) -> Store {
    let maintain = when_idle == WhenIdle::Maintain;
    // Whether the index may lack something: at start (a backlog from one-shot polls), after
    // feed results, which add and edit entries, and after other calls that write, as a page
    // read queues its entry for the index. Checking costs a read, no lock.
    let mut index_behind = maintain;
    // When the writer last stored feed results or indexed entries (or started: the config's
    // parse and sync left freed heap), while it holds the memory that took. Calls do not count:
    // the scheduler reads through the writer every 2 s, and `/healthz` writes a row each time.
    let mut last_work = maintain.then(Instant::now);
    loop {
        let first = match inbox.queue.try_recv() {
            Ok(job) => job,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) if index_behind => {
                index_behind = index_a_slice(&mut store);
                if index_behind {
                    last_work = Some(Instant::now());
                }
                continue;
            }
            Err(mpsc::error::TryRecvError::Empty) => {
                match inbox.next_job(last_work.map(|at| at + inbox.release_after)) {
                    Waited::Arrived(job) => job,
                    Waited::Closed => break,
                    Waited::TimeUp => {
                        release_memory(&store);
                        last_work = None;
                        continue;
                    }
                }
            }
        };
        match first {
            Job::Call(call) => {
                // Only a call that wrote: a catch-up waiting for another program's lock would
                // hold up the reads the scheduler calls for every few seconds.
                let changes = store.conn.total_changes();
                call(&mut store);
                if store.conn.total_changes() != changes {
                    index_behind = maintain;
                }
            }
            Job::Apply(job) => {
                write_group(&mut store, &mut inbox, *job);
                index_behind = maintain;
                last_work = maintain.then(Instant::now);
                for call in inbox.held_calls.drain(..) {
                    call(&mut store);
                }
            }
        }
    }
    store
}

/// Gives back what writing left in memory: SQLite's page cache (up to 16 MiB, see
/// `Store::configure`), then the heap the process has freed, which glibc keeps for reuse
/// rather than return to the system (the parsers' documents, the config's parse). On the
/// benchmark's idle daemon of 10,000 feeds, resident memory went from 43 to 26 MB.
fn release_memory(store: &Store) {
    if let Err(err) = store.conn.execute_batch("PRAGMA shrink_memory") {
        tracing::debug!(error = %err, "could not shrink the page cache");
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: takes a byte count, and works on the allocator's free lists under its own locks.
    unsafe {
        libc::malloc_trim(0);
    }
    tracing::debug!("idle: the database writer gave its page cache and freed heap back");
}

/// One slice of the search index's catch-up; returns whether there may be more to index. A
/// failure (a lock held by another program, the disk) is logged and left until the writer has
/// written the next feed results.
fn index_a_slice(store: &mut Store) -> bool {
    match store.index_search_slice() {
        Ok(indexed) => indexed > 0,
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "could not bring the search index up to date; trying again after the next write");
            false
        }
    }
}

/// Writes `first` and the results that follow it in one transaction, and answers each.
fn write_group(store: &mut Store, inbox: &mut Inbox, first: ApplyJob) {
    let mut group = vec![first];
    let mut deadline = None;
    let window = inbox.window;
    let arriving = || {
        // From the first result written, not from the wait for the lock.
        let deadline = *deadline.get_or_insert_with(|| Instant::now() + window);
        inbox.next_result_before(deadline)
    };
    // First without savepoints: inside a savepoint SQLite copies every page a result changes
    // into a sub-journal first (about 6% of a cold poll). Only when one result fails on its own
    // (not the disk, not a lock) is the group written again with a savepoint per result, so
    // that one rolls back alone and the others still commit.
    let outcome = match write_together(store, &mut group, arriving) {
        Ok(applied) => Ok(applied),
        Err(BatchFailure::OneResult(err)) => write_after_failure(store, &mut group, err),
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
            // The whole transaction rolled back, with the stories the map had recorded.
            store.titles.forget();
            let hint = super::storage_hint(&err)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            let message = format!("{err:#}{hint}");
            tracing::error!(error = %message, database = %store.path().display(), "writing a group of feed results failed");
            for job in group {
                let _ = job.reply.send(Err(anyhow::anyhow!(
                    "cannot write to the database {}: {message}",
                    store.path().display()
                )));
            }
        }
    }
}

type Outcomes = Vec<anyhow::Result<Applied>>;

enum BatchFailure {
    /// One result could not be recorded (a constraint, a bug), or the search index could not
    /// take the group: the results can be stored without the failing one, or without the index.
    OneResult(anyhow::Error),
    /// The database refused the transaction (lock, full disk, I/O): retrying now cannot help.
    Storage(anyhow::Error),
}

/// Every result of `group`, and those `arriving` adds to it (up to [`MAX_GROUP`]), in one
/// transaction; any failure rolls back all of them, and `group` then holds every result
/// written, for a second attempt.
fn write_together(
    store: &mut Store,
    group: &mut Vec<ApplyJob>,
    mut arriving: impl FnMut() -> Option<ApplyJob>,
) -> Result<Outcomes, BatchFailure> {
    let tx = begin(&mut store.conn)?;
    let mut applied = Vec::with_capacity(group.len());
    loop {
        while let Some(job) = group.get(applied.len()) {
            applied.push(Ok(write_one(&tx, &store.flagging, &mut store.titles, job)?));
        }
        if group.len() >= MAX_GROUP {
            break;
        }
        match arriving() {
            Some(job) => group.push(job),
            None => break,
        }
    }
    commit(tx).inspect_err(|_| store.titles.forget())?;
    Ok(applied)
}

fn begin(conn: &mut rusqlite::Connection) -> Result<rusqlite::Transaction<'_>, BatchFailure> {
    super::write_transaction(conn).map_err(|err| BatchFailure::Storage(err.into()))
}

fn write_one(
    tx: &rusqlite::Transaction<'_>,
    flagging: &super::flags::Flagging,
    titles: &mut super::titles::RecentTitles,
    job: &ApplyJob,
) -> Result<Applied, BatchFailure> {
    apply_in(tx, flagging, titles, job.feed_id, &job.state, &job.result).map_err(|err| {
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

/// After a group failed on its own (not the disk, not a lock). When the search index is what
/// refuses writes, it is set aside and the group is written again whole; otherwise, or when that
/// fails too, result by result, so that only a failing result is lost.
fn write_after_failure(
    store: &mut Store,
    group: &mut Vec<ApplyJob>,
    err: anyhow::Error,
) -> anyhow::Result<Outcomes> {
    let err = if store.set_aside_search_index_if_damaged(&err)? {
        match write_together(store, group, || None) {
            Ok(applied) => return Ok(applied),
            Err(BatchFailure::Storage(err)) => return Err(err),
            Err(BatchFailure::OneResult(err)) => err,
        }
    } else {
        err
    };
    tracing::debug!(error = %format!("{err:#}"), "a feed result failed; writing its group again one result at a time");
    write_each(store, group)
}

/// Every result in its own savepoint of one transaction: a failed one rolls back alone.
fn write_each(store: &mut Store, group: &[ApplyJob]) -> anyhow::Result<Outcomes> {
    let mut tx = super::write_transaction(&mut store.conn)?;
    let mut applied = Vec::with_capacity(group.len());
    for job in group {
        let savepoint = tx.savepoint()?;
        match apply_in(
            &savepoint,
            &store.flagging,
            &mut store.titles,
            job.feed_id,
            &job.state,
            &job.result,
        ) {
            Ok(outcome) => {
                // Failing, it ends the call, and the transaction rolls back.
                savepoint.commit()?;
                applied.push(Ok(outcome));
            }
            Err(err) => {
                drop(savepoint); // rolls this result back alone
                // A full disk or an I/O error can make SQLite roll back the whole transaction;
                // the results after it must not be written outside one.
                if tx.is_autocommit() {
                    return Err(err.context("SQLite rolled the whole group back"));
                }
                applied.push(Err(err.context(ResultRefused)));
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

    /// Keeps the writer thread in a call until `release` is sent to; returns once the call runs,
    /// with the task that waits for it.
    async fn hold_writer(
        writer: &StoreWriter,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
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
        (release, held)
    }

    #[tokio::test]
    async fn a_failing_result_rolls_back_alone_and_its_batch_mates_are_stored() {
        let (_dir, store, feed_id) = store_with_one_feed();
        let (writer, thread) = StoreWriter::spawn(store, WhenIdle::Wait).unwrap();
        // Hold the writer until all three results are queued, so they form one batch.
        let (release, held) = hold_writer(&writer).await;
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
    async fn results_wait_for_room_when_the_text_held_for_the_writer_would_pass_its_budget() {
        let (_dir, store, feed_id) = store_with_one_feed();
        let (writer, thread) = StoreWriter::spawn(store, WhenIdle::Wait).unwrap();
        let (release, held) = hold_writer(&writer).await;
        let sized = |key: &str, bytes: usize| {
            let mut result = document(key, "Harbour cranes");
            if let FeedResult::Parsed { feed, .. } = &mut result {
                feed.entries[0].content = Some("crane ".repeat(bytes / 6));
            }
            result
        };
        let large = move |key: &str| sized(key, HELD_BYTES * 2 / 5);
        let state = FetchState::at(Utc::now(), Some(200));
        let mut receipts = Vec::new();
        for key in ["g:1", "g:2"] {
            let submitted = writer.submit(feed_id, state.clone(), large(key));
            let receipt = tokio::time::timeout(PATIENCE, submitted).await;
            receipts.push(receipt.expect("room for two fifths of the budget").unwrap());
        }
        let third = tokio::spawn({
            let (writer, state) = (writer.clone(), state.clone());
            async move { writer.submit(feed_id, state, large("g:3")).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !third.is_finished(),
            "queued though four fifths of the budget are held"
        );
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        receipts.push(third.await.unwrap().unwrap());
        for receipt in receipts {
            assert_eq!(receipt.committed().await.unwrap().new, 1);
        }
        // Larger than the whole budget: it waits for nothing held, not forever.
        let oversized = writer.apply(feed_id, state, sized("g:4", HELD_BYTES + (1 << 20)));
        let applied = tokio::time::timeout(PATIENCE, oversized).await;
        assert_eq!(applied.expect("stored alone").unwrap().new, 1);
        drop(writer);
        thread.join().unwrap();
    }

    #[tokio::test]
    async fn a_result_waits_for_an_announced_one_at_most_the_window_then_commits_alone() {
        let (_dir, store, feed_id) = store_with_one_feed();
        let (writer, thread) = StoreWriter::spawn(store, WhenIdle::Wait).unwrap();
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

    /// A window no test waits out: what must happen sooner shows that something else ended the
    /// transaction.
    const LONG_WINDOW: Duration = Duration::from_secs(120);
    const PATIENCE: Duration = Duration::from_secs(30);

    fn entries_in(dir: &tempfile::TempDir) -> i64 {
        rusqlite::Connection::open(dir.path().join("db"))
            .unwrap()
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn with_nothing_announced_a_result_commits_at_once_and_withdrawing_the_last_announcement_commits_the_open_transaction()
     {
        let (dir, store, feed_id) = store_with_one_feed();
        let (writer, _thread) =
            StoreWriter::spawn_with_timing(store, WhenIdle::Wait, LONG_WINDOW, RELEASE_AFTER)
                .unwrap();
        let state = FetchState::at(Utc::now(), Some(200));
        let unannounced = writer.apply(feed_id, state.clone(), document("g:1", "Cranes"));
        let applied = tokio::time::timeout(PATIENCE, unannounced)
            .await
            .expect("nothing was announced: no reason to wait")
            .unwrap();
        assert_eq!(applied.new, 1);

        let never_submitted = writer.announce();
        let receipt = writer
            .submit(feed_id, state, document("g:2", "Ferries"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(entries_in(&dir), 1, "held open for the announced result");
        drop(never_submitted);
        let applied = tokio::time::timeout(PATIENCE, receipt.committed())
            .await
            .expect("the last announcement was withdrawn: the writer must commit")
            .unwrap();
        assert_eq!(applied.new, 1);
        assert_eq!(entries_in(&dir), 2);
    }

    #[tokio::test]
    async fn a_call_that_arrives_while_a_transaction_is_open_runs_after_its_commit() {
        let (dir, store, feed_id) = store_with_one_feed();
        let (writer, _thread) =
            StoreWriter::spawn_with_timing(store, WhenIdle::Wait, LONG_WINDOW, RELEASE_AFTER)
                .unwrap();
        let coming = writer.announce();
        let receipt = writer
            .submit(
                feed_id,
                FetchState::at(Utc::now(), Some(200)),
                document("g:1", "Cranes"),
            )
            .await
            .unwrap();
        let call = {
            let writer = writer.clone();
            tokio::spawn(async move {
                writer
                    .call(|store| {
                        Ok(store
                            .conn
                            .query_row("SELECT count(*) FROM entries", [], |r| {
                                r.get::<_, i64>(0)
                            })?)
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!call.is_finished(), "ran inside the open transaction");
        assert_eq!(entries_in(&dir), 0);
        drop(coming);
        let seen = tokio::time::timeout(PATIENCE, call)
            .await
            .expect("the call runs once the transaction is committed")
            .unwrap()
            .unwrap();
        assert_eq!(seen, 1, "the call sees the results committed before it");
        assert_eq!(receipt.committed().await.unwrap().new, 1);
    }

    #[tokio::test]
    async fn a_transaction_commits_at_its_size_limit_though_more_is_announced() {
        let (dir, store, feed_id) = store_with_one_feed();
        let (writer, _thread) =
            StoreWriter::spawn_with_timing(store, WhenIdle::Wait, LONG_WINDOW, RELEASE_AFTER)
                .unwrap();
        let _coming = writer.announce();
        let state = FetchState::at(Utc::now(), Some(200));
        let mut receipts = Vec::new();
        for n in 0..MAX_GROUP {
            let result = document(&format!("g:{n}"), &format!("Story {n}"));
            receipts.push(writer.submit(feed_id, state.clone(), result).await.unwrap());
        }
        for receipt in receipts {
            tokio::time::timeout(PATIENCE, receipt.committed())
                .await
                .expect("a full transaction is committed without waiting")
                .unwrap();
        }
        assert_eq!(entries_in(&dir), MAX_GROUP as i64);
    }

    #[tokio::test]
    async fn a_result_failing_in_a_transaction_kept_open_for_it_rolls_back_alone() {
        let (dir, store, feed_id) = store_with_one_feed();
        let (writer, thread) =
            StoreWriter::spawn_with_timing(store, WhenIdle::Wait, LONG_WINDOW, RELEASE_AFTER)
                .unwrap();
        let state = FetchState::at(Utc::now(), Some(200));
        let bad_coming = writer.announce();
        let second_coming = writer.announce();
        let first = writer
            .submit(feed_id, state.clone(), document("g:1", "Harbour cranes"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(entries_in(&dir), 0, "held open for the announced results");
        // No such feed: its entry's foreign key fails.
        let bad = bad_coming
            .submit(9_999, state.clone(), document("g:2", "Orphan"))
            .await
            .unwrap();
        let second = second_coming
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

    /// Waits up to 10 s for the idle writer to bring the backlog to 0; panics with `failure`.
    async fn wait_for_empty_backlog(writer: &StoreWriter, failure: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while backlog(writer).await > 0 {
            assert!(Instant::now() < deadline, "{failure}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn the_daemons_writer_indexes_new_entries_once_it_is_idle_and_a_one_shot_writer_does_not()
    {
        for indexing in [WhenIdle::Wait, WhenIdle::Maintain] {
            let (_dir, store, feed_id) = store_with_one_feed();
            let (writer, thread) = StoreWriter::spawn(store, indexing).unwrap();
            let state = FetchState::at(Utc::now(), Some(200));
            let applied = writer
                .apply(feed_id, state, document("g:1", "Harbour cranes"))
                .await
                .unwrap();
            assert_eq!(applied.new, 1);
            match indexing {
                WhenIdle::Wait => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    assert_eq!(backlog(&writer).await, 1, "left for a later catch-up");
                }
                WhenIdle::Maintain => {
                    wait_for_empty_backlog(&writer, "the idle writer did not index the new entry")
                        .await;
                }
            }
            drop(writer);
            thread.join().unwrap();
        }
    }

    /// Bytes the writer's connection holds in its page cache, read through a call.
    async fn page_cache_bytes(writer: &StoreWriter) -> i64 {
        writer.call(page_cache_bytes_of).await.unwrap()
    }

    fn page_cache_bytes_of(store: &mut Store) -> anyhow::Result<i64> {
        let (mut used, mut highwater) = (0, 0);
        // SAFETY: the handle is the open connection this thread owns, for the call.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                store.conn.handle(),
                rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
                &mut used,
                &mut highwater,
                0,
            )
        };
        anyhow::ensure!(rc == rusqlite::ffi::SQLITE_OK, "sqlite3_db_status: {rc}");
        Ok(i64::from(used))
    }

    #[tokio::test]
    async fn the_daemons_writer_frees_its_cache_while_only_called_and_a_one_shot_writer_does_not() {
        const SHORT_RELEASE: Duration = Duration::from_millis(400);
        for when_idle in [WhenIdle::Wait, WhenIdle::Maintain] {
            let (_dir, store, feed_id) = store_with_one_feed();
            let (writer, thread) =
                StoreWriter::spawn_with_timing(store, when_idle, GROUP_WINDOW, SHORT_RELEASE)
                    .unwrap();
            let mut result = document("g:0", "unused");
            if let FeedResult::Parsed { feed, .. } = &mut result {
                feed.entries = (0..400)
                    .map(|i| ParsedEntry {
                        dedup_key: format!("g:{i}"),
                        title: Some(format!("Harbour crane number {i} arrives")),
                        content: Some(format!("<p>{}</p>", "Cranes unload the ships. ".repeat(80))),
                        content_hash: format!("h:{i}"),
                        link_unique_in_doc: true,
                        ..Default::default()
                    })
                    .collect();
            }
            // The cache is read by a call queued behind the result, so it runs right after the
            // commit, however late this task is scheduled again.
            let (release, held) = hold_writer(&writer).await;
            let state = FetchState::at(Utc::now(), Some(200));
            let receipt = writer.submit(feed_id, state, result).await.unwrap();
            let after_commit = tokio::spawn({
                let writer = writer.clone();
                async move { writer.call(page_cache_bytes_of).await }
            });
            release.send(()).unwrap();
            held.await.unwrap().unwrap();
            assert_eq!(receipt.committed().await.unwrap().new, 400);
            let written = after_commit.await.unwrap().unwrap();
            assert!(written > 500_000, "{when_idle:?}: {written} bytes cached");
            // A `/healthz` write and a read every 100 ms (the scheduler reads every 2 s):
            // neither puts the release off. Watched for three times the wait, or as long as a
            // loaded machine might need.
            let watch_for = match when_idle {
                WhenIdle::Wait => SHORT_RELEASE * 3,
                WhenIdle::Maintain => Duration::from_secs(10),
            };
            let mut cached = written;
            let watch = Instant::now();
            while watch.elapsed() < watch_for && cached > written / 10 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                writer
                    .call(|store| store.probe_write(Duration::from_secs(1), Utc::now()))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                cached = page_cache_bytes(&writer).await;
            }
            match when_idle {
                WhenIdle::Wait => assert!(
                    cached > written / 2,
                    "the one-shot writer's cache went from {written} to {cached} bytes"
                ),
                WhenIdle::Maintain => assert!(
                    cached <= written / 10,
                    "the idle daemon writer's cache held {cached} of {written} bytes after {:?}",
                    watch.elapsed()
                ),
            }
            drop(writer);
            thread.join().unwrap();
        }
    }

    #[tokio::test]
    async fn the_daemons_writer_indexes_again_what_a_call_took_out_of_the_index() {
        let (_dir, mut store, feed_id) = store_with_one_feed();
        let state = FetchState::at(Utc::now(), Some(200));
        store
            .apply(feed_id, &state, &document("g:1", "Harbour cranes"))
            .unwrap();
        store.catch_up_search_index().unwrap();
        let (writer, thread) = StoreWriter::spawn(store, WhenIdle::Maintain).unwrap();
        // Past its first idle look at the index, which would find anything.
        assert_eq!(backlog(&writer).await, 0);
        tokio::time::sleep(Duration::from_millis(200)).await;
        // As a page read does: text of an indexed entry changes outside feed results.
        writer
            .call(|store| {
                store
                    .conn
                    .execute("UPDATE entries SET title = 'Harbour ferries'", [])?;
                Ok(())
            })
            .await
            .unwrap();
        wait_for_empty_backlog(&writer, "the idle writer did not index the entry again").await;
        drop(writer);
        thread.join().unwrap();
    }
}
