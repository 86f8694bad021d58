//! Group commit for the hot path: the two ledger writes of every order
//! (`create_with_reservation`, `save_with_stock`) from concurrent requests
//! share one transaction.
//!
//! Why: on SQLite the cost of a write is not SQLite's work but the trips
//! between the request's task and the database thread — BEGIN, the batch,
//! COMMIT, each a wake-up of another thread, each waiting behind whatever
//! else the request's worker thread is doing while the single writer
//! connection sits idle in between. One task that owns the writes runs the
//! queued ones back to back: a BEGIN and a COMMIT per group instead of per
//! write, and no request-side scheduling inside the writer's critical
//! section. On PostgreSQL a group is one commit (one WAL flush) for many
//! orders.
//!
//! Nothing is weaker for it: each caller is answered only after the
//! transaction holding its write has committed, so an `Ok` still means
//! durable. When any write of a group would fail (a short book, a changed
//! price, a lost compare-and-set, a driver error), the group's transaction
//! is rolled back and every write of the group runs again on its own, in
//! its own transaction, exactly as without grouping — which is also what
//! gives the failing one its precise error. Grouping is therefore only ever
//! an optimisation of the all-succeed case.

use checkout_domain::{BookId, Money, Order, OrderChange};
use checkout_ports::{LedgerError, RepositoryError, ReservationRequest, StockEffect};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::SeaOrmStore;
use crate::inventory::MarkedRow;

/// Most writes in one group: keeps a transaction's statements and the
/// rework after a failed group bounded.
pub(crate) const MAX_GROUP: usize = 64;

/// A ledger write waiting for the writer.
#[derive(Debug)]
pub(crate) enum LedgerWrite {
    Create {
        order: Order,
        changes: Vec<OrderChange>,
        reservation: ReservationRequest,
        prices: Vec<(BookId, Money)>,
    },
    Save {
        order: Order,
        expected_version: u64,
        changes: Vec<OrderChange>,
        effect: StockEffect,
    },
}

#[derive(Debug)]
struct Job {
    write: LedgerWrite,
    reply: oneshot::Sender<Result<(), LedgerError>>,
}

/// The handle requests send their ledger writes through. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct GroupWriter {
    jobs: mpsc::UnboundedSender<Job>,
}

impl GroupWriter {
    /// Starts the writer task on the current Tokio runtime. `store` must
    /// not itself hold a `GroupWriter` (the task would keep its own queue
    /// open and never end); the task ends when every handle is dropped.
    pub(crate) fn start(store: SeaOrmStore) -> GroupWriter {
        debug_assert!(store.group.is_none());
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(store, queue));
        GroupWriter { jobs }
    }

    /// Queues `write` and waits until the transaction holding it has
    /// committed (or it has failed).
    pub(crate) async fn submit(&self, write: LedgerWrite) -> Result<(), LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { write, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> LedgerError {
    LedgerError::Repository(RepositoryError::Unavailable(
        "the store's writer has stopped".into(),
    ))
}

async fn run(store: SeaOrmStore, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        commit_group(&store, std::mem::take(&mut group)).await;
    }
    debug!("ledger writer stopped");
}

async fn commit_group(store: &SeaOrmStore, group: Vec<Job>) {
    tracing::trace!(writes = group.len(), "ledger group");
    if group.len() > 1 {
        match try_group(store, &group).await {
            Ok(()) => {
                for job in group {
                    let _ = job.reply.send(Ok(()));
                }
                return;
            }
            Err(GroupFailed::Commit(e)) => {
                // The outcome of a failed COMMIT is the database's to know,
                // not ours: no write is retried, each caller hears of it.
                warn!(error = %e, writes = group.len(), "group commit failed");
                for job in group {
                    let _ =
                        job.reply
                            .send(Err(LedgerError::Repository(RepositoryError::Unavailable(
                                format!("commit failed: {e}"),
                            ))));
                }
                return;
            }
            Err(GroupFailed::Write) => {
                debug!(
                    writes = group.len(),
                    "a grouped write failed; running each on its own"
                );
            }
        }
    }
    for job in group {
        let outcome = run_solo(store, &job.write).await;
        let _ = job.reply.send(outcome);
    }
}

enum GroupFailed {
    /// A write would not go through as it is: nothing was committed.
    Write,
    /// Every write went through, then COMMIT failed.
    Commit(sea_orm::DbErr),
}

async fn try_group(store: &SeaOrmStore, group: &[Job]) -> Result<(), GroupFailed> {
    let writes = || group.iter().map(|j| &j.write);
    let Some((batch, mut check)) = store.group_batch(writes(), false) else {
        return Err(GroupFailed::Write);
    };
    let txn = store.begin_write().await.map_err(|_| GroupFailed::Write)?;
    store
        .lock_group_stock(&*txn, writes())
        .await
        .map_err(|_| GroupFailed::Write)?;
    let passed = match batch.run(&*txn, store.db_backend()).await {
        Ok(rows) => {
            let marked: Vec<MarkedRow> = rows.iter().filter_map(MarkedRow::read).collect();
            check.unreadable(rows.len() - marked.len());
            check.passed(marked.iter())
        }
        Err(e) => {
            debug!(error = %e, "group batch failed");
            false
        }
    };
    if !passed {
        let _ = txn.rollback().await;
        return Err(GroupFailed::Write);
    }
    txn.commit().await.map_err(GroupFailed::Commit)
}

async fn run_solo(store: &SeaOrmStore, write: &LedgerWrite) -> Result<(), LedgerError> {
    match write {
        LedgerWrite::Create {
            order,
            changes,
            reservation,
            prices,
        } => {
            store
                .create_with_reservation_solo(order, changes, reservation, prices)
                .await
        }
        LedgerWrite::Save {
            order,
            expected_version,
            changes,
            effect,
        } => {
            store
                .save_with_stock_solo(order, *expected_version, changes, *effect)
                .await
        }
    }
}
