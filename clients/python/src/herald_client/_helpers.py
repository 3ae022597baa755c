"""The seed-style helpers, shared by the sync and async publishers."""

from __future__ import annotations

from typing import Any, Dict, Generic, Mapping, Optional, Sequence, TypeVar, Union

from ._core import entity_body, message_data, publish_body

R = TypeVar("R")

UserId = Union[str, int]
TargetId = Union[str, int, Sequence[Union[str, int]], None]


class SeedHelpers(Generic[R]):
    """Helpers with the seeds' names, argument orders and meanings (the wire contract of the
    TypeScript and Rust publishers). ``R`` is what a publish returns: a
    :class:`~herald_client.PublishResult`, or an awaitable of one on the async publisher."""

    def _send(self, body: Dict[str, Any], idempotency_key: Optional[str]) -> R:
        raise NotImplementedError

    # ------------------------------------------------------------ seed 001

    def notify_user(
        self,
        user_id: UserId,
        message: str,
        type: str = "notification",
        data: Any = None,
        *,
        idempotency_key: Optional[str] = None,
    ) -> R:
        """Event ``type`` to every connection of one user; data ``{"message": message, **data}``
        when ``data`` is a mapping, else ``{"message", "data"}``."""
        return self._send(publish_body(type, message_data(message, data), users=[user_id]), idempotency_key)

    def notify_all(
        self, message: str, type: str = "notification", data: Any = None, *, idempotency_key: Optional[str] = None
    ) -> R:
        """Like :meth:`notify_user`, to every connection."""
        return self._send(publish_body(type, message_data(message, data), broadcast=True), idempotency_key)

    def send_update(self, user_id: UserId, update_type: str, payload: Any, *, idempotency_key: Optional[str] = None) -> R:
        """Event ``update``, data ``{"type": update_type, "payload": payload}``."""
        return self._send(publish_body("update", {"type": update_type, "payload": payload}, users=[user_id]), idempotency_key)

    def send_alert(self, user_id: UserId, message: str, severity: str = "info", *, idempotency_key: Optional[str] = None) -> R:
        """Event ``alert``, data ``{"message", "severity"}``."""
        return self._send(publish_body("alert", {"message": message, "severity": severity}, users=[user_id]), idempotency_key)

    def send_to_user(
        self, user_id: UserId, event: Union[str, Mapping[str, Any]], data: Any = None, *, idempotency_key: Optional[str] = None
    ) -> R:
        """Both seed forms: ``send_to_user(user_id, {"type": ..., "data": ...})`` (seed 001) and
        ``send_to_user(user_id, event, data)`` (seed 002)."""
        if isinstance(event, Mapping):
            name = event.get("type") or event.get("event")
            if not isinstance(name, str):
                raise TypeError('send_to_user(user_id, {"type": ..., "data": ...}) needs a "type"')
            return self._send(publish_body(name, event.get("data"), users=[user_id]), idempotency_key)
        return self._send(publish_body(event, data, users=[user_id]), idempotency_key)

    def send_to_connection(self, connection_id: str, event: str, data: Any, *, idempotency_key: Optional[str] = None) -> R:
        """Event to exactly one connection (its ``connectionId``)."""
        return self._send(publish_body(event, data, connections=[connection_id]), idempotency_key)

    def send_to_client(self, client_id: str, event: str, data: Any, *, idempotency_key: Optional[str] = None) -> R:
        """Seed 002's name of :meth:`send_to_connection`."""
        return self.send_to_connection(client_id, event, data, idempotency_key=idempotency_key)

    # ------------------------------------------------------------ seed 003

    def send_to_users(self, event: str, data: Any, user_ids: Sequence[UserId], *, idempotency_key: Optional[str] = None) -> R:
        """Event to every connection of these users (seed 003's argument order)."""
        return self._send(publish_body(event, data, users=list(user_ids)), idempotency_key)

    def send_to_channel(self, channel: str, event: str, data: Any, *, idempotency_key: Optional[str] = None) -> R:
        """Event to every subscriber of a channel."""
        return self._send(publish_body(event, data, channels=[channel]), idempotency_key)

    def broadcast_message(self, event: str, data: Any, *, idempotency_key: Optional[str] = None) -> R:
        """Event to every connection."""
        return self._send(publish_body(event, data, broadcast=True), idempotency_key)

    def broadcast(self, event: str, data: Any, *, idempotency_key: Optional[str] = None) -> R:
        """Same as :meth:`broadcast_message`."""
        return self.broadcast_message(event, data, idempotency_key=idempotency_key)

    def send_notification(
        self, user_id: UserId, title: str, message: str, type: str = "info", *, idempotency_key: Optional[str] = None
    ) -> R:
        """Event ``notification``, data ``{"title", "message", "type"}``."""
        data = {"title": title, "message": message, "type": type}
        return self._send(publish_body("notification", data, users=[user_id]), idempotency_key)

    # ------------------------------------------------------------ seed 002 domain helpers

    def send_entity_notification(
        self,
        kind: str,
        id: Union[str, int],
        status: str,
        data: Optional[Mapping[str, Any]] = None,
        target_type: str = "user",
        target_id: TargetId = None,
        *,
        idempotency_key: Optional[str] = None,
    ) -> R:
        """Event ``kind`` (``payment``, ``job``, ``account``, ``system_health``,
        ``video_processing``, ``data_export``, ``post``, ``profile``), data ``{<id field>: id,
        "status": status, **data}``, to ``target_type`` (``user``, ``users``, ``channel``,
        ``broadcast``) ``target_id``."""
        return self._send(entity_body(kind, id, status, data, target_type, target_id), idempotency_key)

    def send_payment_notification(
        self, payment_id: Union[str, int], status: str, data: Optional[Mapping[str, Any]] = None,
        target_type: str = "user", target_id: TargetId = None, *, idempotency_key: Optional[str] = None,
    ) -> R:
        """Event ``payment``, data ``{"paymentId", "status", **data}``."""
        return self.send_entity_notification("payment", payment_id, status, data, target_type, target_id, idempotency_key=idempotency_key)

    def send_job_notification(
        self, job_type: str, status: str, data: Optional[Mapping[str, Any]] = None,
        target_type: str = "user", target_id: TargetId = None, *, idempotency_key: Optional[str] = None,
    ) -> R:
        """Event ``job``, data ``{"jobType", "status", **data}``."""
        return self.send_entity_notification("job", job_type, status, data, target_type, target_id, idempotency_key=idempotency_key)

    def send_user_account_notification(
        self, user_id: UserId, status: str, data: Optional[Mapping[str, Any]] = None,
        target_type: str = "user", target_id: TargetId = None, *, idempotency_key: Optional[str] = None,
    ) -> R:
        """Event ``account``, data ``{"userId", "status", **data}``."""
        return self.send_entity_notification("account", user_id, status, data, target_type, target_id, idempotency_key=idempotency_key)

    def send_system_health_notification(
        self, component: str, status: str, data: Optional[Mapping[str, Any]] = None,
        target_type: str = "user", target_id: TargetId = None, *, idempotency_key: Optional[str] = None,
    ) -> R:
        """Event ``system_health``, data ``{"component", "status", **data}``."""
        return self.send_entity_notification("system_health", component, status, data, target_type, target_id, idempotency_key=idempotency_key)

    def send_video_processing_notification(
        self, video_id: Union[str, int], status: str, data: Optional[Mapping[str, Any]] = None,
        target_type: str = "user", target_id: TargetId = None, *, idempotency_key: Optional[str] = None,
    ) -> R:
        """Event ``video_processing``, data ``{"videoId", "status", **data}``."""
        return self.send_entity_notification("video_processing", video_id, status, data, target_type, target_id, idempotency_key=idempotency_key)

    def send_data_export_notification(
        self, export_id: Union[str, int], status: str, data: Optional[Mapping[str, Any]] = None,
        target_type: str = "user", target_id: TargetId = None, *, idempotency_key: Optional[str] = None,
    ) -> R:
        """Event ``data_export``, data ``{"exportId", "status", **data}``."""
        return self.send_entity_notification("data_export", export_id, status, data, target_type, target_id, idempotency_key=idempotency_key)

    def send_post_update_notification(
        self, post_id: Union[str, int], status: str, data: Optional[Mapping[str, Any]] = None,
        target_type: str = "user", target_id: TargetId = None, *, idempotency_key: Optional[str] = None,
    ) -> R:
        """Event ``post``, data ``{"postId", "status", **data}``."""
        return self.send_entity_notification("post", post_id, status, data, target_type, target_id, idempotency_key=idempotency_key)

    def send_profile_update_notification(
        self, user_id: UserId, status: str, data: Optional[Mapping[str, Any]] = None,
        target_type: str = "user", target_id: TargetId = None, *, idempotency_key: Optional[str] = None,
    ) -> R:
        """Event ``profile``, data ``{"userId", "status", **data}``."""
        return self.send_entity_notification("profile", user_id, status, data, target_type, target_id, idempotency_key=idempotency_key)
