//! Small shared helpers: wall-clock microseconds, histograms and their summaries, and a
//! scanner for one field of a JSON answer.

use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Microseconds since the Unix epoch (the clock the payload's `ts` uses).
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A latency histogram in microseconds: 1 µs to 1 hour, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) min: u64,
    pub(crate) mean: f64,
    pub(crate) p50: u64,
    pub(crate) p90: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
}

impl Latency {
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    /// `p50 1.2 ms  p90 …  max …`.
    pub(crate) fn human(&self) -> String {
        if self.count == 0 {
            return "no samples".to_owned();
        }
        format!(
            "p50 {}  p90 {}  p99 {}  max {}  (mean {}, n={})",
            fmt_us(self.p50),
            fmt_us(self.p90),
            fmt_us(self.p99),
            fmt_us(self.max),
            fmt_us(self.mean.round() as u64),
            self.count
        )
    }
}

/// `850 µs`, `12.3 ms`, `4.56 s`.
pub(crate) fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Rounds to a sensible number of digits for reports.
pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// The string value of the first `"key": "value"` in a JSON text (no escapes handled; for
/// error codes and ids).
pub(crate) fn json_str_field(json: &[u8], key: &str) -> Option<String> {
    let needle = format!("\"{key}\"");
    let at = memchr::memmem::find(json, needle.as_bytes())? + needle.len();
    let rest = json[at..]
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    let rest = rest.strip_prefix(b"\"")?;
    let end = memchr::memchr(b'"', rest)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The unsigned number of the first `"key": 123` in a JSON text.
pub(crate) fn json_u64_field(json: &[u8], key: &str) -> Option<u64> {
    let needle = format!("\"{key}\"");
    let at = memchr::memmem::find(json, needle.as_bytes())? + needle.len();
    let rest = json[at..]
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields() {
        let j = br#"{"error": {"code": "too_many_connections", "message": "x"}, "delivered": 42}"#;
        assert_eq!(
            json_str_field(j, "code").as_deref(),
            Some("too_many_connections")
        );
        assert_eq!(json_u64_field(j, "delivered"), Some(42));
        assert_eq!(json_u64_field(j, "missing"), None);
        assert_eq!(json_str_field(j, "delivered"), None);
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(100), "100");
        assert_eq!(fmt_us(850), "850 µs");
        assert_eq!(fmt_us(12_345), "12.35 ms");
        assert_eq!(fmt_us(4_560_000), "4.56 s");
    }

    #[test]
    fn latency_summary() {
        let mut h = new_histogram();
        for v in 1..=100 {
            h.record(v * 10).unwrap();
        }
        let l = Latency::of(&h);
        assert_eq!((l.count, l.min, l.p50, l.max), (100, 10, 500, 1000));
        assert_eq!(Latency::of(&new_histogram()).count, 0);
    }
}
