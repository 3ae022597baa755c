//! The memory presence store: one process, so this node's registry is the whole story.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use super::{
    ChannelPresence, ClusterStats, ConnectionQuery, LocalPresence, NodeConnection, PresenceStore,
    PresenceUpdate,
};
use crate::broker::{Broker, Publication, Published};
use crate::engine::EngineError;
use crate::lifecycle::Lifecycle;
use crate::target::{ChannelName, UserId};

/// Answers presence from this node's registry, and publishes every presence change: on one
/// node, a user's first and last connection here are their first and last in the hub. Keeps
/// nothing of its own and runs no task.
#[derive(Debug, Default)]
pub struct MemoryPresence {
    local: OnceLock<Arc<dyn LocalPresence>>,
}

impl MemoryPresence {
    /// A store for a hub of one node.
    pub fn new() -> Self {
        Self::default()
    }

    fn local(&self) -> Result<&Arc<dyn LocalPresence>, EngineError> {
        self.local.get().ok_or(EngineError::NotRunning)
    }
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    fn start(&self, local: Arc<dyn LocalPresence>, _lifecycle: &Lifecycle) {
        // A second start keeps the first registry: one store serves one hub.
        let _ = self.local.set(local);
    }

    async fn announce(
        &self,
        _update: &PresenceUpdate,
        publication: Publication,
        broker: &dyn Broker,
    ) -> Result<Option<Published>, EngineError> {
        broker.publish(publication).await.map(Some)
    }

    async fn cluster_stats(&self) -> Result<Option<ClusterStats>, EngineError> {
        Ok(None)
    }

    async fn channel_presence(
        &self,
        channel: &ChannelName,
    ) -> Result<ChannelPresence, EngineError> {
        Ok(self.local()?.channel_presence(channel))
    }

    async fn user_connections(&self, user: &UserId) -> Result<Vec<NodeConnection>, EngineError> {
        Ok(self
            .local()?
            .user_connections(user)
            .into_iter()
            .map(|connection| NodeConnection {
                node_id: None,
                connection,
            })
            .collect())
    }

    async fn connections(
        &self,
        query: &ConnectionQuery,
    ) -> Result<Vec<NodeConnection>, EngineError> {
        Ok(self
            .local()?
            .connections(query)
            .into_iter()
            .map(|connection| NodeConnection {
                node_id: None,
                connection,
            })
            .collect())
    }

    async fn shutdown(&self) {}
}
