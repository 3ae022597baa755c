//! HTTP/1.1 connections that open an event stream, served without hyper.
//!
//! An idle SSE connection is most of what Herald holds, so its footprint decides how many fit in
//! a GiB. hyper keeps an 8 KiB read buffer and an 8 KiB write buffer per HTTP/1.1 connection for
//! its whole life; an event stream needs neither. So the server reads the first request head of
//! every plain-TCP connection itself, into a small buffer:
//!
//! - `GET /api/sse…` (and `GET /.well-known/mercure…`, Mercure's event streams, but not its
//!   subscriptions API): the request still goes through the same axum router (authentication,
//!   limits, errors and all), but the response is written here: the head once, then the body as
//!   chunks straight to the socket, while a 1-byte read notices the client hanging up. Nothing
//!   is kept between writes. The connection closes when the response ends.
//! - anything else: the bytes already read are handed back, and hyper serves the connection as
//!   usual (keep-alive, pipelining, HTTP/2 prior knowledge).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::http::STREAM_PATH;
use crate::mercure::HUB_PATH;
use crate::transport::outbox::DirectWrite;
use crate::transport::WriterHandle;

/// Most headers in a request head read here.
const MAX_HEADERS: usize = 64;
/// Most bytes a client may send after an event-stream request before the server hangs up.
const MAX_STRAY_BYTES: usize = 1024;
/// First size of the head buffer; it grows (up to the configured maximum) for larger heads.
const INITIAL_HEAD_BUFFER: usize = 1024;

/// What reading the first request head found.
pub(crate) enum FirstRequest {
    /// A `GET /api/sse` request, parsed, ready for the router.
    EventStream(Box<axum::http::Request<Body>>),
    /// A WebSocket handshake (`GET /api/ws`, or `/socket.io/` with `transport=websocket`): for
    /// hyper, like [`FirstRequest::Other`], but on the stream runtime, where the socket then
    /// stays (the API runtime is for short requests).
    Socket(Bytes),
    /// Anything else: the bytes read so far, for hyper to parse again.
    Other(Bytes),
    /// The client closed the connection, or took too long.
    Gone,
    /// A head Herald refuses before routing it (too large, or not HTTP at all): answered here
    /// with the JSON error body and security headers every other answer has, then closed.
    /// (hyper would answer with an empty body.)
    /// (`true` when the head names the Mercure hub's paths: answered in its protocol's form.)
    Refused(RefusedHead, bool),
}

/// Why a first request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefusedHead {
    /// Over `--max-header-size`: `431 headers_too_large`.
    TooLarge,
    /// Not a parseable HTTP/1.x request (and not the HTTP/2 preface): `400 malformed_request`.
    Malformed,
}

impl RefusedHead {
    /// The whole HTTP/1.1 response: Mercure's `text/plain` when `mercure` (a head for the
    /// Mercure hub's paths), Herald's JSON error body otherwise.
    pub(crate) fn response(self, mercure: bool) -> Vec<u8> {
        let (status, code, message) = match self {
            RefusedHead::TooLarge => (
                "431 Request Header Fields Too Large",
                "headers_too_large",
                "the request head is larger than the hub's --max-header-size",
            ),
            RefusedHead::Malformed => (
                "400 Bad Request",
                "malformed_request",
                "the request is not a valid HTTP/1.1 request",
            ),
        };
        let (content_type, body) = if mercure {
            ("text/plain; charset=utf-8", format!("{message}\n"))
        } else {
            let body = serde_json::json!({ "error": { "code": code, "message": message } });
            ("application/json", body.to_string())
        };
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
             x-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\n\
             x-frame-options: DENY\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// Whether a request line (of a head that may be cut short or malformed) names the Mercure hub
/// or a path below it.
fn head_is_for_mercure(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(head);
    let Some(target) = line.split(|&b| b == b' ').nth(1) else {
        return false;
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or(target);
    std::str::from_utf8(path).is_ok_and(crate::mercure::is_hub_path)
}

/// The start of the HTTP/2 connection preface: such a connection goes to hyper.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Whether `buf` could be the start of the HTTP/2 preface.
fn maybe_http2(buf: &[u8]) -> bool {
    let n = buf.len().min(HTTP2_PREFACE.len());
    buf[..n] == HTTP2_PREFACE[..n]
}

/// Reads the first request head of a connection, until `deadline` at the latest (the
/// connection's whole budget for its first head: hyper, when it takes over, gets only what is
/// left, see `Connection::run`).
///
/// Linear in the head's size however it is split into reads: each read only scans its own bytes
/// (and the three before) for the end of the head, and the head is parsed twice at most, once
/// its first line is in (to hand anything that is not HTTP/1.x, e.g. the HTTP/2 preface, to
/// hyper at once) and once it is complete (then once more to build the request).
pub(crate) async fn read_first_request(
    stream: &mut TcpStream,
    max_head: usize,
    deadline: tokio::time::Instant,
) -> FirstRequest {
    let mut buf = BytesMut::with_capacity(INITIAL_HEAD_BUFFER);
    let read = tokio::time::timeout_at(deadline, async {
        // Bytes of `buf` already scanned for the end of the head.
        let mut scanned = 0usize;
        let mut first_line_checked = false;
        loop {
            if buf.len() >= max_head {
                return Ok(Err(RefusedHead::TooLarge));
            }
            if buf.capacity() == buf.len() {
                buf.reserve(buf.len().min(max_head - buf.len()).max(512));
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            let from = scanned.saturating_sub(3);
            let complete = head_end(&buf[from..]);
            if !complete && !first_line_checked && buf[from..].contains(&b'\n') {
                first_line_checked = true;
                if parse_head(&buf).is_err() {
                    if maybe_http2(&buf) {
                        return Ok(Ok(false));
                    }
                    return Ok(Err(RefusedHead::Malformed));
                }
            }
            scanned = buf.len();
            if complete {
                return Ok(match parse_head(&buf) {
                    Ok(httparse::Status::Complete(_)) => Ok(true),
                    // More headers than we parse: hyper decides.
                    Err(httparse::Error::TooManyHeaders) => Ok(false),
                    Ok(httparse::Status::Partial) => Ok(false),
                    Err(_) if maybe_http2(&buf) => Ok(false),
                    Err(_) => Err(RefusedHead::Malformed),
                });
            }
        }
    })
    .await;
    match read {
        Ok(Ok(Ok(true))) => match build_request(&buf) {
            Some(request) => FirstRequest::EventStream(Box::new(request)),
            None if is_socket_handshake(&buf) => FirstRequest::Socket(buf.freeze()),
            None => FirstRequest::Other(buf.freeze()),
        },
        Ok(Ok(Ok(false))) => FirstRequest::Other(buf.freeze()),
        Ok(Ok(Err(refused))) => FirstRequest::Refused(refused, head_is_for_mercure(&buf)),
        // The client closed before a whole head: hyper answers as it would have.
        Ok(Err(_)) if !buf.is_empty() => FirstRequest::Other(buf.freeze()),
        // Nothing, or the deadline passed before a whole head: close. (Handing a partial head
        // to hyper would give it a deadline of its own.)
        Ok(Err(_)) | Err(_) => FirstRequest::Gone,
    }
}

/// Whether `bytes` hold the end of a request head: an empty line, ended by `\r\n` or (as
/// httparse allows) a bare `\n`.
fn head_end(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .any(|(i, _)| matches!(bytes.get(i + 1..), Some([b'\n', ..] | [b'\r', b'\n', ..])))
}

fn parse_head(buf: &[u8]) -> httparse::Result<usize> {
    #[cfg(test)]
    tests::PARSES.with(|n| n.set(n.get() + 1));
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    httparse::Request::new(&mut headers).parse(buf)
}

/// Whether `head` is a `GET` of the WebSocket path ([`crate::ws::WS_PATH`]).
fn is_socket_handshake(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    if !matches!(parsed.parse(head), Ok(httparse::Status::Complete(_))) {
        return false;
    }
    let path = parsed.path.unwrap_or("");
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    parsed.method == Some("GET")
        && (path == crate::ws::WS_PATH
            // A Socket.IO socket on a WebSocket (from the start, or upgraded from polling): as
            // long-lived as `/api/ws`'s, so it stays off the API runtime too.
            || (path == crate::socketio::SOCKETIO_PATH
                && form_urlencoded::parse(query.as_bytes())
                    .any(|(key, value)| key == "transport" && value == "websocket")))
}

/// Builds the request when it is a bodiless `GET` of the stream path ([`STREAM_PATH`]) or of
/// the Mercure hub ([`HUB_PATH`]) over HTTP/1.x; `None` otherwise.
fn build_request(head: &[u8]) -> Option<axum::http::Request<Body>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = parsed.parse(head).ok()? else {
        return None;
    };
    if head[len..].iter().any(|b| !matches!(b, b'\r' | b'\n')) {
        // Pipelined bytes after the head: leave the connection to hyper. (Empty lines are
        // not a request: clients that end their head with one CRLF too many are served here.)
        return None;
    }
    let path = parsed.path?;
    let path_only = path.split('?').next().unwrap_or(path);
    if parsed.method? != "GET" || (path_only != STREAM_PATH && path_only != HUB_PATH) {
        return None;
    }
    let version = match parsed.version? {
        0 => axum::http::Version::HTTP_10,
        _ => axum::http::Version::HTTP_11,
    };
    let mut builder = axum::http::Request::builder()
        .method(axum::http::Method::GET)
        .uri(path)
        .version(version);
    for h in parsed.headers.iter() {
        let name = axum::http::HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        // A request with a body is not an event-stream request.
        if name == axum::http::header::CONTENT_LENGTH && h.value != b"0"
            || name == axum::http::header::TRANSFER_ENCODING
        {
            return None;
        }
        let value = axum::http::HeaderValue::from_bytes(h.value).ok()?;
        builder = builder.header(name, value);
    }
    builder.body(Body::empty()).ok()
}

/// Writes `response` to the client: the head, then the body as HTTP/1.1 chunks (close-delimited
/// for an HTTP/1.0 client) as frames become available, until the body ends, the client goes
/// away, or a write fails. The connection is not reused afterwards.
///
/// Once the stream's first bytes are out, the socket is also handed to the connection's outbox
/// (when the response carries a [`WriterHandle`]): an event for a connection with nothing
/// queued is then written by the publishing thread itself ([`SocketSink`]), and this task only
/// wakes for backlogs, heartbeats from the shard tasks, and the rest of a write the socket did
/// not take whole.
///
/// `abort` cancels a write that the client's full socket holds up (the hub evicted it); while
/// waiting for events, the body's own error does that.
///
/// Not an `async fn`: an async function keeps its arguments in its future for as long as it
/// runs, and this one runs as long as the stream, so the response's parts are consumed here and
/// the future holds only what the stream needs.
pub(crate) fn write_response(
    stream: TcpStream,
    response: axum::http::Response<Body>,
    http10: bool,
    abort: &tokio_util::sync::CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + '_ {
    let (mut parts, body) = response.into_parts();
    let writer = parts.extensions.remove::<WriterHandle>();
    let mut head = BytesMut::with_capacity(256);
    let status = parts.status;
    head.put_slice(b"HTTP/1.1 ");
    head.put_slice(status.as_str().as_bytes());
    head.put_u8(b' ');
    head.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.put_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == axum::http::header::CONTENT_LENGTH
            || name == axum::http::header::TRANSFER_ENCODING
            || name == axum::http::header::CONNECTION
        {
            continue;
        }
        head.put_slice(name.as_str().as_bytes());
        head.put_slice(b": ");
        head.put_slice(value.as_bytes());
        head.put_slice(b"\r\n");
    }
    if !http10 {
        head.put_slice(b"transfer-encoding: chunked\r\n");
    }
    head.put_slice(b"connection: close\r\n\r\n");
    drop(parts);
    stream_body(stream, head, body, writer, http10, abort)
}

/// The rest of [`write_response`], once the head is built.
async fn stream_body(
    stream: TcpStream,
    mut head: BytesMut,
    mut body: Body,
    writer: Option<WriterHandle>,
    http10: bool,
    abort: &tokio_util::sync::CancellationToken,
) {
    // One allocation for the socket and what direct writes need of it.
    let sink = Arc::new(SocketSink {
        socket: stream,
        chunked: !http10,
        rest: parking_lot::Mutex::new(None),
    });
    let socket = &sink.socket;
    // What the body already holds (a stream's opening: the `connected` event, a replay) goes
    // out with the head, in one write: one send and one wake-up of the client per connect.
    let mut opening: Vec<Bytes> = Vec::new();
    let mut ended = false;
    while let Some(frame) = body.frame().now_or_never() {
        match frame {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    opening.push(data);
                }
            }
            Some(Err(_)) => return,
            None => {
                ended = true;
                break;
            }
        }
    }
    let opened = !opening.is_empty();
    put_chunk(&mut head, &opening, !http10);
    drop(opening);
    if write_all(socket, &head).await.is_err() {
        return;
    }
    drop(head);
    // Takes the socket back from the outbox however this function ends.
    let mut direct = DirectGuard {
        writer,
        installed: false,
    };
    if opened && !ended {
        // As after any write below: publishers may now write directly.
        direct.written();
        direct.install(&sink);
    }
    let mut probe = [0u8; 1];
    let mut stray = 0usize;
    while !ended {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            // Clients send nothing after the request but may send a stray empty line: a read
            // of 0 bytes (or an error) means they closed. Bytes are ignored, up to a bound
            // (no request after a stream's can ever be answered on this connection).
            read = read_some(socket, &mut probe) => match read {
                Ok(n) if n > 0 && stray < MAX_STRAY_BYTES => {
                    stray += n;
                    continue;
                }
                _ => return,
            },
        };
        let mut pieces: Vec<Bytes> = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => vec![data],
                Err(_) => continue, // trailers: none on event streams
            },
            // The hub aborted the stream (slow consumer): drop the connection.
            Some(Err(_)) => return,
            None => break,
        };
        // Under load, let the other connections' tasks run once before writing: events
        // published meanwhile join this write instead of costing a write (and a client wake-up)
        // each. Idle, this costs one trip through the scheduler.
        tokio::task::yield_now().await;
        while let Some(more) = body.frame().now_or_never() {
            match more {
                Some(Ok(frame)) => {
                    if let Ok(more) = frame.into_data() {
                        pieces.push(more);
                    }
                }
                Some(Err(_)) => return,
                None => {
                    ended = true;
                    break;
                }
            }
        }
        // What a direct write left (the outbox's empty frame was the cue): older than
        // anything taken here, so it goes first.
        let rest = sink.rest.lock().take();
        if let Some(rest) = rest {
            let written = tokio::select! {
                biased;
                w = write_all(socket, &rest) => w,
                _ = abort.cancelled() => return,
            };
            if written.is_err() {
                return;
            }
        }
        let len: usize = pieces.iter().map(Bytes::len).sum();
        if len > 0 {
            let mut out = BytesMut::with_capacity(len + 20);
            put_chunk(&mut out, &pieces, !http10);
            drop(pieces);
            // Checked only when the write does not complete at once: the common case polls
            // the write alone.
            let written = tokio::select! {
                biased;
                w = write_all(socket, &out) => w,
                _ = abort.cancelled() => return,
            };
            if written.is_err() {
                return;
            }
        }
        if ended {
            break;
        }
        // The first bytes (the opening) are out: from now on publishers may write directly.
        // (In this order: `written` after `install` could clear what a partial direct write,
        // made in between, set to keep other publishers off the socket.)
        direct.written();
        direct.install(&sink);
    }
    drop(direct);
    if !http10 {
        let _ = write_all(socket, b"0\r\n\r\n").await;
    }
    if let Ok(sink) = Arc::try_unwrap(sink) {
        let mut stream = sink.socket;
        let _ = stream.shutdown().await;
    }
}

/// Appends `pieces` to `out` as one chunk of the body (nothing when they are empty; with the
/// chunk's size line and CRLF when `chunked`).
fn put_chunk(out: &mut BytesMut, pieces: &[Bytes], chunked: bool) {
    let len: usize = pieces.iter().map(Bytes::len).sum();
    if len == 0 {
        return;
    }
    out.reserve(len + 20);
    if chunked {
        let _ = std::fmt::Write::write_fmt(out, format_args!("{len:x}\r\n"));
    }
    for piece in pieces {
        out.put_slice(piece);
    }
    if chunked {
        out.put_slice(b"\r\n");
    }
}

/// Writes all of `bytes` to a socket that publishers may also write to directly.
async fn write_all(socket: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match socket.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            // Polled readiness, not `writable()`: no waiter node in the task's state.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::future::poll_fn(|cx| socket.poll_write_ready(cx)).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what the socket holds (at least one byte, or 0 at its end).
async fn read_some(socket: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // Polled readiness, not `readable()`: an idle stream waits here, and the poll keeps
        // no waiter node in its task.
        std::future::poll_fn(|cx| socket.poll_read_ready(cx)).await?;
        match socket.try_read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            read => return read,
        }
    }
}

/// The socket of a lean event stream as its outbox sees it: publishers write an event's chunk
/// straight to it (`send` with `MSG_DONTWAIT` semantics: never waiting) when the connection has
/// nothing queued; what the socket does not take waits here for the writer task.
#[derive(Debug)]
struct SocketSink {
    socket: TcpStream,
    chunked: bool,
    /// The part of a direct write the socket did not take.
    rest: parking_lot::Mutex<Option<Bytes>>,
}

impl DirectWrite for SocketSink {
    fn write_now(&self, frame: &[u8]) -> bool {
        if frame.is_empty() {
            // (An empty chunk would end the response.)
            return true;
        }
        let mut size = [0u8; 20];
        let size_len = if self.chunked {
            let mut cursor = io::Cursor::new(&mut size[..]);
            // 16 hex digits and CRLF at most: always fits.
            let _ = io::Write::write_fmt(&mut cursor, format_args!("{:x}\r\n", frame.len()));
            cursor.position() as usize
        } else {
            0
        };
        let trailer: &[u8] = if self.chunked { b"\r\n" } else { b"" };
        let parts: [&[u8]; 3] = [&size[..size_len], frame, trailer];
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let written = match self.socket.try_write_vectored(&parts.map(io::IoSlice::new)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            // A broken connection: the writer task sees it on its next read or write.
            Err(_) => return true,
        };
        if written >= total {
            return true;
        }
        debug_assert!(self.rest.lock().is_none(), "one rest at a time");
        let mut rest = BytesMut::with_capacity(total - written);
        let mut skip = written;
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            rest.put_slice(&part[skip..]);
            skip = 0;
        }
        *self.rest.lock() = Some(rest.freeze());
        false
    }
}

/// The writer's side of direct writes: installs the socket in the outbox, and takes it back
/// when dropped (so the outbox never holds the socket past the writer).
struct DirectGuard {
    writer: Option<WriterHandle>,
    installed: bool,
}

impl DirectGuard {
    fn install(&mut self, sink: &Arc<SocketSink>) {
        if let (Some(writer), false) = (&self.writer, self.installed) {
            writer.set_direct(Some(sink.clone()));
            self.installed = true;
        }
    }

    /// The writer finished a write.
    fn written(&self) {
        if let Some(writer) = &self.writer {
            writer.written();
        }
    }
}

impl Drop for DirectGuard {
    fn drop(&mut self) {
        if let (Some(writer), true) = (&self.writer, self.installed) {
            writer.set_direct(None);
        }
    }
}

/// A stream that first yields bytes already read from it, then reads on: lets hyper parse a
/// request head that was read here first.
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// How many times this thread parsed a head.
        pub(super) static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Sends `head` one byte per write (each one read on its own) and returns what the reader
    /// made of it and how many times it parsed.
    async fn read_trickled(head: &[u8]) -> (FirstRequest, usize) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        client.set_nodelay(true).unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let head = head.to_vec();
        let writer = tokio::spawn(async move {
            for b in head {
                client.write_all(&[b]).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            client
        });
        PARSES.with(|n| n.set(0));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let first = read_first_request(&mut server, 64 * 1024, deadline).await;
        drop(writer.await.unwrap());
        (first, PARSES.with(|n| n.get()))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_head_sent_byte_by_byte_is_parsed_a_bounded_number_of_times() {
        let mut head = b"GET /api/sse?channels=news HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..10 {
            head.extend_from_slice(format!("X-Padding-{i}: {}\r\n", "p".repeat(40)).as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let (first, parses) = read_trickled(&head).await;
        assert!(matches!(first, FirstRequest::EventStream(_)));
        assert!(
            parses <= 3,
            "{parses} parses for a {}-byte head",
            head.len()
        );
        // Bare-LF line ends, split anywhere, are found as well.
        let (first, _) = read_trickled(b"GET /api/sse HTTP/1.1\nHost: x\n\n").await;
        assert!(matches!(first, FirstRequest::EventStream(_)));
        // Not HTTP/1.x: handed over once its first line is in, not at the deadline.
        let (first, _) = read_trickled(b"PRI * HTTP/2.0\r\n").await;
        assert!(matches!(first, FirstRequest::Other(b) if &b[..] == b"PRI * HTTP/2.0\r\n"));
    }

    #[test]
    fn only_bodiless_gets_of_the_stream_path_are_taken() {
        let ok = b"GET /api/sse?userId=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1\r\n\r\n";
        let r = build_request(ok).unwrap();
        assert_eq!(r.uri(), "/api/sse?userId=a");
        // A stray empty line after the head is no request.
        assert!(build_request(b"GET /api/sse HTTP/1.1\r\nHost: x\r\n\r\n\r\n").is_some());
        assert_eq!(r.headers()["last-event-id"], "1");
        // Mercure's event streams too.
        let m = build_request(b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(m.unwrap().uri(), "/.well-known/mercure?topic=a");
        for other in [
            &b"GET /.well-known/mercure/subscriptions HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n",
            b"POST /api/sse HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n",
            b"GET /api/sse/stats HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /api/ssex HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /api/sse HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /api/sse HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                build_request(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
