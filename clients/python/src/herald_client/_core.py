"""Transport-independent parts of the publisher: request bodies, answers, the retry policy."""

from __future__ import annotations

import email.utils
import json
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import httpx

from . import __version__ as _version
from ._errors import HeraldError, HeraldTimeoutError, HeraldTransportError, OutcomeUnknownError, error_from_response
from ._models import BatchItemError, BatchItemResult, PublishResult

USER_AGENT = f"herald-client-python/{_version}"

#: 503 codes after which the hub sent nothing, for certain.
NOT_SENT_503 = frozenset({"engine_unavailable", "overloaded", "shutting_down", "too_many_connections"})
#: Codes of failed batch items worth resending (nothing was sent).
ITEM_NOT_SENT = frozenset({"engine_unavailable", "overloaded", "shutting_down", "rate_limited"})

#: The eight domain helpers of seed 002: kind (= event name) -> the field naming the first argument.
ENTITY_ID_FIELDS: Dict[str, str] = {
    "payment": "paymentId",
    "job": "jobType",
    "account": "userId",
    "system_health": "component",
    "video_processing": "videoId",
    "data_export": "exportId",
    "post": "postId",
    "profile": "userId",
}

TARGET_TYPES = ("user", "users", "channel", "broadcast")


def new_idempotency_key() -> str:
    """A fresh idempotency key (a random UUID)."""
    return str(uuid.uuid4())


def publish_body(
    event: str,
    data: Any,
    *,
    users: Optional[Sequence[Union[str, int]]] = None,
    connections: Optional[Sequence[str]] = None,
    channels: Optional[Sequence[str]] = None,
    broadcast: bool = False,
    fallback: Optional[str] = None,
    idempotency_key: Optional[str] = None,
) -> Dict[str, Any]:
    """The JSON body of ``POST /api/sse/message`` (also a batch item for ``publish_many``)."""
    if isinstance(users, (str, bytes)) or isinstance(connections, (str, bytes)) or isinstance(channels, (str, bytes)):
        raise TypeError("users, connections and channels are lists of strings, not one string")
    body: Dict[str, Any] = {"event": event, "data": data}
    if users is not None:
        body["users"] = [str(u) for u in users]
    if connections is not None:
        body["connections"] = list(connections)
    if channels is not None:
        body["channels"] = list(channels)
    if broadcast:
        body["broadcast"] = True
    if fallback is not None:
        body["fallback"] = fallback
    if idempotency_key is not None:
        body["idempotencyKey"] = idempotency_key
    return body


def text_body(
    event: str,
    text: str,
    *,
    users: Optional[Sequence[Union[str, int]]] = None,
    connections: Optional[Sequence[str]] = None,
    channels: Optional[Sequence[str]] = None,
    broadcast: bool = False,
    fallback: Optional[str] = None,
    idempotency_key: Optional[str] = None,
) -> Dict[str, Any]:
    """Like :func:`publish_body`, with ``text`` (raw text, sent as it is) instead of ``data``."""
    if not isinstance(text, str):
        raise TypeError("text is a str; use publish() for JSON data")
    body = publish_body(
        event, None, users=users, connections=connections, channels=channels,
        broadcast=broadcast, fallback=fallback, idempotency_key=idempotency_key,
    )
    del body["data"]
    body["text"] = text
    return body


def message(
    event: str,
    data: Any,
    *,
    users: Optional[Sequence[Union[str, int]]] = None,
    connections: Optional[Sequence[str]] = None,
    channels: Optional[Sequence[str]] = None,
    broadcast: bool = False,
    fallback: Optional[str] = None,
    idempotency_key: Optional[str] = None,
) -> Dict[str, Any]:
    """A batch item for ``publish_many`` (the wire body of one publish)."""
    return publish_body(
        event, data, users=users, connections=connections, channels=channels,
        broadcast=broadcast, fallback=fallback, idempotency_key=idempotency_key,
    )


def message_data(message: str, data: Any) -> Any:
    """Seed 001's notify payload: ``{"message", **data}`` for a mapping, else ``{"message", "data"}``."""
    if data is None:
        return {"message": message}
    if isinstance(data, Mapping):
        return {"message": message, **data}
    return {"message": message, "data": data}


def entity_body(
    kind: str,
    entity_id: Union[str, int],
    status: str,
    data: Optional[Mapping[str, Any]],
    target_type: str,
    target_id: Union[str, int, Sequence[Union[str, int]], None],
) -> Dict[str, Any]:
    """Body of a seed 002 domain notification (``send_entity_notification``)."""
    try:
        id_field = ENTITY_ID_FIELDS[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}: one of {', '.join(ENTITY_ID_FIELDS)}") from None
    payload: Dict[str, Any] = {id_field: entity_id, "status": status}
    if data is not None:
        payload.update(data)
    if target_type == "broadcast":
        return publish_body(kind, payload, broadcast=True)
    if target_id is None:
        raise ValueError(f"target_type {target_type!r} needs a target_id")
    if target_type == "user":
        if not isinstance(target_id, (str, int)):
            raise TypeError("target_type 'user' takes one user id")
        return publish_body(kind, payload, users=[target_id])
    if target_type == "users":
        ids = [target_id] if isinstance(target_id, (str, int)) else list(target_id)
        return publish_body(kind, payload, users=ids)
    if target_type == "channel":
        if not isinstance(target_id, str):
            raise TypeError("target_type 'channel' takes one channel name")
        return publish_body(kind, payload, channels=[target_id])
    raise ValueError(f"unknown target_type {target_type!r}: one of {', '.join(TARGET_TYPES)}")


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """``Retry-After`` (delta-seconds or HTTP-date) in seconds."""
    if not value:
        return None
    v = value.strip()
    try:
        return max(0.0, float(v))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_http(response: httpx.Response, idempotency_key: Optional[str] = None) -> HeraldError:
    """The typed error for a non-2xx answer (its body already read)."""
    text = response.text
    body: Any = text
    code = f"http_{response.status_code}"
    message = text[:500] or response.reason_phrase or f"HTTP {response.status_code}"
    try:
        body = json.loads(text) if text else None
    except ValueError:
        pass
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        e = body["error"]
        if isinstance(e.get("code"), str):
            code = e["code"]
        if isinstance(e.get("message"), str):
            message = e["message"]
    return error_from_response(
        response.status_code,
        code,
        message,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        body=body,
        idempotency_key=idempotency_key,
    )


def error_from_exception(exc: httpx.HTTPError, idempotency_key: Optional[str] = None) -> HeraldError:
    """The error for a request that got no answer."""
    if isinstance(exc, httpx.TimeoutException):
        err: HeraldError = HeraldTimeoutError(0, "timeout", f"request timed out ({type(exc).__name__})", idempotency_key=idempotency_key)
    else:
        err = HeraldTransportError(0, "network_error", f"{type(exc).__name__}: {exc}", idempotency_key=idempotency_key)
    err.__cause__ = exc
    return err


def never_sent(err: HeraldError) -> bool:
    """Whether the failed request certainly had no effect: the connection could not be opened,
    or the hub refused it before acting (4xx, and 503 engine_unavailable/overloaded/shutting_down)."""
    if err.status == 0:
        cause = err.__cause__
        return isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout))
    if 400 <= err.status < 500:
        return True
    return err.status == 503 and err.code in NOT_SENT_503


def retryable(err: HeraldError, idempotent: bool) -> bool:
    """Whether a failed call may be retried. ``idempotent``: repeating it cannot act twice (a
    publish with an idempotency key, an admin call): any transient failure is retried (network
    errors, timeouts, 429, 502, 503, 504). Otherwise only failures where nothing was sent for
    certain (connection not opened, 429, 503 engine_unavailable/overloaded/shutting_down)."""
    if err.status == 0:
        return idempotent or never_sent(err)
    if err.status == 429:
        return True
    if err.status == 503:
        return idempotent or err.code in NOT_SENT_503
    if err.status in (502, 504):
        return idempotent
    return False


def as_outcome_unknown(err: HeraldError) -> HeraldError:
    """A publish's failure that may have published: an :class:`OutcomeUnknownError`."""
    if isinstance(err, OutcomeUnknownError) or never_sent(err):
        return err
    out = OutcomeUnknownError(
        err.status, err.code, err.message, retry_after=err.retry_after, body=err.body, idempotency_key=err.idempotency_key
    )
    out.__cause__ = err.__cause__ or err
    out.attempts = err.attempts
    return out


def publish_result(body: Any, replayed_header: Optional[str]) -> PublishResult:
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise HeraldError(200, "invalid_response", f"unexpected publish answer: {body!r}", body=body)
    replayed = bool(body.get("replayed")) or (replayed_header or "").strip().lower() == "true"
    return PublishResult(id=body["id"], delivered=int(body.get("delivered", 0)), replayed=replayed)


def batch_item_result(item: Any, key: Optional[str]) -> BatchItemResult:
    if isinstance(item, dict) and isinstance(item.get("error"), dict):
        e = item["error"]
        return BatchItemError(code=str(e.get("code", "unknown")), message=str(e.get("message", "")), idempotency_key=key)
    return publish_result(item, None)


def json_answer(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise HeraldError(response.status_code, "invalid_response", "the answer is not JSON", body=response.text) from None


@dataclass
class RetrySettings:
    retries: int = 2
    initial_delay: float = 0.2
    max_delay: float = 5.0
    max_retry_after: float = 60.0


class Budget:
    """The retries left for one call, and its backoff (full jitter)."""

    def __init__(self, settings: RetrySettings) -> None:
        self.settings = settings
        self.left = settings.retries
        self.attempts = 0

    def delay_after(self, err: HeraldError) -> Optional[float]:
        """How long to wait before retrying after ``err``, or ``None`` to give up (no budget
        left, not retryable, or a ``Retry-After`` longer than ``max_retry_after``)."""
        s = self.settings
        ceiling = min(s.max_delay, s.initial_delay * (2.0 ** max(0, self.attempts - 1)))
        delay = ceiling * (1.0 - random.random())
        if err.retry_after is not None:
            if err.retry_after > s.max_retry_after:
                return None
            delay = max(delay, err.retry_after)
        return delay

    def backoff(self) -> float:
        """The next delay without a ``Retry-After`` (for resending failed batch items)."""
        s = self.settings
        return min(s.max_delay, s.initial_delay * (2.0 ** max(0, self.attempts - 1))) * (1.0 - random.random())


def prepare_batch(items: Sequence[Mapping[str, Any]], keys: bool) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    for item in items:
        d = dict(item)
        if d.get("idempotencyKey") is None:
            d.pop("idempotencyKey", None)
            if keys:
                d["idempotencyKey"] = new_idempotency_key()
        out.append(d)
    return out


class BatchState:
    """The bookkeeping of one ``publish_many`` call: which items are still to (re)send."""

    def __init__(self, items: Sequence[Mapping[str, Any]], keys: bool) -> None:
        self.items = prepare_batch(items, keys)
        self.results: List[Optional[BatchItemResult]] = [None] * len(self.items)
        self.pending = list(range(len(self.items)))

    def keys(self) -> List[Optional[str]]:
        return [b.get("idempotencyKey") for b in self.items]

    def batch(self) -> List[Dict[str, Any]]:
        return [self.items[i] for i in self.pending]

    def idempotent(self) -> bool:
        return all("idempotencyKey" in self.items[i] for i in self.pending)

    def failed(self, err: HeraldError) -> None:
        """The whole request failed: raise when nothing came back yet, else the resent items
        get this error (the earlier results stand)."""
        if len(self.pending) == len(self.items):
            err.idempotency_keys = self.keys()
            raise err
        for i in self.pending:
            self.results[i] = BatchItemError(err.code, err.message, self.items[i].get("idempotencyKey"))
        self.pending = []

    def answered(self, body: Any) -> None:
        """Record an answer; ``pending`` becomes the items worth resending."""
        got = body.get("results") if isinstance(body, dict) else None
        if not isinstance(got, list) or len(got) != len(self.pending):
            err = OutcomeUnknownError(200, "invalid_response", f"the batch answer does not have {len(self.pending)} results", body=body)
            err.idempotency_keys = self.keys()
            raise err
        retry: List[int] = []
        for i, item in zip(self.pending, got):
            key = self.items[i].get("idempotencyKey")
            r = batch_item_result(item, key)
            self.results[i] = r
            if isinstance(r, BatchItemError) and (r.code in ITEM_NOT_SENT or (key is not None and r.code == "outcome_unknown")):
                retry.append(i)
        self.pending = retry

    def done(self) -> List[BatchItemResult]:
        return [r if r is not None else BatchItemError("unknown", "not sent") for r in self.results]
