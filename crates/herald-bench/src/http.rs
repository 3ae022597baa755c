//! A minimal HTTP/1.1 client over raw Tokio sockets: just what a load generator needs (GET a
//! stream, POST small bodies over keep-alive connections), with no per-request allocation once
//! its buffers are warm.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest non-streaming response body kept (the rest is read and dropped).
const MAX_KEPT_BODY: usize = 1024 * 1024;

/// Opens a TCP connection to `addr`, first binding to `source` (port chosen by the kernel) when
/// given, so that connections can be spread over several loopback source addresses.
pub(crate) async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

/// Writes a request head (and `body`, if any) into `out`.
pub(crate) fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    host: &str,
    path: &[u8],
    headers: &[(String, String)],
    body: Option<(&str, &[u8])>,
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nUser-Agent: herald-bench\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some((content_type, body)) = body {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Chunked,
    Length(u64),
    /// Until the server closes the connection.
    Close,
}

/// What the client needs from a response head.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
    pub(crate) content_type: String,
    /// `Upgrade` and `Sec-WebSocket-Accept` (a WebSocket handshake's answer), empty if absent.
    pub(crate) upgrade: String,
    pub(crate) ws_accept: String,
}

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete. On success returns the
/// head and its length in bytes.
pub(crate) fn parse_head(buf: &[u8], for_head_request: bool) -> io::Result<Option<(Head, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                return Err(bad_data("response head too large"));
            }
            return Ok(None);
        }
        Err(e) => return Err(bad_data(&format!("bad response head: {e}"))),
    };
    let status = response.code.unwrap_or(0);
    let http10 = response.version == Some(0);
    let mut chunked = false;
    let mut length = None;
    let mut close = http10;
    let mut content_type = String::new();
    let mut upgrade = String::new();
    let mut ws_accept = String::new();
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .split(|&b| b == b',')
                .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| bad_data("bad content-length"))?;
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        } else if h.name.eq_ignore_ascii_case("content-type") {
            content_type = String::from_utf8_lossy(h.value).into_owned();
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = String::from_utf8_lossy(h.value).into_owned();
        } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
            ws_accept = String::from_utf8_lossy(h.value).trim().to_owned();
        }
    }
    let no_body =
        for_head_request || status == 204 || status == 304 || (100..200).contains(&status);
    let framing = if no_body {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    let keep_alive = !close && framing != Framing::Close;
    Ok(Some((
        Head {
            status,
            framing,
            keep_alive,
            content_type,
            upgrade,
            ws_accept,
        },
        len,
    )))
}

pub(crate) fn bad_data(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer { line_start: bool },
    TrailerLf,
    Done,
}

/// Incremental decoder of a response body: feed it raw bytes as they arrive, it appends the
/// payload to an output buffer and tells when the body is complete.
#[derive(Debug, Clone)]
pub(crate) struct BodyDecoder {
    framing: Framing,
    state: ChunkState,
    /// Chunk size being parsed, or bytes left in the current chunk / fixed-length body.
    remaining: u64,
    size_digits: u32,
}

impl BodyDecoder {
    pub(crate) fn new(framing: Framing) -> Self {
        let (state, remaining) = match framing {
            Framing::Chunked => (ChunkState::Size, 0),
            Framing::Length(0) => (ChunkState::Done, 0),
            Framing::Length(n) => (ChunkState::Data, n),
            Framing::Close => (ChunkState::Data, u64::MAX),
        };
        BodyDecoder {
            framing,
            state,
            remaining,
            size_digits: 0,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Whether the end of the connection is a proper end of this body.
    pub(crate) fn ends_at_eof(&self) -> bool {
        self.framing == Framing::Close || self.is_done()
    }

    /// Consumes `input`, appending decoded payload bytes to `out`. Returns how many bytes of
    /// `input` belong to this body (fewer than `input.len()` only once the body is complete).
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
        if self.framing != Framing::Chunked {
            let take = (input.len() as u64).min(self.remaining) as usize;
            out.extend_from_slice(&input[..take]);
            if self.framing != Framing::Close {
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.state = ChunkState::Done;
                }
            }
            return Ok(take);
        }
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                ChunkState::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).unwrap_or(0);
                        self.size_digits += 1;
                        if self.size_digits > 15 {
                            return Err(bad_data("chunk size too large"));
                        }
                        self.remaining = self.remaining * 16 + u64::from(d);
                    }
                    b';' | b' ' | b'\t' => self.state = ChunkState::Ext,
                    b'\r' => self.state = ChunkState::SizeLf,
                    b'\n' => self.end_size_line()?,
                    _ => return Err(bad_data("bad chunk size")),
                },
                ChunkState::Ext => {
                    if b == b'\n' {
                        self.end_size_line()?;
                    }
                }
                ChunkState::SizeLf => {
                    if b != b'\n' {
                        return Err(bad_data("bad chunk size line"));
                    }
                    self.end_size_line()?;
                }
                ChunkState::Data => {
                    let take = ((input.len() - i) as u64).min(self.remaining) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    self.remaining -= take as u64;
                    i += take;
                    if self.remaining == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    continue;
                }
                ChunkState::DataCr => match b {
                    b'\r' => self.state = ChunkState::DataLf,
                    b'\n' => self.state = ChunkState::Size,
                    _ => return Err(bad_data("missing CRLF after chunk")),
                },
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(bad_data("missing LF after chunk"));
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer { line_start } => {
                    self.state = match b {
                        b'\r' if line_start => ChunkState::TrailerLf,
                        b'\n' if line_start => ChunkState::Done,
                        b'\n' => ChunkState::Trailer { line_start: true },
                        _ => ChunkState::Trailer { line_start: false },
                    };
                }
                ChunkState::TrailerLf => {
                    self.state = if b == b'\n' {
                        ChunkState::Done
                    } else {
                        ChunkState::Trailer { line_start: false }
                    };
                }
                ChunkState::Done => return Ok(i),
            }
            i += 1;
        }
        Ok(i)
    }

    fn end_size_line(&mut self) -> io::Result<()> {
        if self.size_digits == 0 {
            return Err(bad_data("empty chunk size"));
        }
        self.size_digits = 0;
        self.state = if self.remaining == 0 {
            ChunkState::Trailer { line_start: true }
        } else {
            ChunkState::Data
        };
        Ok(())
    }
}

/// A keep-alive HTTP/1.1 connection for short requests (publish, stats). Reconnects when the
/// server closed the previous connection; never retries a request by itself.
#[derive(Debug)]
pub(crate) struct Client {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    rbuf: Vec<u8>,
    /// The last response's body.
    pub(crate) body: Vec<u8>,
    /// Connections opened so far.
    pub(crate) connects: u64,
}

impl Client {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Client {
            addr,
            stream: None,
            rbuf: Vec::with_capacity(4096),
            body: Vec::with_capacity(256),
            connects: 0,
        }
    }

    /// Sends the complete request in `request` and reads the response; the body lands in
    /// `self.body`. Returns the status. Any error leaves the client disconnected.
    pub(crate) async fn send(&mut self, request: &[u8], timeout: Duration) -> io::Result<u16> {
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(io::Error::new(io::ErrorKind::TimedOut, "request timed out"))
            }
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> io::Result<u16> {
        if self.stream.is_none() {
            let stream = connect(self.addr, None).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
            self.connects += 1;
            self.rbuf.clear();
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(request).await?;
        self.body.clear();
        let head = loop {
            if let Some((head, len)) = parse_head(&self.rbuf, false)? {
                self.rbuf.drain(..len);
                break head;
            }
            if read_more(stream, &mut self.rbuf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the response",
                ));
            }
        };
        let mut decoder = BodyDecoder::new(head.framing);
        loop {
            let used = decoder.feed(&self.rbuf, &mut self.body)?;
            self.rbuf.drain(..used);
            if self.body.len() > MAX_KEPT_BODY {
                self.body.truncate(MAX_KEPT_BODY);
            }
            if decoder.is_done() {
                break;
            }
            if read_more(stream, &mut self.rbuf).await? == 0 {
                if decoder.ends_at_eof() {
                    break;
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in the response body",
                ));
            }
        }
        if !head.keep_alive || !decoder.is_done() {
            self.stream = None;
        }
        Ok(head.status)
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.reserve(4096);
    stream.read_buf(buf).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(framing: Framing, input: &[u8], piece: usize) -> (Vec<u8>, bool, usize) {
        let mut d = BodyDecoder::new(framing);
        let mut out = Vec::new();
        let mut used_total = 0;
        for chunk in input.chunks(piece) {
            let used = d.feed(chunk, &mut out).unwrap();
            used_total += used;
            if used < chunk.len() {
                break;
            }
        }
        (out, d.is_done(), used_total)
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_split() {
        let body =
            b"5\r\nhello\r\n7;ext=1\r\n, world\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for piece in 1..body.len() {
            let (out, done, used) = decode_in_pieces(Framing::Chunked, body, piece);
            assert_eq!(out, b"hello, world0123456789", "piece {piece}");
            assert!(done);
            assert_eq!(used, body.len() - 4, "piece {piece}");
        }
        let (out, done, _) = decode_in_pieces(Framing::Chunked, b"3\nabc\n0\n\n", 2);
        assert_eq!(out, b"abc");
        assert!(done);
    }

    #[test]
    fn endless_chunked_stream_is_not_done() {
        let (out, done, _) = decode_in_pieces(Framing::Chunked, b"2\r\nab\r\n1\r\nc\r\n", 3);
        assert_eq!(out, b"abc");
        assert!(!done);
    }

    #[test]
    fn bad_chunks_are_errors() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"2\r\nabX",
            b"fffffffffffffffff\r\n",
        ] {
            let mut d = BodyDecoder::new(Framing::Chunked);
            assert!(d.feed(bad, &mut Vec::new()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fixed_length_and_close_delimited() {
        let (out, done, used) = decode_in_pieces(Framing::Length(5), b"helloEXTRA", 3);
        assert_eq!((out.as_slice(), done, used), (&b"hello"[..], true, 5));
        let (out, done, _) = decode_in_pieces(Framing::Close, b"all of it", 4);
        assert_eq!((out.as_slice(), done), (&b"all of it"[..], false));
    }

    #[test]
    fn heads() {
        let input =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nrest";
        let (h, len) = parse_head(input, false).unwrap().unwrap();
        assert_eq!(
            (h.status, h.framing, h.keep_alive, len),
            (200, Framing::Chunked, true, input.len() - 4)
        );
        assert_eq!(h.content_type, "text/event-stream");
        let (h, _) = parse_head(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.status, h.framing), (101, Framing::Length(0)));
        assert_eq!(h.upgrade, "websocket");
        assert_eq!(h.ws_accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let (h, _) = parse_head(
            b"HTTP/1.1 503 X\r\ncontent-length: 12\r\nconnection: close\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (h.status, h.framing, h.keep_alive),
            (503, Framing::Length(12), false)
        );
        let (h, _) = parse_head(b"HTTP/1.0 200 OK\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nA: b\r\n", false)
            .unwrap()
            .is_none());
        assert!(parse_head(b"garbage\r\n\r\n", false).is_err());
    }

    #[test]
    fn request_writer() {
        let mut out = Vec::new();
        write_request(
            &mut out,
            "POST",
            "127.0.0.1:8080",
            b"/api/sse/message",
            &[("Authorization".into(), "Bearer k".into())],
            Some(("application/json", b"{}")),
        );
        assert_eq!(
            out,
            b"POST /api/sse/message HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: herald-bench\r\n\
              Authorization: Bearer k\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }
}
