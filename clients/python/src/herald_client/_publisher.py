"""``HeraldPublisher`` and ``AsyncHeraldPublisher``: publish and admin calls over httpx.

Retry policy (the TypeScript publisher's): a call is retried only when a retry cannot deliver
an event twice.

- By default every publish and every batch item carries an idempotency key (a uuid4, header
  ``Idempotency-Key`` on a single publish, field ``idempotencyKey`` in batch items). The hub
  publishes one key at most once within its ``--idempotency-window`` and answers a repeat with
  the first answer (``replayed=True``). Keyed publishes are retried, with the same key, after
  any transient failure: network errors, timeouts, 429, 502, 503 (``outcome_unknown`` too), 504.
- Without a key (``idempotency_keys=False`` and no per-call key) only failures where nothing was
  sent for certain are retried: the connection could not be opened, 429, and 503
  ``engine_unavailable`` / ``overloaded`` / ``shutting_down``.
- Never retried: other 4xx (400, 401, 403, 413, 422...) and 500.
- Admin calls are idempotent and retried like keyed publishes. 429 and 503 honour ``Retry-After``
  (one longer than ``max_retry_after`` fails at once).

A publish whose last failure leaves its outcome unknown raises :class:`OutcomeUnknownError`
carrying its idempotency key.
"""

from __future__ import annotations

import json
import time
from typing import Any, Coroutine, Dict, List, Mapping, Optional, Sequence, Union
from urllib.parse import quote

import asyncio
import httpx

from ._core import (
    USER_AGENT,
    BatchState,
    Budget,
    RetrySettings,
    as_outcome_unknown,
    error_from_exception,
    error_from_http,
    json_answer,
    new_idempotency_key,
    publish_body,
    publish_result,
    retryable,
    text_body,
)
from ._errors import HeraldError
from ._helpers import SeedHelpers
from ._models import BatchItemResult, DisconnectResult, HeraldStats, PublishResult

__all__ = ["HeraldPublisher", "AsyncHeraldPublisher"]

_NO_BODY: Any = object()
Users = Optional[Sequence[Union[str, int]]]


class _Base:
    def __init__(
        self,
        url: str,
        key: Optional[str],
        timeout: float,
        retries: int,
        idempotency_keys: bool,
        retry_initial_delay: float,
        retry_max_delay: float,
        max_retry_after: float,
        headers: Optional[Mapping[str, str]],
    ) -> None:
        if not url:
            raise ValueError("url is required, e.g. http://127.0.0.1:8080")
        self.url = url.rstrip("/")
        self.key = key or None
        self.timeout = timeout
        self.idempotency_keys = idempotency_keys
        self._retry = RetrySettings(max(0, int(retries)), retry_initial_delay, retry_max_delay, max_retry_after)
        self._headers: Dict[str, str] = {"accept": "application/json", "user-agent": USER_AGENT}
        if self.key:
            self._headers["authorization"] = f"Bearer {self.key}"
        self._headers.update(headers or {})

    def _key(self, given: Optional[str]) -> Optional[str]:
        if given is not None:
            return given
        return new_idempotency_key() if self.idempotency_keys else None

    def _request_args(self, body: Any, idempotency_key: Optional[str], timeout: Optional[float]) -> Dict[str, Any]:
        headers = dict(self._headers)
        args: Dict[str, Any] = {"headers": headers, "timeout": self.timeout if timeout is None else timeout}
        if body is not _NO_BODY:
            headers["content-type"] = "application/json"
            args["content"] = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        return args

    def _failure(self, err: HeraldError, publish: bool, idempotent: bool, budget: Budget) -> float:
        """The delay before the next attempt, or raises the (final) error."""
        if publish:
            err = as_outcome_unknown(err)
        err.attempts = budget.attempts
        delay = budget.delay_after(err) if budget.left > 0 and retryable(err, idempotent) else None
        if delay is None:
            raise err
        budget.left -= 1
        return delay

    @staticmethod
    def _single(body: Dict[str, Any], key: Optional[str]) -> Dict[str, Any]:
        b = dict(body)
        b.pop("idempotencyKey", None)
        return b


class HeraldPublisher(_Base, SeedHelpers[PublishResult]):
    """Publish events to Herald and call its admin API (blocking; thread-safe like ``httpx.Client``).

    >>> herald = HeraldPublisher("http://127.0.0.1:8080", key=os.environ.get("HERALD_KEY"))
    >>> herald.notify_user("alice", "Your order shipped", "order_update", {"orderId": 42})
    PublishResult(id='5f3a9c01b2d4-17', delivered=1, replayed=False)

    ``timeout`` is per attempt, in seconds; ``retries`` the retries after the first attempt.
    Pass ``client`` to reuse your own ``httpx.Client`` (it is then not closed by :meth:`close`),
    or ``transport`` for a custom httpx transport.
    """

    def __init__(
        self,
        url: str,
        key: Optional[str] = None,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        idempotency_keys: bool = True,
        retry_initial_delay: float = 0.2,
        retry_max_delay: float = 5.0,
        max_retry_after: float = 60.0,
        headers: Optional[Mapping[str, str]] = None,
        client: Optional[httpx.Client] = None,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        super().__init__(url, key, timeout, retries, idempotency_keys, retry_initial_delay, retry_max_delay, max_retry_after, headers)
        self._own_client = client is None
        self._client = client if client is not None else httpx.Client(transport=transport)

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> "HeraldPublisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        method: str,
        path: str,
        body: Any = _NO_BODY,
        *,
        idempotent: bool = True,
        publish: bool = False,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
        budget: Optional[Budget] = None,
        params: Optional[Dict[str, str]] = None,
    ) -> httpx.Response:
        budget = budget or Budget(self._retry)
        args = self._request_args(body, idempotency_key, timeout)
        while True:
            budget.attempts += 1
            try:
                resp = self._client.request(method, self.url + path, params=params, **args)
            except httpx.TransportError as exc:
                err = error_from_exception(exc, idempotency_key)
            else:
                if resp.is_success:
                    return resp
                err = error_from_http(resp, idempotency_key)
            time.sleep(self._failure(err, publish, idempotent, budget))

    # ------------------------------------------------------------ publish

    def publish(
        self,
        event: str,
        data: Any,
        *,
        users: Users = None,
        connections: Optional[Sequence[str]] = None,
        channels: Optional[Sequence[str]] = None,
        broadcast: bool = False,
        fallback: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> PublishResult:
        """``POST /api/sse/message``: ``event`` with ``data`` (any JSON value) to the union of the
        targets. ``fallback="broadcast"``: broadcast when the targets match no connection."""
        body = publish_body(event, data, users=users, connections=connections, channels=channels, broadcast=broadcast, fallback=fallback)
        return self.publish_body(body, idempotency_key=idempotency_key, timeout=timeout)

    def publish_text(
        self,
        event: str,
        text: str,
        *,
        users: Users = None,
        connections: Optional[Sequence[str]] = None,
        channels: Optional[Sequence[str]] = None,
        broadcast: bool = False,
        fallback: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> PublishResult:
        """``POST /api/sse/message`` with ``text``: raw text, delivered exactly as it is (an SSE
        client's ``e.data`` is the text itself, not a JSON string). Targets as :meth:`publish`."""
        body = text_body(event, text, users=users, connections=connections, channels=channels, broadcast=broadcast, fallback=fallback)
        return self.publish_body(body, idempotency_key=idempotency_key, timeout=timeout)

    def publish_body(
        self, body: Mapping[str, Any], *, idempotency_key: Optional[str] = None, timeout: Optional[float] = None
    ) -> PublishResult:
        """``POST /api/sse/message`` with a wire-format body (``{"event", "data", "users", ...}``)."""
        key = self._key(idempotency_key if idempotency_key is not None else body.get("idempotencyKey"))
        resp = self._call(
            "POST", "/api/sse/message", self._single(dict(body), key),
            idempotent=key is not None, publish=True, idempotency_key=key, timeout=timeout,
        )
        return publish_result(json_answer(resp), resp.headers.get("idempotent-replayed"))

    def _send(self, body: Dict[str, Any], idempotency_key: Optional[str]) -> PublishResult:
        return self.publish_body(body, idempotency_key=idempotency_key)

    def publish_many(self, items: Sequence[Mapping[str, Any]], *, timeout: Optional[float] = None) -> List[BatchItemResult]:
        """``POST /api/sse/messages``: one result per item, in order (a
        :class:`~herald_client.PublishResult` or a :class:`~herald_client.BatchItemError`).
        Items are wire-format bodies (see :func:`herald_client.message`); each gets an
        idempotency key unless it has one. Items that failed with nothing sent (or, with a key,
        ``outcome_unknown``) are resent with the same keys within the ``retries`` budget."""
        state = BatchState(items, self.idempotency_keys)
        budget = Budget(self._retry)
        while state.pending:
            try:
                resp = self._call("POST", "/api/sse/messages", state.batch(), idempotent=state.idempotent(), publish=True, timeout=timeout, budget=budget)
            except HeraldError as err:
                state.failed(err)
                break
            state.answered(json_answer(resp))
            if not state.pending or budget.left <= 0:
                break
            budget.left -= 1
            time.sleep(budget.backoff())
        return state.done()

    # ------------------------------------------------------------ admin

    def disconnect(self, users: Users = None, connections: Optional[Sequence[str]] = None) -> DisconnectResult:
        """``POST /api/sse/disconnect``: end the streams of these users and/or connections."""
        body: Dict[str, Any] = {}
        if users is not None:
            body["users"] = [str(u) for u in users]
        if connections is not None:
            body["connections"] = list(connections)
        return DisconnectResult(int(json_answer(self._call("POST", "/api/sse/disconnect", body))["disconnected"]))

    def disconnect_all(self) -> DisconnectResult:
        """``POST /api/sse/disconnect-all``."""
        return DisconnectResult(int(json_answer(self._call("POST", "/api/sse/disconnect-all", {}))["disconnected"]))

    def get_stats(self) -> HeraldStats:
        """``GET /api/sse/stats`` (also as the seeds' ``totalConnections`` / ``uniqueUsers``)."""
        return HeraldStats.from_json(json_answer(self._call("GET", "/api/sse/stats")))

    stats = get_stats

    def channel_presence(self, channel: str) -> Dict[str, Any]:
        """``GET /api/sse/presence?channel=``: ``{"channel", "users": [...], "anonymousConnections"}``."""
        return dict(json_answer(self._call("GET", "/api/sse/presence", params={"channel": channel})))

    def user_presence(self, user_id: Union[str, int]) -> Dict[str, Any]:
        """``GET /api/sse/presence/users/{id}``: ``{"userId", "online", "connections", "channels"}``."""
        return dict(json_answer(self._call("GET", "/api/sse/presence/users/" + quote(str(user_id), safe=""))))

    def health(self) -> Dict[str, Any]:
        """``GET /healthz``: ``{"status": "ok"}`` while the process runs."""
        return dict(json_answer(self._call("GET", "/healthz")))

    def ready(self) -> Dict[str, Any]:
        """``GET /readyz``: ``{"status": "ready"}``, or ``{"status": "degraded", "reason"}`` (a 503,
        answered, not raised)."""
        try:
            return dict(json_answer(self._call("GET", "/readyz", budget=Budget(RetrySettings(retries=0)))))
        except HeraldError as err:
            if err.status == 503 and isinstance(err.body, dict) and "status" in err.body:
                return dict(err.body)
            raise


class AsyncHeraldPublisher(_Base, SeedHelpers[Coroutine[Any, Any, PublishResult]]):
    """The async twin of :class:`HeraldPublisher` (``httpx.AsyncClient``; asyncio or trio).

    >>> async with AsyncHeraldPublisher("http://127.0.0.1:8080") as herald:
    ...     await herald.send_alert("alice", "Disk almost full", "warning")
    """

    def __init__(
        self,
        url: str,
        key: Optional[str] = None,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        idempotency_keys: bool = True,
        retry_initial_delay: float = 0.2,
        retry_max_delay: float = 5.0,
        max_retry_after: float = 60.0,
        headers: Optional[Mapping[str, str]] = None,
        client: Optional[httpx.AsyncClient] = None,
        transport: Optional[httpx.AsyncBaseTransport] = None,
    ) -> None:
        super().__init__(url, key, timeout, retries, idempotency_keys, retry_initial_delay, retry_max_delay, max_retry_after, headers)
        self._own_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(transport=transport)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> "AsyncHeraldPublisher":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = _NO_BODY,
        *,
        idempotent: bool = True,
        publish: bool = False,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
        budget: Optional[Budget] = None,
        params: Optional[Dict[str, str]] = None,
    ) -> httpx.Response:
        budget = budget or Budget(self._retry)
        args = self._request_args(body, idempotency_key, timeout)
        while True:
            budget.attempts += 1
            try:
                resp = await self._client.request(method, self.url + path, params=params, **args)
            except httpx.TransportError as exc:
                err = error_from_exception(exc, idempotency_key)
            else:
                if resp.is_success:
                    return resp
                err = error_from_http(resp, idempotency_key)
            await asyncio.sleep(self._failure(err, publish, idempotent, budget))

    async def publish(
        self,
        event: str,
        data: Any,
        *,
        users: Users = None,
        connections: Optional[Sequence[str]] = None,
        channels: Optional[Sequence[str]] = None,
        broadcast: bool = False,
        fallback: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> PublishResult:
        """See :meth:`HeraldPublisher.publish`."""
        body = publish_body(event, data, users=users, connections=connections, channels=channels, broadcast=broadcast, fallback=fallback)
        return await self.publish_body(body, idempotency_key=idempotency_key, timeout=timeout)

    async def publish_text(
        self,
        event: str,
        text: str,
        *,
        users: Users = None,
        connections: Optional[Sequence[str]] = None,
        channels: Optional[Sequence[str]] = None,
        broadcast: bool = False,
        fallback: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> PublishResult:
        """See :meth:`HeraldPublisher.publish_text`."""
        body = text_body(event, text, users=users, connections=connections, channels=channels, broadcast=broadcast, fallback=fallback)
        return await self.publish_body(body, idempotency_key=idempotency_key, timeout=timeout)

    async def publish_body(
        self, body: Mapping[str, Any], *, idempotency_key: Optional[str] = None, timeout: Optional[float] = None
    ) -> PublishResult:
        """See :meth:`HeraldPublisher.publish_body`."""
        key = self._key(idempotency_key if idempotency_key is not None else body.get("idempotencyKey"))
        resp = await self._call(
            "POST", "/api/sse/message", self._single(dict(body), key),
            idempotent=key is not None, publish=True, idempotency_key=key, timeout=timeout,
        )
        return publish_result(json_answer(resp), resp.headers.get("idempotent-replayed"))

    def _send(self, body: Dict[str, Any], idempotency_key: Optional[str]) -> Coroutine[Any, Any, PublishResult]:
        return self.publish_body(body, idempotency_key=idempotency_key)

    async def publish_many(self, items: Sequence[Mapping[str, Any]], *, timeout: Optional[float] = None) -> List[BatchItemResult]:
        """See :meth:`HeraldPublisher.publish_many`."""
        state = BatchState(items, self.idempotency_keys)
        budget = Budget(self._retry)
        while state.pending:
            try:
                resp = await self._call("POST", "/api/sse/messages", state.batch(), idempotent=state.idempotent(), publish=True, timeout=timeout, budget=budget)
            except HeraldError as err:
                state.failed(err)
                break
            state.answered(json_answer(resp))
            if not state.pending or budget.left <= 0:
                break
            budget.left -= 1
            await asyncio.sleep(budget.backoff())
        return state.done()

    async def disconnect(self, users: Users = None, connections: Optional[Sequence[str]] = None) -> DisconnectResult:
        """See :meth:`HeraldPublisher.disconnect`."""
        body: Dict[str, Any] = {}
        if users is not None:
            body["users"] = [str(u) for u in users]
        if connections is not None:
            body["connections"] = list(connections)
        return DisconnectResult(int(json_answer(await self._call("POST", "/api/sse/disconnect", body))["disconnected"]))

    async def disconnect_all(self) -> DisconnectResult:
        return DisconnectResult(int(json_answer(await self._call("POST", "/api/sse/disconnect-all", {}))["disconnected"]))

    async def get_stats(self) -> HeraldStats:
        return HeraldStats.from_json(json_answer(await self._call("GET", "/api/sse/stats")))

    stats = get_stats

    async def channel_presence(self, channel: str) -> Dict[str, Any]:
        return dict(json_answer(await self._call("GET", "/api/sse/presence", params={"channel": channel})))

    async def user_presence(self, user_id: Union[str, int]) -> Dict[str, Any]:
        return dict(json_answer(await self._call("GET", "/api/sse/presence/users/" + quote(str(user_id), safe=""))))

    async def health(self) -> Dict[str, Any]:
        return dict(json_answer(await self._call("GET", "/healthz")))

    async def ready(self) -> Dict[str, Any]:
        try:
            return dict(json_answer(await self._call("GET", "/readyz", budget=Budget(RetrySettings(retries=0)))))
        except HeraldError as err:
            if err.status == 503 and isinstance(err.body, dict) and "status" in err.body:
                return dict(err.body)
            raise
