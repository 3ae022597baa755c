"""``HeraldSubscriber`` / ``AsyncHeraldSubscriber``: read a Herald stream from a service or script.

Iterating yields :class:`~herald_client.Event` objects (``connected`` first, then the events
targeted at this connection; ``reset`` and ``disconnected`` are yielded too, heartbeats are
not). When the connection drops (network error, the hub ended the stream, no byte for
``read_timeout`` seconds) it reconnects after a backoff that starts at the hub's ``retry:`` hint
and sends ``Last-Event-ID``, so the events published meanwhile arrive once, in order. A 401/403/
400 answer raises (``UnauthorizedError``...); 429 and 503 are retried after ``Retry-After``.
"""

from __future__ import annotations

import json
import random
import socket
import threading
from typing import Any, AsyncIterator, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import asyncio
import httpx
from httpx_sse import EventSource, ServerSentEvent

from ._core import USER_AGENT, error_from_http
from ._errors import HeraldError
from ._models import Event

__all__ = ["HeraldSubscriber", "AsyncHeraldSubscriber"]

HIDDEN_EVENTS = frozenset({"heartbeat"})


class _State:
    def __init__(
        self,
        url: str,
        user_id: Optional[Union[str, int]],
        channels: Union[str, Sequence[str]],
        token: Optional[str],
        key: Optional[str],
        username: Optional[str],
        last_event_id: Optional[str],
        read_timeout: float,
        connect_timeout: float,
        max_reconnect_delay: float,
        max_retries: Optional[int],
        reconnect: bool,
        params: Optional[Mapping[str, str]],
        headers: Optional[Mapping[str, str]],
        session_id: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.endpoint = self.url if self.url.endswith("/api/sse") else self.url + "/api/sse"
        chans: List[str] = [channels] if isinstance(channels, str) else list(channels)
        self.params: Dict[str, str] = dict(params or {})
        if user_id is not None:
            self.params["userId"] = str(user_id)
        if username is not None:
            self.params["username"] = username
        if chans:
            self.params["channels"] = ",".join(chans)
        if session_id is not None:
            self.params["sessionId"] = session_id
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise TypeError("metadata is a mapping (sent as a JSON object)")
            self.params["metadata"] = json.dumps(dict(metadata), separators=(",", ":"))
        self.headers: Dict[str, str] = {"user-agent": USER_AGENT}
        bearer = token or key
        if bearer:
            self.headers["authorization"] = f"Bearer {bearer}"
        self.headers.update(headers or {})
        #: Where the stream stands: sent as ``Last-Event-ID`` on the next connection.
        self.last_event_id: Optional[str] = last_event_id
        #: The current connection's id (from its ``connected`` event).
        self.connection_id: Optional[str] = None
        self.retry_ms = 3000
        self.timeout = httpx.Timeout(connect_timeout, read=read_timeout)
        self.max_reconnect_delay = max_reconnect_delay
        self.max_retries = max_retries
        self.reconnect = reconnect
        self.failures = 0
        self.closed = False

    def request_headers(self) -> Dict[str, str]:
        h = dict(self.headers)
        if self.last_event_id:
            h["last-event-id"] = self.last_event_id
        return h

    @staticmethod
    def check(response: httpx.Response) -> None:
        """Raises the hub's refusal of the stream (its body already read) as a typed error."""
        if response.status_code != 200:
            raise error_from_http(response)

    def event(self, sse: ServerSentEvent) -> Optional[Event]:
        """Records the stream position; the Event to yield, ``None`` for a heartbeat."""
        self.failures = 0
        if sse.retry is not None:
            self.retry_ms = sse.retry
        if sse.id:
            self.last_event_id = sse.id
        if sse.event in HIDDEN_EVENTS:
            return None
        ev = Event.parse(sse.event, sse.data, sse.id, sse.retry)
        if ev.event == "connected" and isinstance(ev.data, dict):
            cid = ev.data.get("connectionId")
            self.connection_id = cid if isinstance(cid, str) else None
        return ev

    def delay(self, err: Optional[BaseException]) -> Optional[float]:
        """How long to wait before reconnecting; ``None`` (a clean end) or raises when giving up."""
        if isinstance(err, HeraldError) and not (err.status in (429, 502, 503, 504) or err.status == 0):
            raise err  # 400/401/403/404: reconnecting cannot help
        self.failures += 1
        if not self.reconnect or (self.max_retries is not None and self.failures > self.max_retries):
            if err is not None:
                raise err
            return None
        base = min(self.max_reconnect_delay, (self.retry_ms / 1000.0) * (2.0 ** (self.failures - 1)))
        delay = base * (0.5 + random.random() / 2)
        if isinstance(err, HeraldError) and err.retry_after is not None:
            delay = max(delay, err.retry_after)
        return delay


def _shutdown(response: httpx.Response) -> None:
    """Interrupt a read blocked on this response's socket (from another thread)."""
    stream = response.extensions.get("network_stream")
    get = getattr(stream, "get_extra_info", None)
    sock = get("socket") if get is not None else None
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class HeraldSubscriber:
    """A blocking subscriber: ``for event in HeraldSubscriber(url, user_id="alice", channels=["orders"])``.

    ``token`` (a subscriber JWT) or ``key`` is sent as ``Authorization: Bearer`` (a publisher
    key is not a subscriber token: on a hub with JWT authentication pass ``token``).
    ``user_id``/``username``, ``session_id`` and ``metadata`` (a mapping, sent as a JSON object of
    at most 1 KiB; both shown with the connection in ``user_presence``) go in the query, which
    the hub accepts only where query identity is allowed (a keyless loopback hub, or
    ``--identity-from-query true``). ``max_retries``:
    consecutive failed reconnects before giving up (``None``: forever). :meth:`close` (from
    another thread too) ends the iteration.
    """

    def __init__(
        self,
        url: str,
        user_id: Optional[Union[str, int]] = None,
        channels: Union[str, Sequence[str]] = (),
        token: Optional[str] = None,
        key: Optional[str] = None,
        *,
        username: Optional[str] = None,
        last_event_id: Optional[str] = None,
        read_timeout: float = 45.0,
        connect_timeout: float = 10.0,
        max_reconnect_delay: float = 30.0,
        max_retries: Optional[int] = None,
        reconnect: bool = True,
        params: Optional[Mapping[str, str]] = None,
        headers: Optional[Mapping[str, str]] = None,
        client: Optional[httpx.Client] = None,
        session_id: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self._s = _State(url, user_id, channels, token, key, username, last_event_id, read_timeout, connect_timeout,
                         max_reconnect_delay, max_retries, reconnect, params, headers, session_id, metadata)
        self._own_client = client is None
        self._client = client if client is not None else httpx.Client()
        self._stop = threading.Event()
        self._response: Optional[httpx.Response] = None
        self._iterating = False

    @property
    def last_event_id(self) -> Optional[str]:
        return self._s.last_event_id

    @property
    def connection_id(self) -> Optional[str]:
        return self._s.connection_id

    def close(self) -> None:
        """End the iteration (also from another thread: a blocked read is interrupted)."""
        self._s.closed = True
        self._stop.set()
        resp = self._response
        if resp is not None:
            _shutdown(resp)
        if not self._iterating and self._own_client:
            self._client.close()

    def __enter__(self) -> "HeraldSubscriber":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def __aiter__(self) -> AsyncIterator[Event]:
        """``async for`` works too (on its own ``httpx.AsyncClient``, the same stream position)."""
        sub = AsyncHeraldSubscriber.__new__(AsyncHeraldSubscriber)
        sub._s = self._s
        sub._own_client = True
        sub._client = httpx.AsyncClient()
        return sub._closing_events()

    def events(self) -> Iterator[Event]:
        self._iterating = True
        try:
            yield from self._events()
        finally:
            self._iterating = False
            if self._s.closed and self._own_client:
                self._client.close()

    def _events(self) -> Iterator[Event]:
        s = self._s
        while not s.closed:
            err: Optional[BaseException] = None
            try:
                with self._client.stream("GET", s.endpoint, params=s.params, headers={**s.request_headers(), "accept": "text/event-stream"}, timeout=s.timeout) as resp:
                    self._response = resp
                    if resp.status_code != 200:
                        resp.read()
                        s.check(resp)
                    for sse in EventSource(resp).iter_sse():
                        ev = s.event(sse)
                        if ev is not None:
                            yield ev
            except HeraldError as exc:  # the hub refused the stream: s.delay() decides
                err = exc
            except (httpx.HTTPError, OSError, RuntimeError) as exc:  # OSError, RuntimeError: closed from another thread
                if s.closed:
                    return
                err = exc
            finally:
                self._response = None
            if s.closed:
                return
            delay = s.delay(err)
            if delay is None:
                return
            if self._stop.wait(delay):
                return


class AsyncHeraldSubscriber:
    """The async twin of :class:`HeraldSubscriber`: ``async for event in AsyncHeraldSubscriber(...)``."""

    def __init__(
        self,
        url: str,
        user_id: Optional[Union[str, int]] = None,
        channels: Union[str, Sequence[str]] = (),
        token: Optional[str] = None,
        key: Optional[str] = None,
        *,
        username: Optional[str] = None,
        last_event_id: Optional[str] = None,
        read_timeout: float = 45.0,
        connect_timeout: float = 10.0,
        max_reconnect_delay: float = 30.0,
        max_retries: Optional[int] = None,
        reconnect: bool = True,
        params: Optional[Mapping[str, str]] = None,
        headers: Optional[Mapping[str, str]] = None,
        client: Optional[httpx.AsyncClient] = None,
        session_id: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self._s = _State(url, user_id, channels, token, key, username, last_event_id, read_timeout, connect_timeout,
                         max_reconnect_delay, max_retries, reconnect, params, headers, session_id, metadata)
        self._own_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()

    @property
    def last_event_id(self) -> Optional[str]:
        return self._s.last_event_id

    @property
    def connection_id(self) -> Optional[str]:
        return self._s.connection_id

    async def aclose(self) -> None:
        self._s.closed = True
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> "AsyncHeraldSubscriber":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    async def _closing_events(self) -> AsyncIterator[Event]:
        try:
            async for ev in self.events():
                yield ev
        finally:
            await self._client.aclose()

    async def events(self) -> AsyncIterator[Event]:
        s = self._s
        while not s.closed:
            err: Optional[BaseException] = None
            try:
                async with self._client.stream("GET", s.endpoint, params=s.params, headers={**s.request_headers(), "accept": "text/event-stream"}, timeout=s.timeout) as resp:
                    if resp.status_code != 200:
                        await resp.aread()
                        s.check(resp)
                    async for sse in EventSource(resp).aiter_sse():
                        ev = s.event(sse)
                        if ev is not None:
                            yield ev
            except (HeraldError, httpx.HTTPError) as exc:
                err = exc
            if s.closed:
                return
            delay = s.delay(err)
            if delay is None:
                return
            await asyncio.sleep(delay)


