//! Any bytes as a publish body: parsing never panics, and whatever is accepted is well formed.
#![no_main]

use herald::http::publish::parse_publication;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(p) = parse_publication(value) else { return };
    // An accepted event name can never break the framing.
    assert!(!p.name.as_str().contains(['\r', '\n', '\0']));
    assert!(!p.targets.list().is_empty());
    // The payload is valid JSON.
    serde_json::from_str::<serde_json::Value>(p.payload.as_str()).expect("payload is JSON");
});
