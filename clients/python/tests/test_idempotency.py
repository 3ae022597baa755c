"""Retries only where safe: idempotency keys make a retried publish arrive once."""

from __future__ import annotations

from typing import Any, List

import httpx
import pytest

from herald_client import BatchItemError, HeraldPublisher, OutcomeUnknownError, PublishResult, message


class LoseFirstAnswer(httpx.BaseTransport):
    """Forwards to the real hub; the first answer is read and then lost (as after a timeout or a
    reset connection): the hub published, the client cannot know it."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: List[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.inner.handle_request(request)
        if len(self.requests) == 1:
            response.read()
            response.close()
            raise httpx.ReadTimeout("answer lost (injected)", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_same_key_is_replayed(hub: Any, publisher: HeraldPublisher, listen: Any) -> None:
    li = listen(hub.url, user_id="u1")
    li.connected()
    first = publisher.notify_user("u1", "once", idempotency_key="k-1")
    again = publisher.notify_user("u1", "once", idempotency_key="k-1")
    assert not first.replayed and again.replayed
    assert (again.id, again.delivered) == (first.id, first.delivered)
    publisher.publish("marker", None, users=["u1"])
    assert [e.event for e in li.until("marker")] == ["notification", "marker"]


def test_lost_answer_is_retried_with_the_same_key(hub: Any, listen: Any) -> None:
    li = listen(hub.url, user_id="u1")
    li.connected()
    transport = LoseFirstAnswer()
    with HeraldPublisher(hub.url, transport=transport, retry_initial_delay=0.01) as p:
        r = p.send_alert("u1", "retried", "warning")
        assert r.replayed and r.delivered == 1
        keys = [req.headers["idempotency-key"] for req in transport.requests]
        assert len(keys) == 2 and keys[0] == keys[1]
        p.publish("marker", None, users=["u1"])
    events = li.until("marker")
    assert [e.event for e in events] == ["alert", "marker"]  # delivered once
    assert events[0].id == r.id


def test_lost_answer_without_key_is_not_retried(hub: Any, listen: Any) -> None:
    li = listen(hub.url, user_id="u1")
    li.connected()
    transport = LoseFirstAnswer()
    with HeraldPublisher(hub.url, transport=transport, idempotency_keys=False) as p:
        with pytest.raises(OutcomeUnknownError) as e:
            p.send_alert("u1", "maybe")
        assert (e.value.code, e.value.attempts, e.value.idempotency_key) == ("timeout", 1, None)
        assert len(transport.requests) == 1
        assert "idempotency-key" not in transport.requests[0].headers
        p.publish("marker", None, users=["u1"])
    assert [e.event for e in li.until("marker")] == ["alert", "marker"]


def test_publish_many(hub: Any, publisher: HeraldPublisher, listen: Any) -> None:
    li = listen(hub.url, user_id="u1", channels=["orders"])
    li.connected()
    items = [
        message("a", {"n": 1}, users=["u1"], idempotency_key="b-1"),
        message("connected", {}, users=["u1"]),  # reserved: this item fails, the others go out
        message("c", [3], channels=["orders"]),
    ]
    results = publisher.publish_many(items)
    assert isinstance(results[0], PublishResult) and results[0].delivered == 1
    assert isinstance(results[1], BatchItemError) and results[1].code == "reserved_event"
    assert results[1].idempotency_key  # generated, to resend it later
    assert isinstance(results[2], PublishResult)
    again = publisher.publish_many(items[:1])
    assert isinstance(again[0], PublishResult) and again[0].replayed and again[0].id == results[0].id
    publisher.publish("marker", None, users=["u1"])
    got = [(e.event, e.data) for e in li.until("marker")]
    assert got == [("a", {"n": 1}), ("c", [3]), ("marker", None)]


def test_lost_batch_answer_is_retried_with_the_same_keys(hub: Any, listen: Any) -> None:
    li = listen(hub.url, user_id="u1")
    li.connected()
    transport = LoseFirstAnswer()
    with HeraldPublisher(hub.url, transport=transport, retry_initial_delay=0.01) as p:
        results = p.publish_many([message("x", i, users=["u1"]) for i in range(3)])
        assert all(isinstance(r, PublishResult) and r.replayed for r in results)
        p.publish("marker", None, users=["u1"])
    assert [e.data for e in li.until("marker")] == [0, 1, 2, None]
