//! Conveniences for backends over [`Hub::publish`]: send to a connection, a user, users, a
//! channel or everyone, and the helpers of the hand-written SSE layers teams migrate from, with
//! their names, argument orders and payloads (`notify_user`, `send_alert`, `send_notification`,
//! the domain helpers such as `send_payment_notification`…). Nothing here is core: each is one
//! publish with a fixed event name or payload shape, so the core stays the same whatever
//! conveniences are added.
//!
//! ## The wire contract
//!
//! The same in the TypeScript publisher (`@herald/client`), the Python one (`herald-client`) and
//! here, so that a subscriber cannot tell which one published:
//!
//! | Call | Event | Data |
//! |---|---|---|
//! | [`notify_user(user, message, type, data)`](Hub::notify_user), [`notify_all(message, type, data)`](Hub::notify_all) | `type` (default `notification`) | `{"message": message, ...data}` when `data` is an object, `{"message", "data"}` for any other value, `{"message"}` without |
//! | [`send_alert(user, message, severity)`](Hub::send_alert) | `alert` | `{"message", "severity"}` (default `info`) |
//! | [`send_update(user, update_type, payload)`](Hub::send_update) | `update` | `{"type": update_type, "payload"}` |
//! | [`send_notification(user, title, message, type)`](Hub::send_notification) | `notification` | `{"title", "message", "type"}` (default `info`) |
//! | [`send_to_user`](Hub::send_to_user), [`send_to_users(event, data, users)`](Hub::send_to_users), [`send_to_channel`](Hub::send_to_channel), [`send_to_connection`](Hub::send_to_connection) (alias [`send_to_client`](Hub::send_to_client)), [`broadcast`](Hub::broadcast) (alias [`broadcast_message`](Hub::broadcast_message)) | `event` | `data` as given |
//! | [`send_entity_notification(kind, id, status, data, to)`](Hub::send_entity_notification) and the eight domain helpers over it | [`EntityKind::event`] (`payment`, `job`, …) | `{<id field>: id, "status": status, ...data}` ([`EntityKind::id_field`]) |
//!
//! Keys of `data` win over the helper's own (`message`, `status`, the id field), as with
//! `{ message, ...data }` in JavaScript. Each call returns the hub's answer, [`Published`]: the
//! event's `id` and `delivered`, how many connections it was queued to (the seeds' count).
//!
//! ```no_run
//! # async fn run(hub: herald::Hub) -> herald::Result<()> {
//! use herald::helpers::Recipients;
//! use herald::{Severity, UserId};
//! use serde_json::json;
//!
//! let alice = UserId::new("alice")?;
//! // Seed 001: event `order_update`, data {"message": "Shipped", "orderId": 42}.
//! hub.notify_user(&alice, "Shipped", Some("order_update"), Some(json!({ "orderId": 42 })))
//!     .await?;
//! hub.send_alert(&alice, "Disk almost full", Some(Severity::Warning)).await?;
//! // Seed 002: event `payment`, data {"paymentId": "p1", "status": "completed", "amount": 9.5}.
//! let sent = hub
//!     .send_payment_notification("p1", "completed", Some(json!({ "amount": 9.5 })),
//!         Recipients::User(alice.clone()))
//!     .await?;
//! println!("queued to {} connections", sent.delivered);
//! // The seeds' (targetType, targetId) strings, as ported code has them:
//! let to = Recipients::from_seed("channel", &["system-monitoring"])?;
//! hub.send_system_health_notification("database", "warning", None, to).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::broker::{Publication, Published};
use crate::error::{InvalidInput, Result};
use crate::event::{EventName, Payload};
use crate::hub::Hub;
use crate::target::{ChannelName, ConnectionId, Fallback, Target, Targets, UserId};

/// The event name of [`Hub::notify_user`] and [`Hub::notify_all`] when no type is given.
pub const DEFAULT_NOTIFY_TYPE: &str = "notification";

/// The `type` of [`Hub::send_notification`] when none is given.
pub const DEFAULT_NOTIFICATION_TYPE: &str = "info";

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
    /// As [`Hub::publish`], and [`Error::Invalid`](crate::Error::Invalid) for a bad event name
    /// (empty, too long, a control character, or one of the hub's own such as `connected`) or
    /// unencodable data.
    pub async fn send_to_connection(
        &self,
        connection: ConnectionId,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        self.send(event, data, Targets::one(Target::Connection(connection)))
            .await
    }

    /// Seed 002's name of [`Hub::send_to_connection`] (`sendToClient(clientId, event, data)`).
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn send_to_client(
        &self,
        connection: ConnectionId,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        self.send_to_connection(connection, event, data).await
    }

    /// Sends to every connection of a user. Seed 001's `sendToUser(userId, {type, data})` is
    /// `send_to_user(user, type, data)`.
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

    /// Sends to every connection of these users, each connection once. The arguments come in
    /// seed 003's order: `sendToUsers(event, data, userIds)`.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`], and [`Error::Invalid`](crate::Error::Invalid) (code
    /// `missing_target`) for an empty list.
    pub async fn send_to_users(
        &self,
        event: &str,
        data: &(impl Serialize + ?Sized),
        users: &[UserId],
    ) -> Result<Published> {
        let targets = Targets::new(
            users.iter().cloned().map(Target::User).collect(),
            Fallback::None,
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

    /// Seed 003's name of [`Hub::broadcast`] (`broadcastMessage(event, data)`).
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn broadcast_message(
        &self,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        self.broadcast(event, data).await
    }

    /// Seed 001's `notifyUser(userId, message, type?, data?)`: event `event_type` (default
    /// [`DEFAULT_NOTIFY_TYPE`], `notification`) to every connection of `user`, with data
    /// `{"message": message, ...data}` when `data` is an object, `{"message", "data"}` for any
    /// other value, and `{"message"}` when it is `None` (or JSON `null`).
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn notify_user(
        &self,
        user: &UserId,
        message: &str,
        event_type: Option<&str>,
        data: Option<Value>,
    ) -> Result<Published> {
        self.send_to_user(
            user,
            event_type.unwrap_or(DEFAULT_NOTIFY_TYPE),
            &message_data(message, data),
        )
        .await
    }

    /// Seed 001's `notifyAll(message, type?, data?)`: like [`Hub::notify_user`], to every
    /// connection.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn notify_all(
        &self,
        message: &str,
        event_type: Option<&str>,
        data: Option<Value>,
    ) -> Result<Published> {
        self.broadcast(
            event_type.unwrap_or(DEFAULT_NOTIFY_TYPE),
            &message_data(message, data),
        )
        .await
    }

    /// Seed 001's `sendAlert(userId, message, severity?)`: event `alert` with
    /// `{"message", "severity"}` to a user; the severity is [`Severity::Info`] when `None`.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn send_alert(
        &self,
        user: &UserId,
        message: &str,
        severity: Option<Severity>,
    ) -> Result<Published> {
        let severity = severity.unwrap_or_default();
        self.send_to_user(
            user,
            "alert",
            &json!({ "message": message, "severity": severity }),
        )
        .await
    }

    /// Seed 001's `sendUpdate(userId, updateType, payload)`: event `update` with
    /// `{"type": update_type, "payload": payload}` to a user.
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

    /// Seed 003's `sendNotification(userId, title, message, type)`: event `notification` with
    /// `{"title", "message", "type"}` to a user; `type` is [`DEFAULT_NOTIFICATION_TYPE`]
    /// (`info`) when `None`.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn send_notification(
        &self,
        user: &UserId,
        title: &str,
        message: &str,
        kind: Option<&str>,
    ) -> Result<Published> {
        let kind = kind.unwrap_or(DEFAULT_NOTIFICATION_TYPE);
        self.send_to_user(
            user,
            "notification",
            &json!({ "title": title, "message": message, "type": kind }),
        )
        .await
    }

    /// Seed 002's domain notifications, all of them: event [`EntityKind::event`] with data
    /// `{<kind.id_field()>: id, "status": status, ...data}` to `to`. The eight named helpers
    /// (`send_payment_notification`…) call this one.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`]; [`Error::Invalid`](crate::Error::Invalid) when `data`
    /// is neither `None`, `null` nor a JSON object, when `id` does not encode, or when `to`
    /// names no user.
    pub async fn send_entity_notification(
        &self,
        kind: EntityKind,
        id: &(impl Serialize + ?Sized),
        status: &str,
        data: Option<Value>,
        to: Recipients,
    ) -> Result<Published> {
        let id = serde_json::to_value(id)
            .map_err(|e| InvalidInput::new("id", format!("cannot encode the id as JSON: {e}")))?;
        let mut payload = Map::new();
        payload.insert(kind.id_field().to_owned(), id);
        payload.insert("status".to_owned(), Value::from(status));
        match data {
            None | Some(Value::Null) => {}
            Some(Value::Object(extra)) => payload.extend(extra),
            Some(_) => {
                return Err(InvalidInput::new(
                    "data",
                    "the data of a domain notification is a JSON object (or none)",
                )
                .into())
            }
        }
        self.send(kind.event(), &payload, to.into_targets()?).await
    }

    /// Seed 002's `sendPaymentNotification(paymentId, status, data, targetType, targetId)`:
    /// event `payment`, data `{"paymentId", "status", ...data}`.
    ///
    /// # Errors
    /// As [`Hub::send_entity_notification`].
    pub async fn send_payment_notification(
        &self,
        payment_id: &(impl Serialize + ?Sized),
        status: &str,
        data: Option<Value>,
        to: Recipients,
    ) -> Result<Published> {
        self.send_entity_notification(EntityKind::Payment, payment_id, status, data, to)
            .await
    }

    /// Seed 002's `sendJobNotification(jobType, status, data, targetType, targetId)`: event
    /// `job`, data `{"jobType", "status", ...data}`.
    ///
    /// # Errors
    /// As [`Hub::send_entity_notification`].
    pub async fn send_job_notification(
        &self,
        job_type: &(impl Serialize + ?Sized),
        status: &str,
        data: Option<Value>,
        to: Recipients,
    ) -> Result<Published> {
        self.send_entity_notification(EntityKind::Job, job_type, status, data, to)
            .await
    }

    /// Seed 002's `sendUserAccountNotification(userId, status, data, targetType, targetId)`:
    /// event `account`, data `{"userId", "status", ...data}`.
    ///
    /// # Errors
    /// As [`Hub::send_entity_notification`].
    pub async fn send_user_account_notification(
        &self,
        user_id: &(impl Serialize + ?Sized),
        status: &str,
        data: Option<Value>,
        to: Recipients,
    ) -> Result<Published> {
        self.send_entity_notification(EntityKind::Account, user_id, status, data, to)
            .await
    }

    /// Seed 002's `sendSystemHealthNotification(component, status, data, targetType,
    /// targetId)`: event `system_health`, data `{"component", "status", ...data}`.
    ///
    /// # Errors
    /// As [`Hub::send_entity_notification`].
    pub async fn send_system_health_notification(
        &self,
        component: &(impl Serialize + ?Sized),
        status: &str,
        data: Option<Value>,
        to: Recipients,
    ) -> Result<Published> {
        self.send_entity_notification(EntityKind::SystemHealth, component, status, data, to)
            .await
    }

    /// Seed 002's `sendVideoProcessingNotification(videoId, status, data, targetType,
    /// targetId)`: event `video_processing`, data `{"videoId", "status", ...data}`.
    ///
    /// # Errors
    /// As [`Hub::send_entity_notification`].
    pub async fn send_video_processing_notification(
        &self,
        video_id: &(impl Serialize + ?Sized),
        status: &str,
        data: Option<Value>,
        to: Recipients,
    ) -> Result<Published> {
        self.send_entity_notification(EntityKind::VideoProcessing, video_id, status, data, to)
            .await
    }

    /// Seed 002's `sendDataExportNotification(exportId, status, data, targetType, targetId)`:
    /// event `data_export`, data `{"exportId", "status", ...data}`.
    ///
    /// # Errors
    /// As [`Hub::send_entity_notification`].
    pub async fn send_data_export_notification(
        &self,
        export_id: &(impl Serialize + ?Sized),
        status: &str,
        data: Option<Value>,
        to: Recipients,
    ) -> Result<Published> {
        self.send_entity_notification(EntityKind::DataExport, export_id, status, data, to)
            .await
    }

    /// Seed 002's `sendPostUpdateNotification(postId, status, data, targetType, targetId)`:
    /// event `post`, data `{"postId", "status", ...data}`.
    ///
    /// # Errors
    /// As [`Hub::send_entity_notification`].
    pub async fn send_post_update_notification(
        &self,
        post_id: &(impl Serialize + ?Sized),
        status: &str,
        data: Option<Value>,
        to: Recipients,
    ) -> Result<Published> {
        self.send_entity_notification(EntityKind::Post, post_id, status, data, to)
            .await
    }

    /// Seed 002's `sendProfileUpdateNotification(userId, status, data, targetType,
    /// targetId)`: event `profile`, data `{"userId", "status", ...data}`.
    ///
    /// # Errors
    /// As [`Hub::send_entity_notification`].
    pub async fn send_profile_update_notification(
        &self,
        user_id: &(impl Serialize + ?Sized),
        status: &str,
        data: Option<Value>,
        to: Recipients,
    ) -> Result<Published> {
        self.send_entity_notification(EntityKind::Profile, user_id, status, data, to)
            .await
    }
}

/// Seed 001's notify payload: `{"message", ...data}` for an object, `{"message", "data"}` for
/// any other value, `{"message"}` without.
fn message_data(message: &str, data: Option<Value>) -> Value {
    let mut out = Map::new();
    out.insert("message".to_owned(), Value::from(message));
    match data {
        None | Some(Value::Null) => {}
        Some(Value::Object(extra)) => out.extend(extra),
        Some(other) => {
            out.insert("data".to_owned(), other);
        }
    }
    Value::Object(out)
}

/// Severity of an alert sent with [`Hub::send_alert`]; written in lowercase on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational (the default, as in the seeds).
    #[default]
    Info,
    /// Success.
    Success,
    /// Needs attention.
    Warning,
    /// Something failed.
    Error,
    /// Something failed badly (the TypeScript publisher's `AlertSeverity` names it too).
    Critical,
}

impl Severity {
    /// Its name on the wire: `info`, `success`, `warning`, `error` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Success => "success",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = InvalidInput;

    fn from_str(s: &str) -> std::result::Result<Self, InvalidInput> {
        Ok(match s {
            "info" => Severity::Info,
            "success" => Severity::Success,
            "warning" => Severity::Warning,
            "error" => Severity::Error,
            "critical" => Severity::Critical,
            _ => {
                return Err(InvalidInput::new(
                    "severity",
                    "one of info, success, warning, error, critical",
                ))
            }
        })
    }
}

/// What a domain notification of seed 002 is about: its event name and the field its first
/// argument goes under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    /// `payment`, `paymentId`.
    Payment,
    /// `job`, `jobType`.
    Job,
    /// `account`, `userId`.
    Account,
    /// `system_health`, `component`.
    SystemHealth,
    /// `video_processing`, `videoId`.
    VideoProcessing,
    /// `data_export`, `exportId`.
    DataExport,
    /// `post`, `postId`.
    Post,
    /// `profile`, `userId`.
    Profile,
}

impl EntityKind {
    /// Every kind.
    pub const ALL: [EntityKind; 8] = [
        EntityKind::Payment,
        EntityKind::Job,
        EntityKind::Account,
        EntityKind::SystemHealth,
        EntityKind::VideoProcessing,
        EntityKind::DataExport,
        EntityKind::Post,
        EntityKind::Profile,
    ];

    /// The event name its notifications carry (also what [`FromStr`] reads).
    pub fn event(self) -> &'static str {
        match self {
            EntityKind::Payment => "payment",
            EntityKind::Job => "job",
            EntityKind::Account => "account",
            EntityKind::SystemHealth => "system_health",
            EntityKind::VideoProcessing => "video_processing",
            EntityKind::DataExport => "data_export",
            EntityKind::Post => "post",
            EntityKind::Profile => "profile",
        }
    }

    /// The data field the notification's id goes under.
    pub fn id_field(self) -> &'static str {
        match self {
            EntityKind::Payment => "paymentId",
            EntityKind::Job => "jobType",
            EntityKind::Account | EntityKind::Profile => "userId",
            EntityKind::SystemHealth => "component",
            EntityKind::VideoProcessing => "videoId",
            EntityKind::DataExport => "exportId",
            EntityKind::Post => "postId",
        }
    }
}

impl FromStr for EntityKind {
    type Err = InvalidInput;

    fn from_str(s: &str) -> std::result::Result<Self, InvalidInput> {
        EntityKind::ALL
            .into_iter()
            .find(|k| k.event() == s)
            .ok_or_else(|| {
                InvalidInput::new(
                    "kind",
                    "one of payment, job, account, system_health, video_processing, \
                     data_export, post, profile",
                )
            })
    }
}

/// Who a domain notification goes to: seed 002's `(targetType, targetId)` pair as one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// `"user"`: every connection of one user.
    User(UserId),
    /// `"users"`: every connection of these users (each connection once).
    Users(Vec<UserId>),
    /// `"channel"`: every subscriber of a channel.
    Channel(ChannelName),
    /// `"broadcast"`: every connection.
    Broadcast,
}

impl Recipients {
    /// The seeds' `(targetType, targetId)` strings: `user` with one id, `users` with one or
    /// more, `channel` with one name, `broadcast` with none (ids given are ignored).
    ///
    /// # Errors
    /// [`InvalidInput`] for another target type, a missing or extra id, or an id that is not a
    /// valid user id or channel name.
    pub fn from_seed(
        target_type: &str,
        target_id: &[&str],
    ) -> std::result::Result<Self, InvalidInput> {
        let one = |what: &str| match target_id {
            [id] => Ok(*id),
            _ => Err(InvalidInput::new(
                "targetId",
                format!("target type {what:?} takes exactly one id"),
            )),
        };
        Ok(match target_type {
            "user" => Recipients::User(UserId::new(one("user")?)?),
            "users" if target_id.is_empty() => {
                return Err(InvalidInput::new(
                    "targetId",
                    "target type \"users\" takes at least one id",
                ))
            }
            "users" => Recipients::Users(
                target_id
                    .iter()
                    .map(|u| UserId::new(u))
                    .collect::<std::result::Result<_, _>>()?,
            ),
            "channel" => Recipients::Channel(ChannelName::new(one("channel")?)?),
            "broadcast" => Recipients::Broadcast,
            _ => {
                return Err(InvalidInput::new(
                    "targetType",
                    "one of user, users, channel, broadcast",
                ))
            }
        })
    }

    /// The routing of a publish to them.
    ///
    /// # Errors
    /// [`InvalidInput`] (code `missing_target`) for [`Recipients::Users`] with no user.
    pub fn into_targets(self) -> std::result::Result<Targets, InvalidInput> {
        Ok(match self {
            Recipients::User(user) => Targets::one(Target::User(user)),
            Recipients::Users(users) => Targets::new(
                users.into_iter().map(Target::User).collect(),
                Fallback::None,
            )?,
            Recipients::Channel(channel) => Targets::one(Target::Channel(channel)),
            Recipients::Broadcast => Targets::broadcast(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_payloads_follow_the_seed() {
        assert_eq!(message_data("m", None), json!({"message": "m"}));
        assert_eq!(
            message_data("m", Some(Value::Null)),
            json!({"message": "m"})
        );
        assert_eq!(
            message_data("m", Some(json!({"orderId": 1, "message": "theirs"}))),
            json!({"message": "theirs", "orderId": 1}),
            "data's keys win, as with {{message, ...data}}"
        );
        assert_eq!(
            message_data("m", Some(json!([1, 2]))),
            json!({"message": "m", "data": [1, 2]})
        );
        assert_eq!(
            message_data("m", Some(json!("x"))),
            json!({"message": "m", "data": "x"})
        );
    }

    #[test]
    fn kinds_and_severities_round_trip_their_names() {
        for kind in EntityKind::ALL {
            assert_eq!(kind.event().parse::<EntityKind>().unwrap(), kind);
            EventName::new(kind.event()).unwrap();
        }
        assert!("invoice".parse::<EntityKind>().is_err());
        for s in ["info", "success", "warning", "error", "critical"] {
            assert_eq!(s.parse::<Severity>().unwrap().as_str(), s);
            assert_eq!(
                serde_json::to_value(s.parse::<Severity>().unwrap()).unwrap(),
                s
            );
        }
        assert_eq!(Severity::default(), Severity::Info);
    }

    #[test]
    fn seed_target_types_parse() {
        let u = |s: &str| UserId::new(s).unwrap();
        assert_eq!(
            Recipients::from_seed("user", &["u1"]).unwrap(),
            Recipients::User(u("u1"))
        );
        assert_eq!(
            Recipients::from_seed("users", &["u1", "u2"]).unwrap(),
            Recipients::Users(vec![u("u1"), u("u2")])
        );
        assert_eq!(
            Recipients::from_seed("channel", &["c"]).unwrap(),
            Recipients::Channel(ChannelName::new("c").unwrap())
        );
        assert_eq!(
            Recipients::from_seed("broadcast", &[]).unwrap(),
            Recipients::Broadcast
        );
        for (t, ids) in [
            ("user", &[][..]),
            ("user", &["a", "b"][..]),
            ("users", &[][..]),
            ("channel", &[][..]),
            ("team", &["t"][..]),
            ("user", &[""][..]),
        ] {
            assert!(Recipients::from_seed(t, ids).is_err(), "{t} {ids:?}");
        }
        assert!(Recipients::Users(vec![]).into_targets().is_err());
    }
}
