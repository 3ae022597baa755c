//! [`Lifecycle`]: the one tree of cancellation and tasks that a running Herald hangs on.
//!
//! A process (or a test) makes one root with [`Lifecycle::new`] and hands it down. Each part
//! takes a [`child`](Lifecycle::child) of what it was given, and spawns its tasks on it:
//!
//! ```text
//! root (the binary's main: cancelled on SIGINT or SIGTERM)
//! ├── server::serve           accept loop and connection tasks (on the root itself)
//! └── hub   (Hub::start)      heartbeat, sweep, expiry, presence, fan-out shards
//!     │                       (a graceful child: the root's cancel starts Hub::shutdown)
//!     ├── broker   (Broker::start)         Redis: the supervisor; memory: the durable writer
//!     └── presence (PresenceStore::start)  Redis: the presence report; memory: nothing
//! ```
//!
//! Every child shares its parent's [`TaskTracker`], so there is one tracker for the whole tree
//! and waiting for it ([`Lifecycle::wait`]) after shutdown waits for everything. A child's token
//! is a [`CancellationToken::child_token`]: cancelling the root reaches every loop, while a part
//! can stop its own subtree (the hub does at [`Hub::shutdown`](crate::Hub::shutdown)) and leave
//! the rest running. The hub is a [`graceful_child`](Lifecycle::graceful_child): the root's
//! cancel does not stop its loops at once (fan-out must go on until every stream has been
//! ended, or events counted as delivered would never be written); it starts
//! [`Hub::shutdown`](crate::Hub::shutdown), which ends the streams, then cancels the hub's
//! token (and the broker's and presence store's below it).
//!
//! Nothing in Herald spawns a task when it is constructed: background work starts in a function
//! that takes the lifecycle ([`Hub::start`](crate::Hub::start), [`Broker::start`](
//! crate::broker::Broker::start), [`PresenceStore::start`](crate::presence::PresenceStore::start),
//! [`server::serve`](crate::server::serve)), so what runs, and until when, is visible where the
//! parts are put together.
//!
//! Shutdown runs in this order ([`server::serve`](crate::server::serve) does it when the root is
//! cancelled): stop accepting; end every stream with `disconnected` and stop the hub's loops
//! ([`Hub::shutdown`](crate::Hub::shutdown), which lets fan-out finish and awaits them); shut
//! the presence store down (it awaits its task, then takes this node's presence out of the
//! cluster) and the broker (it awaits its tasks, then flushes the durable history or releases
//! its Redis connections); then wait for the remaining connection tasks, under the shutdown
//! timeout. An application that embeds the hub without `serve` cancels the root (the hub then
//! shuts down on its own) or calls [`Hub::shutdown`](crate::Hub::shutdown), then
//! [`Lifecycle::wait`].

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

/// One node of the lifecycle tree: a cancellation token, and the task tracker shared by the
/// whole tree. Cheap to clone (a clone is the same node, not a child).
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    /// Cancelled when this part must stop: by itself, or by any ancestor.
    token: CancellationToken,
    /// Every task of the tree, this node's and every other's.
    tasks: TaskTracker,
}

impl Lifecycle {
    /// A new root: a fresh token and an empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// A child node: its token is cancelled with this one's (and may be cancelled alone); its
    /// tasks go into the same tracker.
    #[must_use]
    pub fn child(&self) -> Self {
        Lifecycle {
            token: self.token.child_token(),
            tasks: self.tasks.clone(),
        }
    }

    /// A child that a cancelled parent does not stop at once: its token is its own (cancelled
    /// only by whoever owns the child), its tasks go into the same tracker. For a part whose
    /// stop is a sequence rather than a signal (the hub: end the streams, then stop the loops
    /// that fan events out to them): it watches [`cancelled`](Self::cancelled) of the parent and
    /// runs that sequence, which ends by cancelling its own token.
    #[must_use]
    pub fn graceful_child(&self) -> Self {
        Lifecycle {
            token: CancellationToken::new(),
            tasks: self.tasks.clone(),
        }
    }

    /// This node's token, for loops to select on.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Cancels this node and every node below it.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Whether this node (or an ancestor) was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once this node (or an ancestor) is cancelled.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// The tracker of the whole tree (to spawn on another runtime, for instance).
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Spawns `task` on the current runtime, tracked by the tree's tracker. The task must end on
    /// its own or when [`token`](Self::token) is cancelled, else [`wait`](Self::wait) waits for
    /// it until its timeout.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    #[track_caller]
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Closes the tracker (tasks may still be spawned; it only means "no more are expected")
    /// and waits up to `timeout` for every task of the tree to end. Returns whether they all
    /// did. Call it after cancelling the root and shutting the hub down.
    pub async fn wait(&self, timeout: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_child_stops_with_its_parent_and_alone_and_shares_the_tracker() {
        let root = Lifecycle::new();
        let hub = root.child();
        let engine = hub.child();
        engine.spawn({
            let token = engine.token().clone();
            async move { token.cancelled().await }
        });
        assert_eq!(root.tasks().len(), 1, "one tracker for the tree");
        hub.cancel();
        assert!(engine.is_cancelled(), "a child stops with its parent");
        assert!(
            !root.is_cancelled(),
            "a parent does not stop with its child"
        );
        assert!(root.wait(Duration::from_secs(5)).await);

        let other = root.child();
        root.cancel();
        assert!(other.is_cancelled(), "the root reaches every node");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_gives_up_after_its_timeout() {
        let root = Lifecycle::new();
        root.spawn(std::future::pending::<()>());
        let started = tokio::time::Instant::now();
        assert!(!root.wait(Duration::from_secs(3)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
