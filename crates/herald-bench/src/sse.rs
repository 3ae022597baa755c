//! A small Server-Sent Events parser over bytes (the WHATWG event-stream rules: `\n`, `\r\n`
//! or `\r` line ends, comments, `field: value` with one optional space, multi-line data), and
//! the scanner that finds `seq` and `ts` in a benchmark payload without a JSON parser.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// Incremental SSE parser. Its buffers are reused from event to event.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    event: Vec<u8>,
    data: Vec<u8>,
    /// The `id` field of the event being parsed (not the stream's last event id, which
    /// persists: the benchmark checks the ids events carry).
    id: Vec<u8>,
    has_id: bool,
}

impl SseParser {
    /// Parses every complete line at the start of `buf`, calling `on_event(name, id, data)` for
    /// each dispatched event (name empty when the stream gave none, id `None` when the event
    /// carried no `id` field), and removes what it consumed
    /// from `buf`, leaving an incomplete last line. Returns the number of events dispatched.
    pub(crate) fn feed(
        &mut self,
        buf: &mut Vec<u8>,
        mut on_event: impl FnMut(&[u8], Option<&[u8]>, &[u8]),
    ) -> usize {
        let mut pos = 0;
        let mut events = 0;
        while let Some(off) = memchr::memchr2(b'\n', b'\r', &buf[pos..]) {
            let end = pos + off;
            let next = if buf[end] == b'\r' {
                match buf.get(end + 1) {
                    // A CR at the very end: wait to see whether LF follows.
                    None => break,
                    Some(b'\n') => end + 2,
                    Some(_) => end + 1,
                }
            } else {
                end + 1
            };
            let line = &buf[pos..end];
            if line.is_empty() {
                if !self.data.is_empty() {
                    self.data.pop(); // the LF after the last data line
                    let id = self.has_id.then_some(&self.id[..]);
                    on_event(&self.event, id, &self.data);
                    events += 1;
                }
                self.data.clear();
                self.event.clear();
                self.has_id = false;
            } else if line[0] != b':' {
                let (field, value) = match memchr::memchr(b':', line) {
                    Some(colon) => {
                        let value = &line[colon + 1..];
                        (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                    }
                    None => (line, &b""[..]),
                };
                match field {
                    b"data" => {
                        self.data.extend_from_slice(value);
                        self.data.push(b'\n');
                    }
                    b"event" => {
                        self.event.clear();
                        self.event.extend_from_slice(value);
                    }
                    b"id" => {
                        self.id.clear();
                        self.id.extend_from_slice(value);
                        self.has_id = true;
                    }
                    // `retry` matters to browsers, not to this benchmark.
                    _ => {}
                }
            }
            pos = next;
        }
        buf.drain(..pos);
        events
    }
}

static SEQ: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"seq\""));
static TS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"ts\""));

/// `(seq, ts)` from a payload like `{"seq":12,"ts":1700000000000000,"pad":"xx"}`, in any key
/// order and spacing. `None` when either is missing: not a benchmark event.
pub(crate) fn scan_payload(data: &[u8]) -> Option<(u64, u64)> {
    Some((number_after(data, &SEQ)?, number_after(data, &TS)?))
}

fn number_after(data: &[u8], key: &Finder<'_>) -> Option<u64> {
    let at = key.find(data)? + key.needle().len();
    let mut rest = data[at..]
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    let mut n: u64 = 0;
    let mut digits = 0;
    while let Some((&b, tail)) = rest.split_first() {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        digits += 1;
        rest = tail;
    }
    (digits > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8], piece: usize) -> Vec<(String, String)> {
        let mut p = SseParser::default();
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        for chunk in input.chunks(piece) {
            buf.extend_from_slice(chunk);
            p.feed(&mut buf, |e, _, d| {
                seen.push((
                    String::from_utf8_lossy(e).into_owned(),
                    String::from_utf8_lossy(d).into_owned(),
                ))
            });
        }
        seen
    }

    #[test]
    fn herald_stream_in_any_split() {
        let stream = b"retry: 3000\nevent: connected\ndata: {\"connectionId\":\"ab\"}\n\n\
                       id: x-1\nevent: bench\ndata: {\"seq\":0,\"ts\":5}\n\n\
                       : comment\n\nevent: heartbeat\ndata: {\"ts\":9}\n\n\
                       data: a\ndata:b\ndata\n\n";
        let want = vec![
            (
                "connected".to_owned(),
                "{\"connectionId\":\"ab\"}".to_owned(),
            ),
            ("bench".to_owned(), "{\"seq\":0,\"ts\":5}".to_owned()),
            ("heartbeat".to_owned(), "{\"ts\":9}".to_owned()),
            (String::new(), "a\nb\n".to_owned()),
        ];
        for piece in 1..stream.len() {
            assert_eq!(parse_all(stream, piece), want, "piece {piece}");
        }
    }

    #[test]
    fn ids_belong_to_their_event() {
        let mut p = SseParser::default();
        let mut buf =
            b"id: a-1\nevent: x\ndata: 1\n\nevent: heartbeat\ndata: 2\n\nid: a-2\ndata: 3\n\n"
                .to_vec();
        let mut ids = Vec::new();
        p.feed(&mut buf, |_, id, _| ids.push(id.map(<[u8]>::to_vec)));
        assert_eq!(
            ids,
            vec![Some(b"a-1".to_vec()), None, Some(b"a-2".to_vec())]
        );
    }

    #[test]
    fn crlf_and_cr_line_ends() {
        for stream in [
            &b"event: e\r\ndata: 1\r\n\r\n"[..],
            b"event: e\rdata: 1\r\rdata",
        ] {
            for piece in 1..stream.len() {
                assert_eq!(parse_all(stream, piece), vec![("e".into(), "1".into())]);
            }
        }
    }

    #[test]
    fn empty_data_and_no_data() {
        assert_eq!(
            parse_all(b"data:\n\n", 64),
            vec![(String::new(), String::new())]
        );
        assert!(parse_all(b"event: x\n\nid: 3\n\n", 64).is_empty());
        // An event name does not leak into the next event.
        assert_eq!(
            parse_all(b"event: x\n\ndata: 1\n\n", 64),
            vec![(String::new(), "1".into())]
        );
    }

    #[test]
    fn payload_scan() {
        assert_eq!(
            scan_payload(b"{\"seq\":12,\"ts\":1700000000000000,\"pad\":\"x\"}"),
            Some((12, 1_700_000_000_000_000))
        );
        assert_eq!(scan_payload(b"{ \"ts\" : 7 , \"seq\" :\t3 }"), Some((3, 7)));
        assert_eq!(scan_payload(b"{\"ts\":7}"), None);
        assert_eq!(scan_payload(b"{\"seq\":\"3\",\"ts\":7}"), None);
        assert_eq!(
            scan_payload(b"{\"seq\":99999999999999999999999,\"ts\":7}"),
            None
        );
        assert_eq!(scan_payload(b""), None);
    }
}
