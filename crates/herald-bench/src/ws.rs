//! A minimal WebSocket client (RFC 6455) for subscribers: the opening handshake's key and its
//! check, an incremental reader of the server's frames over bytes (no copy for a whole text
//! message, a buffer only for a fragmented one), the masked frames a client sends (pong, close),
//! and the split of a Herald message `{"id","event","data"}` into its parts by byte scanning.
//!
//! As lean as the SSE reader: an idle connection holds no buffer (the socket is read into the
//! thread's scratch buffer; only an incomplete frame is kept), and an event costs no allocation.

use base64::Engine as _;
use memchr::memmem::Finder;
use sha1::{Digest, Sha1};
use std::sync::LazyLock;

/// The GUID of RFC 6455 §1.3, appended to the key to compute `Sec-WebSocket-Accept`.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A `Sec-WebSocket-Key` (16 bytes, base64) derived from `seed`: a handshake nonce needs to be
/// unpredictable only to defeat caching proxies, and there are none on loopback.
pub(crate) fn key_for(seed: u64) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..].copy_from_slice(&(seed ^ 0x9E37_79B9_7F4A_7C15).rotate_left(17).to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The `Sec-WebSocket-Accept` a server must answer to `key`.
pub(crate) fn accept_for(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Opcodes.
const CONTINUATION: u8 = 0x0;
pub(crate) const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// What reading frames can end with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WsEnd {
    /// The server sent a close frame (its status code, if any).
    Closed(Option<u16>),
    /// A protocol violation.
    Bad(String),
}

impl std::fmt::Display for WsEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsEnd::Closed(Some(code)) => write!(f, "closed by the server (close {code})"),
            WsEnd::Closed(None) => f.write_str("closed by the server (close frame)"),
            WsEnd::Bad(why) => write!(f, "bad WebSocket frame: {why}"),
        }
    }
}

/// Incremental reader of server frames. Its fragment buffer stays empty (and unallocated)
/// unless the server fragments a message.
#[derive(Debug, Default)]
pub(crate) struct WsReader {
    /// The message being reassembled from fragments, and whether one is in progress.
    fragments: Vec<u8>,
    in_message: bool,
}

impl WsReader {
    /// Parses every complete frame at the start of `buf`, calling `on_message` with each data
    /// message (text or binary) and appending the client's answers to pings (masked pongs) to
    /// `reply`; removes what it consumed from `buf`, leaving an incomplete last frame. Returns
    /// the number of messages, or why the stream must end.
    pub(crate) fn feed(
        &mut self,
        buf: &mut Vec<u8>,
        reply: &mut Vec<u8>,
        mut on_message: impl FnMut(&[u8]),
    ) -> Result<usize, WsEnd> {
        let mut pos = 0;
        let mut messages = 0;
        let result = loop {
            let Some(frame) = parse_header(&buf[pos..]) else {
                break Ok(messages);
            };
            let frame = match frame {
                Ok(f) => f,
                Err(why) => break Err(WsEnd::Bad(why)),
            };
            let start = pos + frame.header;
            let end = start + frame.len;
            if buf.len() < end {
                break Ok(messages);
            }
            if let Some(mask) = frame.mask {
                // Servers must not mask (§5.1), but unmasking costs nothing to support.
                for (i, b) in buf[start..end].iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            let payload = &buf[start..end];
            pos = end;
            match frame.opcode {
                TEXT | BINARY if self.in_message => {
                    break Err(WsEnd::Bad("a new message inside a fragmented one".into()))
                }
                TEXT | BINARY if frame.fin => {
                    on_message(payload);
                    messages += 1;
                }
                TEXT | BINARY => {
                    self.in_message = true;
                    self.fragments.clear();
                    self.fragments.extend_from_slice(payload);
                }
                CONTINUATION if !self.in_message => {
                    break Err(WsEnd::Bad("a continuation outside a message".into()))
                }
                CONTINUATION => {
                    self.fragments.extend_from_slice(payload);
                    if frame.fin {
                        self.in_message = false;
                        on_message(&self.fragments);
                        messages += 1;
                        // Fragmentation is rare: give the memory back.
                        self.fragments = Vec::new();
                    }
                }
                PING => write_frame(reply, PONG, payload),
                PONG => {}
                CLOSE => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    break Err(WsEnd::Closed(code));
                }
                other => break Err(WsEnd::Bad(format!("unknown opcode {other:#x}"))),
            }
        };
        buf.drain(..pos);
        result
    }

    /// Bytes held for a fragmented message.
    pub(crate) fn held(&self) -> usize {
        self.fragments.len()
    }
}

struct FrameHeader {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    header: usize,
    len: usize,
}

/// The header at the start of `b`: `None` while incomplete.
fn parse_header(b: &[u8]) -> Option<Result<FrameHeader, String>> {
    if b.len() < 2 {
        return None;
    }
    let fin = b[0] & 0x80 != 0;
    if b[0] & 0x70 != 0 {
        return Some(Err("reserved bits set (no extension was negotiated)".into()));
    }
    let opcode = b[0] & 0x0F;
    let masked = b[1] & 0x80 != 0;
    let (len, mut at) = match b[1] & 0x7F {
        126 => (
            u64::from(u16::from_be_bytes(b.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    if opcode >= CLOSE && (!fin || len > 125) {
        return Some(Err("a fragmented or long control frame".into()));
    }
    if len > (1 << 31) {
        return Some(Err(format!("a frame of {len} bytes")));
    }
    let mask = if masked {
        let m: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    Some(Ok(FrameHeader {
        fin,
        opcode,
        mask,
        header: at,
        len: len as usize,
    }))
}

/// Appends one complete, masked client frame (§5.3: every client frame is masked). The mask is
/// fixed: it protects proxies that do not exist on loopback.
pub(crate) fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    const MASK: [u8; 4] = [0x5A, 0xA5, 0x3C, 0xC3];
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

static DATA: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"data\":"));
static EVENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"event\":"));
static ID: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"id\":"));

/// Splits a Herald message `{"id":"…","event":"…","data":…}` into `(name, id, data)`, looking
/// for `id` and `event` only before `"data":` (so a payload's own keys never count). A message
/// without `"data":` (another server's raw payload) is all data, with no name and no id.
pub(crate) fn split_message(msg: &[u8]) -> (&[u8], Option<&[u8]>, &[u8]) {
    let Some(at) = DATA.find(msg) else {
        return (b"", None, msg);
    };
    let head = &msg[..at];
    let data = &msg[at + DATA.needle().len()..];
    let name = string_after(head, &EVENT).unwrap_or(b"");
    (name, string_after(head, &ID), data)
}

/// The JSON string value after `key` (no unescaping: names and ids need none).
fn string_after<'a>(head: &'a [u8], key: &Finder<'_>) -> Option<&'a [u8]> {
    let at = key.find(head)? + key.needle().len();
    let rest = head[at..].trim_ascii_start().strip_prefix(b"\"")?;
    let end = memchr::memchr(b'"', rest)?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame (unmasked) of `opcode` with `payload`.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xFFFF => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    fn read_all(input: &[u8], piece: usize) -> (Vec<Vec<u8>>, Vec<u8>, Result<usize, WsEnd>) {
        let mut r = WsReader::default();
        let mut buf = Vec::new();
        let mut reply = Vec::new();
        let mut seen = Vec::new();
        let mut last = Ok(0);
        for chunk in input.chunks(piece) {
            buf.extend_from_slice(chunk);
            last = r.feed(&mut buf, &mut reply, |m| seen.push(m.to_vec()));
            if last.is_err() {
                break;
            }
        }
        (seen, reply, last)
    }

    #[test]
    fn the_handshake_accept_of_rfc_6455() {
        // The example of RFC 6455 §1.3.
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let key = key_for(7);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&key)
                .unwrap()
                .len(),
            16
        );
        assert_ne!(key, key_for(8));
    }

    #[test]
    fn messages_in_any_split_with_fragments_pings_and_lengths() {
        let long = vec![b'y'; 300];
        let huge = vec![b'z'; 70_000];
        let mut stream = frame(true, TEXT, b"{\"event\":\"connected\",\"data\":{}}\n");
        stream.extend(frame(true, PING, b"p1"));
        stream.extend(frame(false, TEXT, b"frag"));
        stream.extend(frame(true, PING, b"")); // a control frame between fragments
        stream.extend(frame(false, CONTINUATION, b"men"));
        stream.extend(frame(true, CONTINUATION, b"ted"));
        stream.extend(frame(true, TEXT, &long));
        stream.extend(frame(true, BINARY, &huge));
        stream.extend(frame(true, PONG, b"ignored"));
        stream.extend(frame(true, TEXT, b""));
        let want: Vec<Vec<u8>> = vec![
            b"{\"event\":\"connected\",\"data\":{}}\n".to_vec(),
            b"fragmented".to_vec(),
            long,
            huge,
            Vec::new(),
        ];
        let mut pongs = Vec::new();
        write_frame(&mut pongs, PONG, b"p1");
        write_frame(&mut pongs, PONG, b"");
        for piece in [1, 2, 3, 7, 100, 4096, stream.len()] {
            let (seen, reply, last) = read_all(&stream, piece);
            assert_eq!(seen, want, "piece {piece}");
            assert_eq!(reply, pongs, "piece {piece}");
            assert!(last.is_ok());
        }
    }

    #[test]
    fn client_frames_are_masked() {
        let mut out = Vec::new();
        write_frame(&mut out, PONG, b"abc");
        assert_eq!(out[0], 0x8A);
        assert_eq!(out[1], 0x80 | 3);
        // The server side unmasks it back.
        let (seen, _, _) = read_all(
            &{
                let mut f = out.clone();
                f[0] = 0x81; // as a text frame
                f
            },
            64,
        );
        assert_eq!(seen, vec![b"abc".to_vec()]);
    }

    #[test]
    fn close_and_violations_end_the_stream() {
        let mut stream = frame(true, TEXT, b"a");
        stream.extend(frame(true, CLOSE, &1001u16.to_be_bytes()));
        stream.extend(frame(true, TEXT, b"after"));
        let (seen, _, last) = read_all(&stream, 64);
        assert_eq!(seen, vec![b"a".to_vec()]);
        assert_eq!(last, Err(WsEnd::Closed(Some(1001))));
        for bad in [
            frame(true, 0x3, b""),
            frame(true, CONTINUATION, b"x"),
            frame(false, PING, b""),
            {
                let mut f = frame(true, TEXT, b"x");
                f[0] |= 0x40; // RSV1: a compressed frame nobody asked for
                f
            },
            {
                let mut f = frame(false, TEXT, b"x");
                f.extend(frame(true, TEXT, b"y"));
                f
            },
        ] {
            let (_, _, last) = read_all(&bad, 64);
            assert!(matches!(last, Err(WsEnd::Bad(_))), "{bad:?}");
        }
    }

    #[test]
    fn herald_messages_split() {
        let (name, id, data) = split_message(
            b"{\"id\":\"000000000abc-7\",\"event\":\"bench\",\"data\":{\"seq\":3,\"ts\":9,\"id\":\"x\",\"event\":\"y\"}}\n",
        );
        assert_eq!(name, b"bench");
        assert_eq!(id, Some(&b"000000000abc-7"[..]));
        assert!(data.starts_with(b"{\"seq\":3"));
        let (name, id, _) = split_message(b"{\"event\":\"heartbeat\",\"data\":{\"id\":\"no\"}}");
        assert_eq!((name, id), (&b"heartbeat"[..], None));
        let (name, id, data) = split_message(b"{\"seq\":1,\"ts\":2}");
        assert_eq!(
            (name, id, data),
            (&b""[..], None, &b"{\"seq\":1,\"ts\":2}"[..])
        );
    }
}
