//! Any event name and text payload, encoded as an SSE frame, parses back (WHATWG algorithm) to
//! exactly one event with the same name and the same data (line terminators normalized to LF,
//! as every EventSource does).
#![no_main]

use herald::sse::frame::{encode_event, parse::parse_stream};
use herald::EventName;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (name, data) = input;
    // Invalid names are refused at the edge; the property is about the ones that pass.
    let Ok(name) = EventName::new(name) else { return };
    let bytes = encode_event(None, &name, data);
    let text = std::str::from_utf8(&bytes).expect("frames are UTF-8");
    let events = parse_stream(text);
    assert_eq!(events.len(), 1, "one frame, one event: {text:?}");
    assert_eq!(events[0].event, name.as_str());
    let expected = data.replace("\r\n", "\n").replace('\r', "\n");
    assert_eq!(events[0].data, expected);
});
