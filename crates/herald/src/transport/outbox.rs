//! The bounded queue of frames waiting to be written to one connection.
//!
//! Fan-out pushes into it without ever waiting: when a client reads too slowly and its outbox is
//! full, [`Outbox::push`] says so at once and the hub evicts that client, so one slow reader can
//! neither delay the others nor make the hub's memory grow. The response body drains the outbox,
//! taking everything queued in one go so that a burst of events becomes one write.
//!
//! A `parking_lot` mutex guards the state: every critical section is a few pointer moves with no
//! `.await`, and the lock is one byte, which matters at tens of thousands of connections.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The outbox holds its maximum of frames or bytes: the client is not keeping up.
    Full,
    /// The connection is closing or closed.
    Closed,
}

/// A socket that takes a connection's frames straight from the publishing thread (see
/// [`Outbox::claim`]): the lean HTTP/1.1 event stream installs one, so that an event for an
/// idle connection costs one `send` and no task wake-up.
pub(crate) trait DirectWrite: Send + Sync + std::fmt::Debug {
    /// Writes `frame` (in the stream's framing) without waiting. True when all of it went out;
    /// otherwise the sink keeps what is left (all of it when the socket took nothing): the
    /// outbox then hands its writer task an empty frame, on which the writer sends that rest
    /// before anything else it took, and calls [`Outbox::written`] once done.
    fn write_now(&self, frame: &[u8]) -> bool;
}

/// What the body gets when it polls the outbox.
#[derive(Debug)]
pub(crate) enum Drained {
    /// Bytes to write.
    Data(Bytes),
    /// The stream ends normally (after its last frame was written).
    End,
    /// The connection was aborted (slow consumer): end it without writing anything more.
    Aborted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Closing,
    Aborted,
}

#[derive(Debug)]
struct Inner {
    frames: VecDeque<Bytes>,
    queued_bytes: usize,
    state: State,
    waker: Option<Waker>,
    /// While a connection starts (and replays history when it resumes), live events wait here
    /// with their sequence numbers; [`Outbox::release`] then drops the ones at or below the
    /// stream's start position.
    held: Option<VecDeque<(u64, Bytes)>>,
    /// The stream's start position: events with a seq at or below it were replayed or predate
    /// the stream, and are dropped if they still arrive (fan-out runs behind publishing).
    floor: u64,
    /// Replayed frames still queued, which do not count against the limits (the replay cap
    /// bounds them): `replay_after` frames queued before them (heartbeats sent while the
    /// stream started), then `replay_frames` frames of `replay_bytes` bytes.
    replay_after: usize,
    replay_frames: usize,
    replay_bytes: usize,
    /// The socket to write to directly when nothing is queued or being written.
    direct: Option<Arc<dyn DirectWrite>>,
    /// The writer task holds bytes it took from here (or a direct write's remainder) and has
    /// not finished writing them: direct writes wait.
    writer_busy: bool,
    /// A publisher is writing a frame directly: the writer task waits.
    claimed: bool,
    /// A direct write left a rest with the sink: the writer's next poll gets an empty frame,
    /// its cue to send that rest before anything newer.
    rest_pending: bool,
}

impl Inner {
    /// Frames and bytes queued that count against the limits (everything but the replay).
    fn counted(&self) -> (usize, usize) {
        (
            self.frames.len() - self.replay_frames,
            self.queued_bytes - self.replay_bytes,
        )
    }

    /// Takes the front frame, keeping the replay's share in step.
    fn pop_front(&mut self) -> Option<Bytes> {
        let frame = self.frames.pop_front()?;
        if self.replay_after > 0 {
            self.replay_after -= 1;
        } else if self.replay_frames > 0 {
            self.replay_frames -= 1;
            self.replay_bytes -= frame.len();
        }
        self.queued_bytes -= frame.len();
        Some(frame)
    }
}

/// A bounded, single-consumer queue of encoded frames.
#[derive(Debug)]
pub(crate) struct Outbox {
    inner: Mutex<Inner>,
    max_frames: usize,
    max_bytes: usize,
}

/// Most bytes handed to the body in one piece; larger backlogs go out over several writes.
const MAX_COALESCED_BYTES: usize = 64 * 1024;

impl Outbox {
    /// An empty outbox that accepts up to `max_frames` frames and `max_bytes` bytes. A single
    /// frame larger than `max_bytes` is still accepted into an empty outbox, so that no event is
    /// undeliverable by size alone.
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Self {
        Outbox {
            inner: Mutex::new(Inner {
                frames: VecDeque::new(),
                queued_bytes: 0,
                state: State::Open,
                waker: None,
                held: None,
                floor: 0,
                replay_after: 0,
                replay_frames: 0,
                replay_bytes: 0,
                direct: None,
                writer_busy: false,
                claimed: false,
                rest_pending: false,
            }),
            max_frames: max_frames.max(1),
            max_bytes,
        }
    }

    /// Queues a frame without waiting.
    ///
    /// # Errors
    /// [`PushError::Full`] when the client is too far behind, [`PushError::Closed`] when the
    /// connection is closing.
    pub(crate) fn push(&self, frame: Bytes) -> Result<(), PushError> {
        let waker = {
            let mut inner = self.inner.lock();
            if inner.state != State::Open {
                return Err(PushError::Closed);
            }
            // A replay queued ahead does not count: a client that resumes across a large gap
            // keeps the full limits for the live events behind it, so it is not evicted for
            // the replay alone (it would reconnect and replay again, forever).
            let (frames, bytes) = inner.counted();
            let over_bytes = frames > 0 && bytes + frame.len() > self.max_bytes;
            if frames >= self.max_frames || over_bytes {
                return Err(PushError::Full);
            }
            inner.queued_bytes += frame.len();
            inner.frames.push_back(frame);
            inner.waker.take()
        };
        // Wake outside the lock: the woken task may run at once on another thread.
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Queues the frame of the published event `seq`. While the outbox is held (the stream is
    /// starting) the frame waits with its seq; an event at or below the stream's start position
    /// is dropped; otherwise it is queued as [`push`](Self::push) does. Returns whether it was
    /// queued (or held).
    ///
    /// # Errors
    /// As [`push`](Self::push); a held outbox is full at `max_frames` held events.
    pub(crate) fn push_event(&self, seq: u64, frame: Bytes) -> Result<bool, PushError> {
        {
            let mut inner = self.inner.lock();
            if inner.state != State::Open {
                return Err(PushError::Closed);
            }
            let max = self.max_frames;
            if let Some(held) = &mut inner.held {
                if held.len() >= max {
                    return Err(PushError::Full);
                }
                held.push_back((seq, frame));
                return Ok(true);
            }
            if seq <= inner.floor {
                return Ok(false);
            }
        }
        self.push(frame).map(|()| true)
    }

    /// Like [`push_event`](Self::push_event), but when the outbox has a direct socket and nothing
    /// is queued or being written, claims the socket instead of queueing: the caller then
    /// writes the frame with [`DirectClaim::write`] (now, or once it has released its locks) and
    /// no task is woken. Otherwise queues it (or holds it, or drops it as already sent), as
    /// `push_event` does.
    ///
    /// # Errors
    /// As [`push_event`](Self::push_event).
    pub(crate) fn claim(&self, seq: u64, frame: Bytes) -> Result<Claimed, PushError> {
        {
            let mut inner = self.inner.lock();
            if inner.state == State::Open
                && inner.held.is_none()
                && seq > inner.floor
                && inner.frames.is_empty()
                && !inner.writer_busy
                && !inner.claimed
                && !inner.rest_pending
            {
                if let Some(sink) = inner.direct.clone() {
                    inner.claimed = true;
                    return Ok(Claimed::Direct(DirectClaim { sink, frame }));
                }
            }
        }
        self.push_event(seq, frame).map(|queued| {
            if queued {
                Claimed::Queued
            } else {
                Claimed::Dropped
            }
        })
    }

    /// Ends a direct write: `complete` when the whole frame went out; otherwise the sink holds
    /// the rest for its writer, and direct writes wait until the writer calls
    /// [`written`](Self::written). Wakes the writer when frames were queued meanwhile.
    pub(crate) fn end_claim(&self, complete: bool) {
        let waker = {
            let mut inner = self.inner.lock();
            inner.claimed = false;
            if !complete {
                inner.writer_busy = true;
                inner.rest_pending = true;
            }
            if !complete || !inner.frames.is_empty() || inner.state != State::Open {
                inner.waker.take()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Installs (or with `None` removes) the socket for direct writes. The writer installs it
    /// once the stream's first bytes are written, so nothing can overtake them.
    pub(crate) fn set_direct(&self, sink: Option<Arc<dyn DirectWrite>>) {
        self.inner.lock().direct = sink;
    }

    /// The writer task finished writing what it last took (see [`DirectWrite`]).
    pub(crate) fn written(&self) {
        let mut inner = self.inner.lock();
        // A direct write's rest not yet handed to the writer keeps the socket its own.
        if !inner.rest_pending {
            inner.writer_busy = false;
        }
    }

    /// Starts holding live events (before a replay).
    pub(crate) fn hold(&self) {
        self.inner.lock().held = Some(VecDeque::new());
    }

    /// Queues replayed frames, then the held live events whose seq is above `floor` (the
    /// others were part of the replay, or predate the stream), and stops holding; later events
    /// at or below `floor` are dropped too. Replayed frames are not counted against the limits
    /// (the hub's replay cap bounds them) while they wait to be written.
    pub(crate) fn release(&self, replayed: impl IntoIterator<Item = Bytes>, floor: u64) {
        let waker = {
            let mut inner = self.inner.lock();
            let held = inner.held.take().unwrap_or_default();
            if inner.state != State::Open {
                return;
            }
            inner.floor = floor;
            inner.replay_after = inner.frames.len();
            for frame in replayed {
                inner.queued_bytes += frame.len();
                inner.replay_frames += 1;
                inner.replay_bytes += frame.len();
                inner.frames.push_back(frame);
            }
            for (seq, frame) in held {
                if seq > floor {
                    inner.queued_bytes += frame.len();
                    inner.frames.push_back(frame);
                }
            }
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Closes the stream gracefully: `last` (if any) is queued after everything already queued,
    /// even when the outbox is full, and the stream ends once it is written. Returns false if the
    /// outbox was already closing or aborted.
    pub(crate) fn close(&self, last: Option<Bytes>) -> bool {
        let waker = {
            let mut inner = self.inner.lock();
            if inner.state != State::Open {
                return false;
            }
            inner.state = State::Closing;
            if let Some(frame) = last {
                inner.queued_bytes += frame.len();
                inner.frames.push_back(frame);
            }
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Aborts the stream: drops everything queued and ends the body with an error, which makes
    /// the HTTP server drop the connection.
    pub(crate) fn abort(&self) {
        let waker = {
            let mut inner = self.inner.lock();
            inner.state = State::Aborted;
            inner.frames = VecDeque::new();
            inner.held = None;
            inner.queued_bytes = 0;
            inner.replay_after = 0;
            inner.replay_frames = 0;
            inner.replay_bytes = 0;
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Ready once the stream was aborted (the client was evicted); otherwise registers the
    /// caller's waker, which [`abort`](Self::abort) wakes (and so does any push: the slot is
    /// [`poll_drain`](Self::poll_drain)'s). For a writer that also waits on something else (a
    /// socket that takes no more) and so may not be in `poll_drain` when the abort comes: it
    /// must run in the task that drains the outbox, the slot holds one waker.
    pub(crate) fn poll_aborted(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.lock();
        if inner.state == State::Aborted {
            return Poll::Ready(());
        }
        match &inner.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => inner.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// True once [`close`](Self::close) or [`abort`](Self::abort) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.lock().state != State::Open
    }

    /// Takes everything queued (up to a coalescing limit) as one buffer, or registers the
    /// caller's waker when there is nothing.
    pub(crate) fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<Drained> {
        let mut inner = self.inner.lock();
        if inner.state == State::Aborted {
            return Poll::Ready(Drained::Aborted);
        }
        if inner.claimed {
            // A publisher is writing to the socket; `end_claim` wakes us.
            match &inner.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => inner.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        if inner.rest_pending {
            inner.rest_pending = false;
            return Poll::Ready(Drained::Data(Bytes::new()));
        }
        let Some(first) = inner.pop_front() else {
            if inner.state == State::Closing {
                return Poll::Ready(Drained::End);
            }
            match &inner.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => inner.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        };
        let next_fits = |inner: &Inner, len: usize| {
            inner
                .frames
                .front()
                .is_some_and(|f| len + f.len() <= MAX_COALESCED_BYTES)
        };
        if inner.direct.is_some() {
            inner.writer_busy = true;
        }
        if !next_fits(&inner, first.len()) {
            return Poll::Ready(Drained::Data(first));
        }
        let mut buf = BytesMut::with_capacity(first.len() * 2);
        buf.extend_from_slice(&first);
        while next_fits(&inner, buf.len()) {
            // `next_fits` just saw a front frame.
            let f = inner.pop_front().expect("front frame exists");
            buf.extend_from_slice(&f);
        }
        if inner.frames.is_empty() {
            // Give back the memory of a burst instead of keeping it per connection.
            inner.frames.shrink_to(4);
        }
        Poll::Ready(Drained::Data(buf.freeze()))
    }
}

/// What [`Outbox::claim`] did with a frame.
#[derive(Debug)]
pub(crate) enum Claimed {
    /// The caller writes it to the socket.
    Direct(DirectClaim),
    /// Queued (or held) for the writer task.
    Queued,
    /// At or below the stream's start position: already sent as part of a replay.
    Dropped,
}

/// A frame that [`Outbox::claim`] let its caller write straight to the socket.
#[derive(Debug)]
pub(crate) struct DirectClaim {
    sink: Arc<dyn DirectWrite>,
    frame: Bytes,
}

impl DirectClaim {
    /// Writes the frame and ends the claim on `outbox` (the one that made it).
    pub(crate) fn write(self, outbox: &Outbox) {
        let complete = self.sink.write_now(&self.frame);
        outbox.end_claim(complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn drain(o: &Outbox) -> Poll<Drained> {
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag);
        o.poll_drain(&mut Context::from_waker(&waker))
    }

    #[test]
    fn coalesces_queued_frames_in_order() {
        let o = Outbox::new(8, 1 << 20);
        o.push(Bytes::from_static(b"a")).unwrap();
        o.push(Bytes::from_static(b"b")).unwrap();
        o.push(Bytes::from_static(b"c")).unwrap();
        match drain(&o) {
            Poll::Ready(Drained::Data(d)) => assert_eq!(&d[..], b"abc"),
            other => panic!("{other:?}"),
        }
        assert!(drain(&o).is_pending());
    }

    #[test]
    fn full_by_frames_and_by_bytes() {
        let o = Outbox::new(2, 10);
        o.push(Bytes::from_static(b"12345")).unwrap();
        o.push(Bytes::from_static(b"12345")).unwrap();
        assert_eq!(o.push(Bytes::from_static(b"1")), Err(PushError::Full));
        let o = Outbox::new(100, 10);
        o.push(Bytes::from_static(b"123456")).unwrap();
        assert_eq!(o.push(Bytes::from_static(b"123456")), Err(PushError::Full));
        // A single oversized frame still fits an empty outbox.
        let o = Outbox::new(100, 10);
        o.push(Bytes::from(vec![0u8; 100])).unwrap();
    }

    #[test]
    fn push_wakes_the_waiting_body() {
        let o = Outbox::new(4, 1024);
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        assert!(o.poll_drain(&mut Context::from_waker(&waker)).is_pending());
        o.push(Bytes::from_static(b"x")).unwrap();
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn close_delivers_the_last_frame_then_ends() {
        let o = Outbox::new(1, 1024);
        o.push(Bytes::from_static(b"a")).unwrap();
        assert!(o.close(Some(Bytes::from_static(b"bye"))));
        assert_eq!(o.push(Bytes::from_static(b"late")), Err(PushError::Closed));
        match drain(&o) {
            Poll::Ready(Drained::Data(d)) => assert_eq!(&d[..], b"abye"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(drain(&o), Poll::Ready(Drained::End)));
        assert!(!o.close(None));
    }

    #[test]
    fn an_abort_wakes_a_writer_that_waits_on_its_socket() {
        let o = Outbox::new(8, 1024);
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(o.poll_aborted(&mut cx).is_pending());
        assert!(!flag.0.load(std::sync::atomic::Ordering::SeqCst));
        o.abort();
        assert!(
            flag.0.load(std::sync::atomic::Ordering::SeqCst),
            "not woken"
        );
        assert!(o.poll_aborted(&mut cx).is_ready());
        // A close is not an abort: the writer drains the last frame.
        let o = Outbox::new(8, 1024);
        o.close(None);
        assert!(o.poll_aborted(&mut cx).is_pending());
    }

    #[test]
    fn abort_drops_the_backlog() {
        let o = Outbox::new(4, 1024);
        o.push(Bytes::from_static(b"a")).unwrap();
        o.abort();
        assert!(matches!(drain(&o), Poll::Ready(Drained::Aborted)));
        assert!(o.is_closed());
    }

    #[test]
    fn held_events_are_released_after_the_replay_without_duplicates() {
        let o = Outbox::new(8, 1 << 20);
        o.hold();
        // Live events 5 and 6 arrive while the replay (3, 4, 5) is being read.
        o.push_event(5, Bytes::from_static(b"5")).unwrap();
        o.push_event(6, Bytes::from_static(b"6")).unwrap();
        // Heartbeats are not held.
        o.push(Bytes::from_static(b"h")).unwrap();
        o.release([b"3", b"4", b"5"].map(|b| Bytes::from_static(b)), 5);
        o.push_event(7, Bytes::from_static(b"7")).unwrap();
        // An event at or below the floor arriving late (fan-out runs behind) is dropped.
        assert_eq!(o.push_event(4, Bytes::from_static(b"4")), Ok(false));
        match drain(&o) {
            Poll::Ready(Drained::Data(d)) => assert_eq!(&d[..], b"h34567"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_replay_does_not_count_against_the_limits() {
        let o = Outbox::new(4, 1 << 20);
        o.hold();
        o.push(Bytes::from_static(b"h")).unwrap();
        // A replay of 10 frames into an outbox of 4: live events still have room for 4
        // (with the heartbeat queued before the replay counted as one of them).
        o.release((0..10).map(|_| Bytes::from_static(b"r")), 10);
        for seq in 11..14 {
            assert_eq!(o.push_event(seq, Bytes::from_static(b"l")), Ok(true));
        }
        assert_eq!(
            o.push_event(14, Bytes::from_static(b"l")),
            Err(PushError::Full)
        );
        // Once the client has read it all, the limits are whole again.
        match drain(&o) {
            Poll::Ready(Drained::Data(d)) => assert_eq!(&d[..], b"hrrrrrrrrrrlll"),
            other => panic!("{other:?}"),
        }
        for seq in 14..18 {
            assert_eq!(o.push_event(seq, Bytes::from_static(b"l")), Ok(true));
        }
        assert_eq!(
            o.push_event(18, Bytes::from_static(b"l")),
            Err(PushError::Full)
        );
    }

    #[test]
    fn large_backlogs_are_split() {
        let o = Outbox::new(100, usize::MAX);
        for _ in 0..3 {
            o.push(Bytes::from(vec![1u8; 40 * 1024])).unwrap();
        }
        for _ in 0..3 {
            match drain(&o) {
                Poll::Ready(Drained::Data(d)) => assert_eq!(d.len(), 40 * 1024),
                other => panic!("{other:?}"),
            }
        }
    }

    /// A socket that takes `room` more bytes, recording what it took.
    #[derive(Debug, Default)]
    struct Sink {
        taken: parking_lot::Mutex<Vec<u8>>,
        room: std::sync::atomic::AtomicUsize,
    }

    impl DirectWrite for Sink {
        fn write_now(&self, frame: &[u8]) -> bool {
            let room = self.room.load(std::sync::atomic::Ordering::SeqCst);
            let n = room.min(frame.len());
            self.room.fetch_sub(n, std::sync::atomic::Ordering::SeqCst);
            self.taken.lock().extend_from_slice(&frame[..n]);
            n == frame.len()
        }
    }

    #[test]
    fn direct_writes_only_when_nothing_is_queued_or_being_written() {
        let o = Outbox::new(8, 1 << 20);
        let sink = Arc::new(Sink::default());
        sink.room
            .store(1 << 20, std::sync::atomic::Ordering::SeqCst);
        // Without a sink: queued.
        assert!(matches!(
            o.claim(1, Bytes::from_static(b"a")),
            Ok(Claimed::Queued)
        ));
        o.set_direct(Some(sink.clone()));
        // Something queued: still queued (it must go first).
        assert!(matches!(
            o.claim(2, Bytes::from_static(b"b")),
            Ok(Claimed::Queued)
        ));
        match drain(&o) {
            Poll::Ready(Drained::Data(d)) => assert_eq!(&d[..], b"ab"),
            other => panic!("{other:?}"),
        }
        // The writer holds "ab" until it says it is written.
        assert!(matches!(
            o.claim(3, Bytes::from_static(b"c")),
            Ok(Claimed::Queued)
        ));
        o.written();
        match drain(&o) {
            Poll::Ready(Drained::Data(d)) => assert_eq!(&d[..], b"c"),
            other => panic!("{other:?}"),
        }
        o.written();
        assert!(drain(&o).is_pending());
        // Idle: the publisher writes; while it does, others queue and the writer waits.
        let Ok(Claimed::Direct(claim)) = o.claim(4, Bytes::from_static(b"d")) else {
            panic!("an idle outbox is claimed");
        };
        assert!(matches!(
            o.claim(5, Bytes::from_static(b"e")),
            Ok(Claimed::Queued)
        ));
        assert!(drain(&o).is_pending(), "the writer waits for the claim");
        claim.write(&o);
        assert_eq!(&sink.taken.lock()[..], b"d");
        match drain(&o) {
            Poll::Ready(Drained::Data(d)) => assert_eq!(&d[..], b"e"),
            other => panic!("{other:?}"),
        }
        o.written();
        // Already sent (at or below the floor) and held frames are never written directly.
        o.hold();
        assert!(matches!(
            o.claim(6, Bytes::from_static(b"f")),
            Ok(Claimed::Queued)
        ));
        o.release([], 6);
        assert!(matches!(
            o.claim(6, Bytes::from_static(b"f")),
            Ok(Claimed::Dropped)
        ));
        // A socket that takes only part: direct writes stop until the writer sent the rest.
        sink.room.store(0, std::sync::atomic::Ordering::SeqCst);
        let Ok(Claimed::Direct(claim)) = o.claim(7, Bytes::from_static(b"g")) else {
            panic!("an idle outbox is claimed");
        };
        claim.write(&o);
        // The writer's cue to send the rest the sink kept.
        match drain(&o) {
            Poll::Ready(Drained::Data(d)) => assert!(d.is_empty()),
            other => panic!("{other:?}"),
        }
        sink.room
            .store(1 << 20, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            o.claim(8, Bytes::from_static(b"h")),
            Ok(Claimed::Queued)
        ));
        o.written();
        match drain(&o) {
            Poll::Ready(Drained::Data(d)) => assert_eq!(&d[..], b"h"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_rest_keeps_publishers_off_the_socket_until_the_writer_took_it() {
        let o = Outbox::new(8, 1 << 20);
        let sink = Arc::new(Sink::default());
        o.set_direct(Some(sink.clone()));
        // The socket takes nothing: the whole frame is a rest.
        let Ok(Claimed::Direct(claim)) = o.claim(1, Bytes::from_static(b"a")) else {
            panic!("an idle outbox is claimed");
        };
        claim.write(&o);
        // A `written` from the writer's previous write must not free the socket now.
        o.written();
        sink.room
            .store(1 << 20, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            o.claim(2, Bytes::from_static(b"b")),
            Ok(Claimed::Queued)
        ));
        match drain(&o) {
            Poll::Ready(Drained::Data(d)) => assert!(d.is_empty(), "the cue comes first"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            o.claim(3, Bytes::from_static(b"c")),
            Ok(Claimed::Queued)
        ));
        o.written();
        match drain(&o) {
            Poll::Ready(Drained::Data(d)) => assert_eq!(&d[..], b"bc"),
            other => panic!("{other:?}"),
        }
    }
}
