"""Test harness: the real ``herald`` binary on an ephemeral loopback port, and a subscriber
that collects events in a background thread. Every wait is bounded; every hub is killed."""

from __future__ import annotations

import ctypes
import os
import queue
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import pytest

from herald_client import Event, HeraldPublisher, HeraldSubscriber

HERE = Path(__file__).resolve().parent.parent
WAIT = 10.0  # seconds: the bound of every wait on the hub
KEY = "test-publisher-key-0123456789"


def herald_bin() -> str:
    path = os.environ.get("HERALD_BIN") or str(HERE / "../../target/debug/herald")
    if not os.access(path, os.X_OK):
        pytest.fail(f"herald binary not found at {path}: build it (cargo build) or set HERALD_BIN")
    return path


def _die_with_parent() -> None:
    """Linux: the hub gets SIGKILL if pytest itself dies before its teardown kills it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Hub:
    """One ``herald`` process listening on 127.0.0.1:<ephemeral>."""

    def __init__(self, args: Sequence[str] = (), env: Optional[Dict[str, str]] = None) -> None:
        e = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_") or k == "HERALD_BIN"}
        e.update({"HERALD_LOG_FORMAT": "text", "NO_COLOR": "1"}, **(env or {}))
        self.proc = subprocess.Popen(
            [herald_bin(), "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=e, text=True,
            preexec_fn=_die_with_parent,
        )
        self.log: List[str] = []
        found: "queue.Queue[str]" = queue.Queue()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"listening on (https?://[0-9.:\[\]]+)", line)
                if m:
                    found.put(m.group(1))
            found.put("")

        threading.Thread(target=read, daemon=True).start()
        try:
            self.url = found.get(timeout=WAIT)
        except queue.Empty:
            self.url = ""
        if not self.url:
            self.kill()
            raise RuntimeError("herald did not start; log:\n" + "".join(self.log))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=WAIT)


@pytest.fixture
def start_hub() -> Iterator[Callable[..., Hub]]:
    hubs: List[Hub] = []

    def start(*args: str, env: Optional[Dict[str, str]] = None) -> Hub:
        hub = Hub([*args] if "--retry" in args else ["--retry", "200ms", *args], env)
        hubs.append(hub)
        return hub

    yield start
    for h in hubs:
        h.kill()


@pytest.fixture
def hub(start_hub: Callable[..., Hub]) -> Hub:
    return start_hub()


@pytest.fixture
def publisher(hub: Hub) -> Iterator[HeraldPublisher]:
    with HeraldPublisher(hub.url, timeout=WAIT) as p:
        yield p


class Listener:
    """A :class:`HeraldSubscriber` iterated in a thread; events land in a queue."""

    def __init__(self, url: str, **kw: Any) -> None:
        kw.setdefault("read_timeout", WAIT)
        self.sub = HeraldSubscriber(url, **kw)
        self.q: "queue.Queue[Any]" = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for ev in self.sub:
                self.q.put(ev)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.q.put(e)
        self.q.put(None)

    def get(self, timeout: float = WAIT) -> Event:
        try:
            item = self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout} s") from None
        if isinstance(item, BaseException):
            raise item
        if item is None:
            raise AssertionError("the subscriber ended")
        assert isinstance(item, Event)
        return item

    def until(self, name: str, timeout: float = WAIT) -> List[Event]:
        """Events up to and including the first named ``name``."""
        seen: List[Event] = []
        while True:
            ev = self.get(timeout)
            seen.append(ev)
            if ev.event == name:
                return seen

    def connected(self) -> Event:
        ev = self.get()
        assert ev.event == "connected", ev
        return ev

    def close(self) -> None:
        self.sub.close()
        self.thread.join(timeout=WAIT)


@pytest.fixture
def listen() -> Iterator[Callable[..., Listener]]:
    ls: List[Listener] = []

    def make(url: str, **kw: Any) -> Listener:
        li = Listener(url, **kw)
        ls.append(li)
        return li

    yield make
    for li in ls:
        li.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
