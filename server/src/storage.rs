//! The storage thread: commits records in groups, reads rooms back, and
//! keeps the file store, all off the chat task.
//!
//! The hub sends every record with a ticket (1, 2, 3, …) and holds back
//! every delivery issued after it. This thread takes the first waiting
//! record and every record queued behind it (up to `MAX_BATCH`), commits
//! them in one transaction and reports the highest ticket committed. While a
//! commit runs, new records pile up and go into the next one, so the cost of
//! a commit is shared by every message that arrived during the previous one.
//!
//! A commit that keeps failing (a full or broken disk) is not retried
//! forever: after a few quick tries the batch is reported
//! [`StorageEvent::Failed`], and every record after it fails unseen until
//! the hub, having taken them all back, says [`Job::Resume`]. So a failing
//! disk costs the messages that could not be kept, never the chat.
//!
//! Jobs run in the order sent, so a room read back sees every record sent
//! before the read.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chat_core::{Attachment, MessageKind, Record, RoomHistory, RoomName, SessionToken};
use tokio::sync::{mpsc as tokio_mpsc, oneshot};
use tracing::{error, info, warn};

use crate::files::Staged;
use crate::metrics::Metrics;
use crate::store::{DocUpdate, Retention, Store};

/// The most records in one transaction.
const MAX_BATCH: usize = 1024;
/// The waits between tries of a failing commit: a passing hiccup is
/// ridden out, a full disk is reported within a second.
const RETRIES: [Duration; 3] =
    [Duration::from_millis(20), Duration::from_millis(100), Duration::from_millis(400)];

/// What the hub asks of storage.
#[derive(Debug)]
pub(crate) enum Job {
    /// Store a record; with a staged upload, put the file in place first.
    Persist { ticket: u64, record: Record, file: Option<Staged> },
    /// Read a room back ([`StorageEvent::Loaded`]).
    Load(RoomName),
    /// Which rooms' retained messages carry this file
    /// ([`StorageEvent::FileRooms`], passing `token` and `reply` along).
    FileRooms { file: String, token: SessionToken, reply: oneshot::Sender<Option<Attachment>> },
    /// The hub took back every record it had sent: try records again.
    Resume,
    /// Keep an update of a shared document (with the ones queued right
    /// after it, in one commit).
    Doc(DocUpdate),
    /// Read a document back ([`StorageEvent::DocLoaded`]).
    LoadDoc { room: RoomName, doc: RoomName },
    /// Replace a document's stored updates with its state, which holds
    /// every one queued before (in cluster mode, every one up to the
    /// log's `upto`).
    CompactDoc { room: RoomName, doc: RoomName, state: Vec<u8>, upto: u64 },
    /// A document left memory (in cluster mode, stop following it).
    ForgetDoc { room: RoomName, doc: RoomName },
    /// In cluster mode, tell the other nodes an awareness message of a
    /// document (carets, who is here: never stored).
    Awareness { room: RoomName, doc: RoomName, message: Vec<u8> },
    /// Keep a document's whole state as one of its versions.
    KeepVersion { room: RoomName, doc: RoomName, ts: u64, state: Vec<u8> },
    /// List a document's versions (`Err`: they cannot be read now).
    ListVersions {
        room: RoomName,
        doc: RoomName,
        reply: oneshot::Sender<Result<Vec<crate::store::VersionInfo>, ()>>,
    },
    /// Read one version's state (`Ok(None)`: no such version).
    LoadVersion {
        room: RoomName,
        doc: RoomName,
        version: u64,
        reply: oneshot::Sender<Result<Option<Vec<u8>>, ()>>,
    },
}

/// What storage tells the hub.
#[derive(Debug)]
pub(crate) enum StorageEvent {
    /// Every record up to this ticket is stored.
    Committed(u64),
    /// Records up to this ticket that are not stored could not be, and will
    /// not be: take them back, then send [`Job::Resume`].
    Failed(u64),
    /// A room read back: `Ok(None)` if storage never heard of it.
    Loaded(RoomName, Result<Option<RoomHistory>, ()>),
    /// The rooms whose messages carry a file (empty if none, or if storage
    /// could not be read).
    FileRooms {
        rooms: Vec<(RoomName, Attachment)>,
        token: SessionToken,
        reply: oneshot::Sender<Option<Attachment>>,
    },
    /// The bytes the stored files take now.
    FileBytes(u64),
    /// A document read back: its stored updates, or `Err` if storage could
    /// not be read.
    DocLoaded { room: RoomName, doc: RoomName, result: Result<Vec<Vec<u8>>, ()> },
}

/// The hub's handle on the storage thread.
#[derive(Debug)]
pub(crate) struct Storage {
    jobs: mpsc::Sender<Job>,
    thread: JoinHandle<()>,
}

/// What the thread works with.
struct Worker {
    store: Box<dyn Store>,
    retention: Retention,
    /// Where uploaded files live, if the server takes them.
    files: Option<PathBuf>,
    events: tokio_mpsc::UnboundedSender<StorageEvent>,
    /// A commit failed and the hub has not said `Resume` yet.
    failing: bool,
    file_bytes: u64,
    /// How often retention is applied.
    prune_every: Duration,
    metrics: std::sync::Arc<Metrics>,
}

impl Storage {
    /// Starts the thread; what it has to say comes on `events`.
    pub(crate) fn spawn(
        store: Box<dyn Store>,
        retention: Retention,
        files: Option<PathBuf>,
        prune_every: Duration,
        events: tokio_mpsc::UnboundedSender<StorageEvent>,
        metrics: std::sync::Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let mut worker = Worker {
            store,
            retention,
            files,
            events,
            failing: false,
            file_bytes: 0,
            prune_every,
            metrics,
        };
        let thread = std::thread::Builder::new()
            .name("chat-storage".to_owned())
            .spawn(move || worker.run(&queue))?;
        Ok(Self { jobs, thread })
    }

    /// Queues a job. False if the thread is gone.
    pub(crate) fn send(&self, job: Job) -> bool {
        self.jobs.send(job).is_ok()
    }

    /// Stops taking jobs and waits until every queued one is done.
    pub(crate) fn finish(self) {
        drop(self.jobs);
        if self.thread.join().is_err() {
            error!("the storage thread panicked");
        }
    }
}

impl Worker {
    fn run(&mut self, queue: &mpsc::Receiver<Job>) {
        self.sweep_files();
        let mut last_prune = Instant::now();
        let mut waiting: Option<Job> = None;
        loop {
            let job = match waiting.take() {
                Some(job) => job,
                None => match queue.recv_timeout(self.prune_every) {
                    Ok(job) => job,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.prune();
                        last_prune = Instant::now();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
            };
            match job {
                // Records and documents' updates that queued together go
                // in one commit.
                job @ (Job::Persist { .. } | Job::Doc(_)) => {
                    let (mut batch, mut updates) = (Vec::new(), Vec::new());
                    let mut next = Some(job);
                    while let Some(job) = next.take() {
                        match job {
                            Job::Persist { ticket, record, file } => {
                                batch.push((ticket, record, file));
                            }
                            Job::Doc(update) => updates.push(update),
                            // Another kind of job: it runs after this batch.
                            other => {
                                waiting = Some(other);
                                break;
                            }
                        }
                        if batch.len() + updates.len() < MAX_BATCH {
                            next = queue.try_recv().ok();
                        }
                    }
                    if !self.persist(batch, &updates) {
                        // The chat task is gone; finish what is queued and stop.
                        while let Ok(job) = queue.try_recv() {
                            match job {
                                Job::Persist { ticket, record, file } => {
                                    self.persist(vec![(ticket, record, file)], &[]);
                                }
                                Job::Doc(update) => self.persist_docs(&[update]),
                                _ => {}
                            }
                        }
                        break;
                    }
                }
                Job::Load(room) => {
                    let loaded = self
                        .store
                        .room(&room, &self.retention, now_ms())
                        .map_err(|err| error!(%room, %err, "cannot read a room back"));
                    let _ = self.events.send(StorageEvent::Loaded(room, loaded));
                }
                Job::FileRooms { file, token, reply } => {
                    let rooms = self.store.file_rooms(&file).unwrap_or_else(|err| {
                        error!(%err, "cannot look a file up");
                        Vec::new()
                    });
                    let _ = self.events.send(StorageEvent::FileRooms { rooms, token, reply });
                }
                Job::Resume => {
                    if self.failing {
                        info!("storage is tried again");
                    }
                    self.failing = false;
                }
                Job::LoadDoc { room, doc } => {
                    let result = self
                        .store
                        .doc(&room, &doc)
                        .map_err(|err| error!(%room, %doc, %err, "cannot read a document back"));
                    let _ = self.events.send(StorageEvent::DocLoaded { room, doc, result });
                }
                Job::ForgetDoc { .. } | Job::Awareness { .. } => {}
                Job::KeepVersion { room, doc, ts, state } => {
                    if let Err(err) = self.store.keep_version(&room, &doc, ts, &state) {
                        warn!(%room, %doc, %err, "cannot keep a version of a document");
                    }
                }
                Job::ListVersions { room, doc, reply } => {
                    let listed = self.store.versions(&room, &doc);
                    let listed =
                        listed.map_err(|err| warn!(%room, %doc, %err, "cannot list versions"));
                    let _ = reply.send(listed);
                }
                Job::LoadVersion { room, doc, version, reply } => {
                    let read = self.store.version(&room, &doc, version);
                    let read =
                        read.map_err(|err| warn!(%room, %doc, %err, "cannot read a version"));
                    let _ = reply.send(read);
                }
                Job::CompactDoc { room, doc, state, .. } => {
                    if let Err(err) = self.store.compact_doc(&room, &doc, &state) {
                        warn!(%room, %doc, %err, "cannot compact a document; its updates stay");
                    }
                }
            }
            if last_prune.elapsed() >= self.prune_every {
                self.prune();
                last_prune = Instant::now();
            }
        }
    }

    /// Commits a batch of records (their files put in place first) with
    /// the documents' updates that queued among them, in one commit. False
    /// when the hub is gone.
    fn persist(
        &mut self,
        batch: Vec<(u64, Record, Option<Staged>)>,
        updates: &[DocUpdate],
    ) -> bool {
        let Some(last) = batch.last().map(|(ticket, _, _)| *ticket) else {
            self.persist_docs(updates);
            return true;
        };
        if self.failing {
            // Everything after a failure fails unseen until the hub has
            // taken it back; dropping the staged files removes them.
            // (Documents' updates are not refused: they are tried alone.)
            self.persist_docs(updates);
            return self.events.send(StorageEvent::Failed(last)).is_ok();
        }
        let (records, mut files): (Vec<Record>, Vec<Staged>) = {
            let mut records = Vec::with_capacity(batch.len());
            let mut files = Vec::new();
            for (_, record, file) in batch {
                records.push(record);
                files.extend(file);
            }
            (records, files)
        };
        let mut tries = RETRIES.iter();
        let began = Instant::now();
        let outcome = loop {
            let placed = files.iter_mut().try_for_each(Staged::place);
            let stored = placed
                .map_err(crate::StoreError::Io)
                .and_then(|()| self.store.commit_with_docs(&records, updates));
            match stored {
                Ok(()) => break Ok(()),
                Err(err) => {
                    for file in &mut files {
                        file.unplace();
                    }
                    match tries.next() {
                        Some(wait) => {
                            warn!(%err, records = records.len(), "commit failed; trying again");
                            std::thread::sleep(*wait);
                        }
                        None => break Err(err),
                    }
                }
            }
        };
        self.metrics.commit_seconds.observe(began.elapsed().as_secs_f64());
        self.metrics.commit_records.observe(records.len() as f64);
        match outcome {
            Ok(()) => {
                let added: u64 = files.iter_mut().map(Staged::keep).sum();
                if added > 0 {
                    self.file_bytes += added;
                    let _ = self.events.send(StorageEvent::FileBytes(self.file_bytes));
                }
                let told = self.events.send(StorageEvent::Committed(last)).is_ok();
                // A deleted message's file goes with it, now.
                let deleted = records.iter().any(|record| {
                    matches!(record, Record::Message(m) if matches!(m.kind, MessageKind::Delete(_)))
                });
                if deleted {
                    self.sweep_files();
                }
                told
            }
            Err(err) => {
                error!(%err, records = records.len(), "storage failed; these messages are refused");
                self.metrics.store_failures.inc();
                self.failing = true;
                self.persist_docs(updates);
                self.events.send(StorageEvent::Failed(last)).is_ok()
            }
        }
    }

    /// Commits updates of documents, trying again as records are tried.
    /// Updates that cannot be stored are logged: their documents live on
    /// in memory and in their editors, who send them again when they
    /// reconnect to a server that lacks them.
    fn persist_docs(&mut self, updates: &[DocUpdate]) {
        let mut tries = RETRIES.iter();
        loop {
            match self.store.commit_docs(updates) {
                Ok(()) => return,
                Err(err) => match tries.next() {
                    Some(wait) => {
                        warn!(%err, updates = updates.len(), "document commit failed; trying again");
                        std::thread::sleep(*wait);
                    }
                    None => {
                        error!(%err, updates = updates.len(), "document updates could not be stored");
                        return;
                    }
                },
            }
        }
    }

    fn prune(&mut self) {
        match self.store.prune(&self.retention, now_ms()) {
            Ok(true) => self.sweep_files(),
            Ok(false) => {}
            Err(err) => warn!(%err, "pruning storage failed"),
        }
    }

    /// Deletes stored files no retained message carries (their messages
    /// aged out, or a crash came between placing a file and storing its
    /// message), and counts what the rest take.
    fn sweep_files(&mut self) {
        let Some(dir) = self.files.clone() else {
            return;
        };
        let referenced: BTreeSet<String> = match self.store.files() {
            Ok(referenced) => referenced,
            Err(err) => {
                warn!(%err, "cannot list the files messages carry; nothing is swept");
                return;
            }
        };
        let (mut kept, mut removed) = (0u64, 0usize);
        let shards = std::fs::read_dir(&dir).into_iter().flatten().flatten();
        for shard in shards.filter(|entry| entry.file_name() != "tmp") {
            for entry in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if referenced.contains(&name) {
                    kept += entry.metadata().map_or(0, |meta| meta.len());
                } else if std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            info!(removed, "deleted files no message carries any more");
        }
        self.file_bytes = kept;
        let _ = self.events.send(StorageEvent::FileBytes(kept));
    }
}

/// Wall-clock milliseconds, for retention by age.
pub(crate) fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
