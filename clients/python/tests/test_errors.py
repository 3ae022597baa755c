"""Typed errors carrying the hub's code, status and Retry-After; what is retried and what not."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from conftest import KEY, WAIT
from herald_client import (
    ForbiddenError,
    HeraldPublisher,
    HeraldSubscriber,
    HeraldTransportError,
    IdempotencyKeyReusedError,
    InvalidRequestError,
    PayloadTooLargeError,
    RateLimitedError,
    UnauthorizedError,
)


def test_400_invalid_request(publisher: HeraldPublisher) -> None:
    with pytest.raises(InvalidRequestError) as e:
        publisher.publish("connected", {}, broadcast=True)
    assert (e.value.status, e.value.code) == (400, "reserved_event")
    assert e.value.attempts == 1  # never retried
    with pytest.raises(InvalidRequestError) as e:
        publisher.publish("x", 1)  # no target
    assert e.value.code == "missing_target" and "target" in e.value.message
    with pytest.raises(InvalidRequestError) as e:
        publisher.publish("x", 1, users=["a"], broadcast=True)
    assert e.value.code == "conflicting_targets"


def test_413_payload_too_large(publisher: HeraldPublisher) -> None:
    with pytest.raises(PayloadTooLargeError) as e:
        publisher.publish("big", "x" * 70_000, broadcast=True)
    assert (e.value.status, e.value.code) == (413, "payload_too_large")


def test_401_unauthorized_on_keyed_hub(start_hub: Any, listen: Any) -> None:
    hub = start_hub("--publisher-key", KEY, "--identity-from-query", "true")
    for key in (None, "wrong-key-0123456789abc"):
        with HeraldPublisher(hub.url, key=key) as p:
            with pytest.raises(UnauthorizedError) as e:
                p.broadcast_message("x", 1)
            assert (e.value.status, e.value.code, e.value.attempts) == (401, "unauthorized", 1)
            with pytest.raises(UnauthorizedError):
                p.get_stats()
    li = listen(hub.url, user_id="u1")
    li.connected()
    with HeraldPublisher(hub.url, key=KEY) as p:
        assert p.notify_user("u1", "hi").delivered == 1
        assert li.get().data == {"message": "hi"}
        assert p.get_stats().users == 1


def test_403_forbidden_scope_and_identity(start_hub: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "herald.toml"
    cfg.write_text(
        f'publisher_key = "{KEY}"\n'
        '[[publisher_keys]]\nname = "billing"\nkey = "billing-key-0123456789"\nchannels = ["billing:*"]\n'
    )
    hub = start_hub("--config", str(cfg))
    with HeraldPublisher(hub.url, key="billing-key-0123456789") as p:
        assert p.send_to_channel("billing:eu", "invoice", {"n": 1}).delivered == 0
        with pytest.raises(ForbiddenError) as e:
            p.notify_user("u1", "not yours")
        assert (e.value.status, e.value.code) == (403, "forbidden")
        with pytest.raises(ForbiddenError):
            p.get_stats()
    # a keyed hub refuses ?userId= (no --identity-from-query): the subscriber raises, no retry loop
    sub = HeraldSubscriber(hub.url, user_id="u1", read_timeout=WAIT)
    with pytest.raises(ForbiddenError) as e2:
        next(iter(sub))
    assert e2.value.code == "identity_not_allowed"
    sub.close()


def test_422_idempotency_key_reused(publisher: HeraldPublisher) -> None:
    publisher.publish("a", 1, broadcast=True, idempotency_key="order-42")
    with pytest.raises(IdempotencyKeyReusedError) as e:
        publisher.publish("a", 2, broadcast=True, idempotency_key="order-42")
    assert (e.value.status, e.value.code) == (422, "idempotency_key_reused")
    assert isinstance(e.value, InvalidRequestError)


def test_429_rate_limited_carries_retry_after(start_hub: Any, listen: Any) -> None:
    hub = start_hub("--publish-rate-per-key", "1/s:1")
    li = listen(hub.url, user_id="u1")
    li.connected()
    with HeraldPublisher(hub.url, retries=0) as p:
        p.notify_user("u1", "first")
        with pytest.raises(RateLimitedError) as e:
            p.notify_user("u1", "second")
    assert (e.value.status, e.value.code) == (429, "rate_limited")
    assert e.value.retry_after is not None and 0 < e.value.retry_after <= 2
    # with retries, the publisher waits Retry-After and the event goes out once
    with HeraldPublisher(hub.url, retries=3, idempotency_keys=False) as p:
        t0 = time.monotonic()
        r = p.notify_user("u1", "third")
        assert time.monotonic() - t0 >= 0.5
        assert r.delivered == 1
    # a Retry-After longer than max_retry_after fails at once
    with HeraldPublisher(hub.url, retries=3, max_retry_after=0.01) as p:
        with pytest.raises(RateLimitedError) as e:
            p.notify_user("u1", "fourth")
        assert e.value.attempts == 1
    p2 = HeraldPublisher(hub.url, retries=5)
    time.sleep(1.1)
    p2.publish("marker", None, users=["u1"])
    p2.close()
    got = [ev.data.get("message") if isinstance(ev.data, dict) else ev.event for ev in li.until("marker")]
    assert got == ["first", "third", "marker"]


def test_connection_refused_is_a_transport_error(start_hub: Any) -> None:
    hub = start_hub()
    url = hub.url
    hub.kill()
    with HeraldPublisher(url, retries=1, retry_initial_delay=0.01) as p:
        with pytest.raises(HeraldTransportError) as e:
            p.broadcast_message("x", 1)  # never reached the hub: not an OutcomeUnknownError
        assert (e.value.status, e.value.code, e.value.attempts) == (0, "network_error", 2)
        assert e.value.idempotency_key is not None
