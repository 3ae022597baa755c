"""Each seed-style helper's exact wire payload, as a real subscriber receives it."""

from __future__ import annotations

from typing import Any, Callable, Tuple

import pytest

from conftest import WAIT
from herald_client import AsyncHeraldPublisher, HeraldPublisher, PublishResult

Case = Tuple[str, Callable[[HeraldPublisher, str], PublishResult], str, Any]

ORDER = {"orderId": "123", "status": "shipped"}

CASES = [
    # seed 001
    ("notify_user message only", lambda p, c: p.notify_user("u1", "Your order has been processed!", "notification"),
     "notification", {"message": "Your order has been processed!"}),
    ("notify_user default type", lambda p, c: p.notify_user("u1", "Hi"), "notification", {"message": "Hi"}),
    ("notify_user dict data merged", lambda p, c: p.notify_user("u1", "Shipped", "order_update", ORDER),
     "order_update", {"message": "Shipped", "orderId": "123", "status": "shipped"}),
    ("notify_user other data nested", lambda p, c: p.notify_user("u1", "m", "notification", [1, 2]),
     "notification", {"message": "m", "data": [1, 2]}),
    ("notify_all", lambda p, c: p.notify_all("System maintenance in 5 minutes", "alert"),
     "alert", {"message": "System maintenance in 5 minutes"}),
    ("notify_all with data", lambda p, c: p.notify_all("Down", "maintenance", {"minutes": 5}),
     "maintenance", {"message": "Down", "minutes": 5}),
    ("send_update", lambda p, c: p.send_update("u1", "profile", {"field": "avatar"}),
     "update", {"type": "profile", "payload": {"field": "avatar"}}),
    ("send_alert", lambda p, c: p.send_alert("u1", "Disk almost full", "warning"),
     "alert", {"message": "Disk almost full", "severity": "warning"}),
    ("send_alert default severity", lambda p, c: p.send_alert("u1", "FYI"), "alert", {"message": "FYI", "severity": "info"}),
    ("send_to_user seed 001 form", lambda p, c: p.send_to_user("u1", {"type": "order_update", "data": ORDER}),
     "order_update", ORDER),
    ("send_to_user seed 002 form", lambda p, c: p.send_to_user("u1", "profile:updated", {"field": "avatar", "newValue": "avatar.jpg"}),
     "profile:updated", {"field": "avatar", "newValue": "avatar.jpg"}),
    ("send_to_connection", lambda p, c: p.send_to_connection(c, "user:message", {"message": "Hello from server!", "sender": "admin"}),
     "user:message", {"message": "Hello from server!", "sender": "admin"}),
    ("send_to_client", lambda p, c: p.send_to_client(c, "user:message", {"message": "Hi"}), "user:message", {"message": "Hi"}),
    # seed 003
    ("send_to_users seed 003 order", lambda p, c: p.send_to_users("notification", {"title": "New Message", "content": "You have a new message"}, ["u1", "u2"]),
     "notification", {"title": "New Message", "content": "You have a new message"}),
    ("send_notification", lambda p, c: p.send_notification("u1", "Welcome!", "Welcome to our platform", "success"),
     "notification", {"title": "Welcome!", "message": "Welcome to our platform", "type": "success"}),
    ("broadcast_message", lambda p, c: p.broadcast_message("system-update", {"message": "System maintenance in 5 minutes", "type": "warning"}),
     "system-update", {"message": "System maintenance in 5 minutes", "type": "warning"}),
    ("send_to_channel", lambda p, c: p.send_to_channel("content-updates", "price", 9.5), "price", 9.5),
    ("publish with fallback", lambda p, c: p.publish("fb", {"x": 1}, users=["nobody"], fallback="broadcast"), "fb", {"x": 1}),
    # seed 002 domain helpers, every target type
    ("send_payment_notification user", lambda p, c: p.send_payment_notification(
        "payment123", "completed", {"amount": 99.99, "currency": "USD", "customerId": "u1"}, "user", "u1"),
     "payment", {"paymentId": "payment123", "status": "completed", "amount": 99.99, "currency": "USD", "customerId": "u1"}),
    ("send_job_notification users", lambda p, c: p.send_job_notification(
        "video-processing", "completed", {"videoId": "video123", "quality": "1080p"}, "users", ["u1", "u9"]),
     "job", {"jobType": "video-processing", "status": "completed", "videoId": "video123", "quality": "1080p"}),
    ("send_user_account_notification", lambda p, c: p.send_user_account_notification(
        "u1", "created", {"email": "john@example.com"}, "user", "u1"),
     "account", {"userId": "u1", "status": "created", "email": "john@example.com"}),
    ("send_system_health_notification channel", lambda p, c: p.send_system_health_notification(
        "database", "warning", {"message": "High memory usage detected", "metrics": {"memoryUsage": "85%"}}, "channel", "content-updates"),
     "system_health", {"component": "database", "status": "warning", "message": "High memory usage detected", "metrics": {"memoryUsage": "85%"}}),
    ("send_video_processing_notification", lambda p, c: p.send_video_processing_notification(
        "video123", "completed", {"title": "My Video", "quality": "4K"}, "user", "u1"),
     "video_processing", {"videoId": "video123", "status": "completed", "title": "My Video", "quality": "4K"}),
    ("send_data_export_notification", lambda p, c: p.send_data_export_notification(
        "export123", "completed", {"format": "CSV", "recordCount": 1000}, "user", "u1"),
     "data_export", {"exportId": "export123", "status": "completed", "format": "CSV", "recordCount": 1000}),
    ("send_post_update_notification broadcast", lambda p, c: p.send_post_update_notification(
        "post123", "created", {"title": "New Blog Post"}, "broadcast"),
     "post", {"postId": "post123", "status": "created", "title": "New Blog Post"}),
    ("send_profile_update_notification", lambda p, c: p.send_profile_update_notification(
        "u1", "avatar_changed", {"avatarUrl": "/avatars/new-avatar.jpg"}, "user", "u1"),
     "profile", {"userId": "u1", "status": "avatar_changed", "avatarUrl": "/avatars/new-avatar.jpg"}),
    ("send_entity_notification", lambda p, c: p.send_entity_notification("payment", 7, "failed", None, "users", "u1"),
     "payment", {"paymentId": 7, "status": "failed"}),
]


@pytest.mark.parametrize("call,event,data", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_helper_wire_payload(hub: Any, publisher: HeraldPublisher, listen: Any, call: Any, event: str, data: Any) -> None:
    li = listen(hub.url, user_id="u1", channels=["content-updates"])
    cid = li.connected().data["connectionId"]
    result = call(publisher, cid)
    assert isinstance(result, PublishResult)
    assert result.delivered == 1 and result.id and not result.replayed
    ev = li.get()
    assert (ev.event, ev.data) == (event, data)
    assert ev.id == result.id
    # and nothing else: a trailing marker is the next event
    publisher.publish("marker", None, users=["u1"])
    assert li.get().event == "marker"


@pytest.mark.anyio
@pytest.mark.parametrize("call,event,data", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_async_helper_wire_payload(hub: Any, listen: Any, call: Any, event: str, data: Any) -> None:
    li = listen(hub.url, user_id="u1", channels=["content-updates"])
    cid = li.connected().data["connectionId"]
    async with AsyncHeraldPublisher(hub.url, timeout=WAIT) as p:
        result = await call(p, cid)
        assert isinstance(result, PublishResult) and result.delivered == 1
        ev = li.get()
        assert (ev.event, ev.data, ev.id) == (event, data, result.id)
        await p.publish("marker", None, users=["u1"])
        assert li.get().event == "marker"


def test_domain_helper_argument_errors(publisher: HeraldPublisher) -> None:
    with pytest.raises(ValueError):
        publisher.send_entity_notification("invoice", "1", "paid", None, "user", "u1")
    with pytest.raises(ValueError):
        publisher.send_payment_notification("p1", "paid", None, "user")  # no target id
    with pytest.raises(ValueError):
        publisher.send_payment_notification("p1", "paid", None, "team", "t1")
    with pytest.raises(TypeError):
        publisher.publish("x", 1, users="alice")  # a string, not a list


def test_stats_seed_names_presence_health(hub: Any, publisher: HeraldPublisher, listen: Any) -> None:
    a = listen(hub.url, user_id="u1", username="U One", channels=["room"])
    b = listen(hub.url, user_id="u1", channels=["room"])
    c = listen(hub.url)
    for li in (a, b, c):
        li.connected()
    stats = publisher.get_stats()
    assert (stats.connections, stats.users, stats.anonymous_connections) == (3, 1, 1)
    assert (stats.total_connections, stats.unique_users) == (3, 1)
    assert stats["totalConnections"] == 3 and stats["uniqueUsers"] == 1
    assert stats.channels == {"room": 2}
    assert stats["eventsPublished"] == stats.events_published
    presence = publisher.channel_presence("room")
    assert presence["channel"] == "room" and [u["userId"] for u in presence["users"]] == ["u1"]
    user = publisher.user_presence("u1")
    assert user["online"] is True and len(user["connections"]) == 2
    assert publisher.health() == {"status": "ok"}
    assert publisher.ready()["status"] == "ready"


def test_disconnect_and_disconnect_all(hub: Any, publisher: HeraldPublisher, listen: Any) -> None:
    a = listen(hub.url, user_id="u1", reconnect=False)
    b = listen(hub.url, user_id="u2", reconnect=False)
    c = listen(hub.url, user_id="u3", reconnect=False)
    cid = c.connected().data["connectionId"]
    a.connected()
    b.connected()
    assert publisher.disconnect(users=["u1"]).disconnected == 1
    ev = a.get()
    assert ev.event == "disconnected" and ev.data["reason"] == "server_disconnect"
    assert publisher.disconnect(connections=[cid]).disconnected == 1
    assert c.get().event == "disconnected"
    assert publisher.disconnect_all().disconnected == 1
    assert b.get().event == "disconnected"
    assert publisher.get_stats().connections == 0


def test_publish_text_arrives_as_raw_text(hub: Any, publisher: HeraldPublisher, listen: Any) -> None:
    li = listen(hub.url, user_id="u1")
    li.connected()
    result = publisher.publish_text("note", "two\nlines, not \"JSON\"", users=["u1"])
    assert result.delivered == 1
    ev = li.get()
    assert (ev.event, ev.raw, ev.id) == ("note", "two\nlines, not \"JSON\"", result.id)
    publisher.publish("note", "quoted", users=["u1"])
    assert li.get().raw == '"quoted"'
    with pytest.raises(TypeError):
        publisher.publish_text("note", {"a": 1}, users=["u1"])  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_async_publish_text(hub: Any, listen: Any) -> None:
    li = listen(hub.url, user_id="u1")
    li.connected()
    async with AsyncHeraldPublisher(hub.url, timeout=WAIT) as p:
        result = await p.publish_text("note", "plain", users=["u1"])
        ev = li.get()
        assert (ev.raw, ev.id) == ("plain", result.id)


def test_session_id_and_metadata_show_in_user_presence(hub: Any, publisher: HeraldPublisher, listen: Any) -> None:
    a = listen(hub.url, user_id="u1", session_id="sess-1", metadata={"plan": "pro", "tab": 2})
    b = listen(hub.url, user_id="u1")
    a.connected()
    b.connected()
    conns = publisher.user_presence("u1")["connections"]
    assert [(c["sessionId"], c["metadata"]) for c in conns] == [("sess-1", {"plan": "pro", "tab": 2}), (None, None)]
    stats = publisher.get_stats()
    assert stats["totalConnections"] == 2 and stats["uniqueUsers"] == 1
    with pytest.raises(TypeError):
        listen(hub.url, user_id="u2", metadata=[1, 2])  # type: ignore[arg-type]


def test_metadata_over_1_kib_is_refused(hub: Any, listen: Any) -> None:
    from herald_client import HeraldError

    li = listen(hub.url, user_id="u1", metadata={"x": "y" * 1100}, reconnect=False)
    with pytest.raises(HeraldError) as e:
        li.get()
    assert e.value.status == 400 and e.value.code == "invalid_field"
