//! Direct writes (see [`DirectWrite`](crate::transport::outbox::DirectWrite)) put off until the
//! publisher has let go of its locks: a publish delivers under the broker's lock (that is what
//! keeps every connection's events in id order), but the `send` to an idle connection's socket
//! can happen after it, so that publishers on other threads do not wait out a system call.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use super::Connection;
use crate::transport::outbox::DirectClaim;

/// Claims waiting for the end of a [`deferring`] section, in order.
type Pending = Vec<PendingWrite>;

/// A claimed write not made yet. Made when dropped, whatever drops it (the flush, or unwinding
/// from a panic in an earlier write): a claim never ended would stall its connection.
struct PendingWrite {
    conn: Arc<Connection>,
    claim: Option<DirectClaim>,
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            claim.write(&self.conn.outbox);
        }
    }
}

thread_local! {
    /// The claims made on this thread inside [`deferring`], in order.
    static DEFERRED: RefCell<Option<Pending>> =
        const { RefCell::new(None) };
    /// Inside [`queueing`]: no direct writes on this thread.
    static QUEUEING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with direct writes off on this thread: every event is queued for its connection's
/// task. For bursts (a batch publish), where a connection's task writes several events at once
/// and the sends of different connections run on every core. `f` must not await.
pub(crate) fn queueing<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            QUEUEING.with(|q| q.set(self.0));
        }
    }
    let _restore = Restore(QUEUEING.with(|q| q.replace(true)));
    f()
}

/// Whether deliveries on this thread may write directly now (not inside [`queueing`]).
pub(super) fn allowed() -> bool {
    !QUEUEING.with(Cell::get)
}

/// Runs `f`; the direct writes that deliveries within it claim are made once it returns, in the
/// order they were claimed (each connection's events stay in order: a claimed outbox queues
/// what comes next until its claim ends). `f` must not await: it is a synchronous section.
pub(crate) fn deferring<R>(f: impl FnOnce() -> R) -> R {
    let outermost = DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_some() {
            false
        } else {
            *d = Some(Vec::new());
            true
        }
    });
    if !outermost {
        return f();
    }
    // Writes also when `f` panics: a claim left open would stall its connection.
    struct Flush;
    impl Drop for Flush {
        fn drop(&mut self) {
            let writes = DEFERRED.with(|d| d.borrow_mut().take()).unwrap_or_default();
            // Each is written as it is dropped, in order.
            drop(writes);
        }
    }
    let _flush = Flush;
    f()
}

/// Writes `claim` now, or at the end of the enclosing [`deferring`] section.
pub(super) fn submit(conn: &Arc<Connection>, claim: DirectClaim) {
    let now = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(pending) => {
            pending.push(PendingWrite {
                conn: conn.clone(),
                claim: Some(claim),
            });
            None
        }
        None => Some(claim),
    });
    if let Some(claim) = now {
        claim.write(&conn.outbox);
    }
}
