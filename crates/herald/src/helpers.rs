//! Conveniences for backends over [`Hub::publish`]: send to a connection, a user, users, a
//! channel or everyone; the seeds' `notify_user`, `send_alert` and `send_update` shapes. Nothing
//! here is core: each is one publish with a fixed event name or payload shape, so the core
//! stays the same whatever conveniences are added.

use serde::Serialize;
use serde_json::json;

use crate::broker::{Publication, Published};
use crate::error::Result;
use crate::event::{EventName, Payload};
use crate::hub::Hub;
use crate::target::{ChannelName, ConnectionId, Target, Targets, UserId};

impl Hub {
    async fn send(
        &self,
        name: &str,
        data: &(impl Serialize + ?Sized),
        targets: Targets,
    ) -> Result<Published> {
        self.publish(Publication {
            name: EventName::new(name)?,
            payload: Payload::json(data)?,
            targets,
            idempotency: None,
        })
        .await
    }

    /// Sends `data` as event `event` to one connection.
    ///
    /// # Errors
    /// As [`Hub::publish`], and [`Error::Invalid`] for a bad event name or unencodable data.
    pub async fn send_to_connection(
        &self,
        connection: ConnectionId,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        self.send(event, data, Targets::one(Target::Connection(connection)))
            .await
    }

    /// Sends to every connection of a user.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn send_to_user(
        &self,
        user: &UserId,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        self.send(event, data, Targets::one(Target::User(user.clone())))
            .await
    }

    /// Sends to every connection of these users, each once.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`], and [`Error::Invalid`] for an empty list.
    pub async fn send_to_users(
        &self,
        users: &[UserId],
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        let targets = Targets::new(
            users.iter().cloned().map(Target::User).collect(),
            Default::default(),
        )?;
        self.send(event, data, targets).await
    }

    /// Sends to every subscriber of a channel.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn send_to_channel(
        &self,
        channel: &ChannelName,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        self.send(event, data, Targets::one(Target::Channel(channel.clone())))
            .await
    }

    /// Sends to every connection.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn broadcast(
        &self,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        self.send(event, data, Targets::broadcast()).await
    }

    /// Sends event `notification` with `{"message": message}` to a user.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn notify_user(&self, user: &UserId, message: &str) -> Result<Published> {
        self.send_to_user(user, "notification", &json!({ "message": message }))
            .await
    }

    /// Sends event `notification` with `{"message": message}` to everyone.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn notify_all(&self, message: &str) -> Result<Published> {
        self.broadcast("notification", &json!({ "message": message }))
            .await
    }

    /// Sends event `alert` with `{"message", "severity"}` to a user.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn send_alert(
        &self,
        user: &UserId,
        message: &str,
        severity: Severity,
    ) -> Result<Published> {
        self.send_to_user(
            user,
            "alert",
            &json!({ "message": message, "severity": severity }),
        )
        .await
    }

    /// Sends event `update` with `{"type": update_type, "payload": payload}` to a user.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn send_update(
        &self,
        user: &UserId,
        update_type: &str,
        payload: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        self.send_to_user(
            user,
            "update",
            &json!({ "type": update_type, "payload": payload }),
        )
        .await
    }
}

/// Severity of an alert sent with [`Hub::send_alert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Info,
    /// Success.
    Success,
    /// Needs attention.
    Warning,
    /// Something failed.
    Error,
}
