//! The storage thread: commits records in groups, off the chat task.
//!
//! The hub sends every record with a ticket (1, 2, 3, …) and holds back
//! every delivery issued after it. This thread takes the first waiting
//! record and every record queued behind it (up to `MAX_BATCH`), commits
//! them in one transaction and reports the highest ticket committed. While a
//! commit runs, new records pile up and go into the next one, so the cost of
//! a commit is shared by every message that arrived during the previous one.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chat_core::Record;
use tokio::sync::mpsc as tokio_mpsc;
use tracing::{error, warn};

use crate::store::{Retention, Store};

/// The most records in one transaction.
const MAX_BATCH: usize = 1024;
/// How often retention is applied to storage.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The hub's handle on the storage thread.
#[derive(Debug)]
pub(crate) struct Storage {
    jobs: mpsc::Sender<(u64, Record)>,
    thread: JoinHandle<()>,
}

impl Storage {
    /// Starts the thread; committed tickets are reported on `acks`.
    pub(crate) fn spawn(
        mut store: Box<dyn Store>,
        retention: Retention,
        acks: tokio_mpsc::UnboundedSender<u64>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<(u64, Record)>();
        let thread =
            std::thread::Builder::new().name("chat-storage".to_owned()).spawn(move || {
                let mut last_prune = Instant::now();
                loop {
                    let first = match queue.recv_timeout(PRUNE_EVERY) {
                        Ok(job) => job,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            prune(store.as_mut(), &retention);
                            last_prune = Instant::now();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    let mut ticket = first.0;
                    let mut records = vec![first.1];
                    while records.len() < MAX_BATCH {
                        match queue.try_recv() {
                            Ok((next, record)) => {
                                ticket = next;
                                records.push(record);
                            }
                            Err(_) => break,
                        }
                    }
                    commit(store.as_mut(), &records);
                    if acks.send(ticket).is_err() {
                        // The chat task is gone; finish what is queued and stop.
                        let rest: Vec<Record> =
                            queue.try_iter().map(|(_, record)| record).collect();
                        if !rest.is_empty() {
                            commit(store.as_mut(), &rest);
                        }
                        break;
                    }
                    if last_prune.elapsed() >= PRUNE_EVERY {
                        prune(store.as_mut(), &retention);
                        last_prune = Instant::now();
                    }
                }
            })?;
        Ok(Self { jobs, thread })
    }

    /// Queues a record under `ticket`. False if the thread is gone.
    pub(crate) fn persist(&self, ticket: u64, record: Record) -> bool {
        self.jobs.send((ticket, record)).is_ok()
    }

    /// Stops taking records and waits until every queued one is committed.
    pub(crate) fn finish(self) {
        drop(self.jobs);
        if self.thread.join().is_err() {
            error!("the storage thread panicked");
        }
    }
}

/// Commits, retrying until the storage takes it: nothing is delivered that
/// is not stored, so a failing disk stalls the chat rather than lying.
fn commit(store: &mut dyn Store, records: &[Record]) {
    let mut delay = Duration::from_millis(10);
    while let Err(err) = store.commit(records) {
        error!(%err, records = records.len(), "commit failed; retrying");
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

fn prune(store: &mut dyn Store, retention: &Retention) {
    if let Err(err) = store.prune(retention, now_ms()) {
        warn!(%err, "pruning storage failed");
    }
}

/// Wall-clock milliseconds, for retention by age.
pub(crate) fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
