"""The subscriber: resume by Last-Event-ID after the hub drops the connection, heartbeats
hidden, reset surfaced, sync and async."""

from __future__ import annotations

import asyncio
from typing import Any, List

import pytest

from conftest import WAIT
from herald_client import AsyncHeraldPublisher, AsyncHeraldSubscriber, Event, HeraldPublisher, HeraldSubscriber


def test_resume_after_the_hub_drops_the_connection(start_hub: Any) -> None:
    hub = start_hub("--heartbeat-interval", "100ms")
    pub = HeraldPublisher(hub.url, timeout=WAIT)
    sub = HeraldSubscriber(hub.url, user_id="u1", channels=["news"], read_timeout=WAIT)
    it = iter(sub)
    try:
        first = next(it)
        assert first.event == "connected" and first.id
        cid = first.data["connectionId"]
        a = pub.notify_user("u1", "a")
        ev = next(it)  # heartbeats (every 100 ms) are never yielded
        assert (ev.event, ev.data, ev.id) == ("notification", {"message": "a"}, a.id)
        assert pub.disconnect(connections=[cid]).disconnected == 1
        ev = next(it)
        assert ev.event == "disconnected" and ev.data["reason"] == "server_disconnect"
        # published while the subscriber is away (the generator is suspended: not reconnected)
        b = pub.notify_user("u1", "b")
        c = pub.send_to_channel("news", "headline", {"t": "c"})
        assert (b.delivered, c.delivered) == (0, 0)
        got: List[Event] = []
        for ev in it:
            got.append(ev)
            if ev.event == "connected":
                assert ev.data["connectionId"] != cid
                pub.publish("marker", None, users=["u1"])
            if ev.event == "marker":
                break
        names = [(e.event, e.id) for e in got if e.event != "connected"]
        assert names[:2] == [("notification", b.id), ("headline", c.id)]
        assert [n for n, _ in names] == ["notification", "headline", "marker"]  # once each, nothing twice
        assert sub.last_event_id == got[-1].id
    finally:
        sub.close()
        pub.close()


def test_resume_from_a_given_id_and_reset(hub: Any, publisher: HeraldPublisher) -> None:
    e1 = publisher.broadcast_message("early", 1)  # nobody listens yet
    e2 = publisher.broadcast_message("later", 2)
    # a stored position (last_event_id) resumes there: what came after it arrives
    with HeraldSubscriber(hub.url, last_event_id=e1.id, read_timeout=WAIT) as sub:
        it = iter(sub)
        evs = [next(it), next(it)]
        assert [(e.event, e.id) for e in evs] == [("connected", None), ("later", e2.id)]
    # an id of another epoch: the hub cannot resume it and says so with a `reset` event
    with HeraldSubscriber(hub.url, last_event_id="000000000000-5", read_timeout=WAIT) as sub:
        it = iter(sub)
        kinds = [next(it), next(it)]
        reset = next(e for e in kinds if e.event == "reset")
        assert reset.data["reason"] == "unknown_epoch" and reset.data["lastEventId"] == "000000000000-5"
        assert reset.id == e2.id  # the position moves to the hub's newest id
        assert sub.last_event_id == e2.id


@pytest.mark.anyio
async def test_async_publisher_and_subscriber_resume(start_hub: Any) -> None:
    hub = start_hub()
    async with AsyncHeraldPublisher(hub.url, timeout=WAIT) as pub, AsyncHeraldSubscriber(
        hub.url, user_id="u1", read_timeout=WAIT
    ) as sub:
        it = sub.__aiter__()

        async def next_event() -> Event:
            return await asyncio.wait_for(it.__anext__(), WAIT)

        first = await next_event()
        assert first.event == "connected"
        r = await pub.send_payment_notification("p1", "completed", {"amount": 5}, "user", "u1")
        ev = await next_event()
        assert (ev.event, ev.data, ev.id) == ("payment", {"paymentId": "p1", "status": "completed", "amount": 5}, r.id)
        r2 = await pub.send_to_users("notification", {"title": "T"}, ["u1"])
        assert (await next_event()).data == {"title": "T"}
        assert (await pub.disconnect(users=["u1"])).disconnected == 1
        assert (await next_event()).event == "disconnected"
        missed = await pub.notify_user("u1", "while away", "order_update", {"orderId": 1})
        seen = []
        while True:
            ev = await next_event()
            seen.append(ev)
            if ev.event == "connected":
                await pub.publish("marker", None, users=["u1"])
            if ev.event == "marker":
                break
        assert [(e.event, e.id) for e in seen if e.event != "connected"][0] == ("order_update", missed.id)
        assert [e.event for e in seen if e.event != "connected"] == ["order_update", "marker"]
        assert r2.id != missed.id
        stats = await pub.get_stats()
        assert stats["totalConnections"] == 1 and stats.unique_users == 1
        assert (await pub.health())["status"] == "ok"
        replay1 = await pub.notify_all("x", idempotency_key="async-1")
        replay2 = await pub.notify_all("x", idempotency_key="async-1")
        assert replay2.replayed and replay2.id == replay1.id
        many = await pub.publish_many([{"event": "m", "data": 1, "users": ["u1"]}])
        assert len(many) == 1


@pytest.mark.anyio
async def test_async_errors(start_hub: Any) -> None:
    from herald_client import InvalidRequestError, RateLimitedError, UnauthorizedError

    hub = start_hub("--publisher-key", "k" * 20)
    async with AsyncHeraldPublisher(hub.url) as anon:
        with pytest.raises(UnauthorizedError):
            await anon.notify_all("x")
    async with AsyncHeraldPublisher(hub.url, key="k" * 20, retries=0) as pub:
        with pytest.raises(InvalidRequestError) as e:
            await pub.publish("heartbeat", 1, broadcast=True)
        assert e.value.code == "reserved_event"
    limited = start_hub("--publish-rate-per-key", "1/s:1")
    async with AsyncHeraldPublisher(limited.url, retries=0) as pub:
        await pub.notify_all("one")
        with pytest.raises(RateLimitedError) as e2:
            await pub.notify_all("two")
        assert e2.value.retry_after is not None
    sub = AsyncHeraldSubscriber(hub.url, user_id="u1", read_timeout=WAIT)
    from herald_client import ForbiddenError

    with pytest.raises(ForbiddenError):
        await asyncio.wait_for(sub.__aiter__().__anext__(), WAIT)
    await sub.aclose()


@pytest.mark.parametrize("retry_ms", [200, 1500])
def test_reconnect_waits_the_hubs_retry_hint(start_hub: Any, retry_ms: int) -> None:
    import time

    hub = start_hub("--retry", f"{retry_ms}ms")
    with HeraldPublisher(hub.url) as pub, HeraldSubscriber(hub.url, user_id="u1", read_timeout=WAIT) as sub:
        it = iter(sub)
        first = next(it)
        assert first.event == "connected" and first.retry == retry_ms
        pub.disconnect(users=["u1"])
        assert next(it).event == "disconnected"
        t0 = time.monotonic()
        assert next(it).event == "connected"
        waited = time.monotonic() - t0
        # the delay is the hint, jittered in [0.5, 1) of it
        assert retry_ms / 2000 <= waited < retry_ms / 1000 + 0.5, waited


def test_connect_429_is_retried_after_retry_after(start_hub: Any) -> None:
    import time

    from herald_client import RateLimitedError

    hub = start_hub("--connect-rate-per-ip", "1/s:1")
    with HeraldSubscriber(hub.url, user_id="u1", read_timeout=WAIT) as a:
        assert next(iter(a)).event == "connected"
        with HeraldSubscriber(hub.url, user_id="u2", read_timeout=WAIT, max_retries=0) as b:
            with pytest.raises(RateLimitedError) as e:
                next(iter(b))
            assert e.value.retry_after is not None
        t0 = time.monotonic()
        with HeraldSubscriber(hub.url, user_id="u3", read_timeout=WAIT, max_retries=5) as c:
            assert next(iter(c)).event == "connected"
        assert time.monotonic() - t0 >= 0.5  # it waited for the hub's Retry-After


@pytest.mark.anyio
async def test_sync_subscriber_also_iterates_async(hub: Any) -> None:
    async with AsyncHeraldPublisher(hub.url) as pub:
        sub = HeraldSubscriber(hub.url, channels="news", read_timeout=WAIT)
        it = sub.__aiter__()
        assert (await asyncio.wait_for(it.__anext__(), WAIT)).event == "connected"
        r = await pub.send_to_channel("news", "headline", "hello")
        ev = await asyncio.wait_for(it.__anext__(), WAIT)
        assert (ev.event, ev.data, ev.id) == ("headline", "hello", r.id)
        assert sub.last_event_id == r.id
        await it.aclose()  # type: ignore[attr-defined]
        sub.close()
