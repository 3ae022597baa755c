"""What the hub answers, as small frozen dataclasses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Union

__all__ = [
    "PublishResult",
    "BatchItemError",
    "BatchItemResult",
    "DisconnectResult",
    "HeraldStats",
    "Event",
]


@dataclass(frozen=True)
class PublishResult:
    """A successful publish: the event's id (opaque), how many connections it was queued to
    (the seeds' count), and whether the hub answered a repeat of an idempotency key with the
    first publish's answer (``replayed``: this call published nothing again)."""

    id: str
    delivered: int
    replayed: bool = False


@dataclass(frozen=True)
class BatchItemError:
    """A failed item of ``publish_many``: the hub's error code and message, and the item's
    idempotency key (resend the item with it to publish it at most once)."""

    code: str
    message: str
    idempotency_key: Optional[str] = None


BatchItemResult = Union[PublishResult, BatchItemError]


@dataclass(frozen=True)
class DisconnectResult:
    """How many connections were ended."""

    disconnected: int


@dataclass(frozen=True)
class HeraldStats:
    """``GET /api/sse/stats``. ``raw`` is the whole answer; ``stats["totalConnections"]`` and
    ``stats["uniqueUsers"]`` (the seeds' names) work too, as do the hub's own keys."""

    connections: int
    users: int
    anonymous_connections: int
    channels: Dict[str, int]
    events_published: int
    events_delivered: int
    evicted_slow_consumers: int
    uptime_seconds: float
    raw: Dict[str, Any] = field(repr=False)

    @property
    def total_connections(self) -> int:
        """The seeds' ``totalConnections``: open connections in the whole hub (every node of a
        cluster), as the hub answers it (``connections`` from hubs that predate the name)."""
        return int(self.raw["totalConnections"])

    @property
    def unique_users(self) -> int:
        """The seeds' ``uniqueUsers``: distinct connected users in the whole hub; a user with
        several tabs, on one node or on several nodes of a cluster, counts once."""
        return int(self.raw["uniqueUsers"])

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> "HeraldStats":
        raw = dict(body)
        raw.setdefault("totalConnections", raw.get("connections", 0))
        raw.setdefault("uniqueUsers", raw.get("users", 0))
        channels = raw.get("channels") or {}
        return cls(
            connections=int(raw.get("connections", 0)),
            users=int(raw.get("users", 0)),
            anonymous_connections=int(raw.get("anonymousConnections", 0)),
            channels={str(k): int(v) for k, v in channels.items()},
            events_published=int(raw.get("eventsPublished", 0)),
            events_delivered=int(raw.get("eventsDelivered", 0)),
            evicted_slow_consumers=int(raw.get("evictedSlowConsumers", 0)),
            uptime_seconds=float(raw.get("uptimeSeconds", 0)),
            raw=raw,
        )


@dataclass(frozen=True)
class Event:
    """One event of the stream.

    ``event`` is the event name (``message`` when the stream named none), ``data`` the data
    parsed as JSON (the raw text when it is not JSON; ``raw`` always has the text), ``id`` the
    stream's last event id when it arrived (as ``MessageEvent.lastEventId`` in browsers: events
    without an ``id:`` line, such as ``disconnected``, carry the previous one; ``None`` before
    any), ``retry`` the ``retry:`` hint it carried in milliseconds.
    """

    event: str
    data: Any
    id: Optional[str] = None
    raw: str = ""
    retry: Optional[int] = None

    @classmethod
    def parse(cls, event: str, raw: str, id: Optional[str], retry: Optional[int]) -> "Event":
        data: Any
        try:
            data = json.loads(raw)
        except ValueError:
            data = raw
        return cls(event=event or "message", data=data, id=id or None, raw=raw, retry=retry)


