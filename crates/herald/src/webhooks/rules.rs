//! Rules: how a verified payload becomes Herald events.
//!
//! A rule applies when every `when` JSON Pointer points at the expected value (and every
//! `when_headers` header has the expected text); it then makes one event:
//!
//! - `event`: the event name, a [`Template`];
//! - targets: `users`, `user`, `channels` (each a JSON Pointer to an id or an array of ids, or an
//!   array of [`Template`]s, one id each) and `broadcast`;
//! - `data`: a JSON Pointer (the value there), omitted (the whole payload), or a template value
//!   (any TOML value whose strings are [`Template`]s).
//!
//! JSON Pointers are RFC 6901 (`/data/object/customer`, `/items/0/id`; `~1` is `/`, `~0` is `~`),
//! read with [`serde_json::Value::pointer`]. A template is text with `{/pointer}` placeholders:
//! `"order:{/data/orderId}"`. In ids and event names a placeholder must point at a string or a
//! number; in `data`, a string that is exactly one placeholder takes the value there, whatever its
//! type, and a missing value is `null` (inside longer text: empty).

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::broker::Publication;
use crate::event::{EventName, Payload};
use crate::target::{Fallback, TargetFields};

/// Most targets one rule may give an event (an array in the payload could be long).
pub const MAX_TARGETS: usize = 1000;

/// Text with `{/pointer}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Pointer(String),
}

impl Template {
    /// Parses `text`: every `{/…}` is a placeholder (up to the next `}`); other braces are text.
    pub fn parse(text: &str) -> Template {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{/") {
            let Some(len) = rest[open..].find('}') else {
                break;
            };
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            parts.push(Part::Pointer(rest[open + 1..open + len].to_owned()));
            rest = &rest[open + len + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Template { parts }
    }

    /// The text, when the template has no placeholder.
    pub fn as_literal(&self) -> Option<String> {
        match self.parts.as_slice() {
            [] => Some(String::new()),
            [Part::Text(t)] => Some(t.clone()),
            _ => None,
        }
    }

    /// The text with each placeholder replaced by the string or number it points at.
    ///
    /// # Errors
    /// The pointer that is missing or points at something else.
    pub fn render(&self, payload: &Value) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Pointer(p) => match payload.pointer(p) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(Value::Number(n)) => out.push_str(&n.to_string()),
                    Some(_) => return Err(format!("{p} is not a string or a number")),
                    None => return Err(format!("{p} is missing from the payload")),
                },
            }
        }
        Ok(out)
    }

    /// For `data`: one placeholder alone takes the value (or `null`); otherwise text, with
    /// missing values empty and non-text values as JSON.
    fn render_value(&self, payload: &Value) -> Value {
        if let [Part::Pointer(p)] = self.parts.as_slice() {
            return payload.pointer(p).cloned().unwrap_or(Value::Null);
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Pointer(p) => match payload.pointer(p) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(Value::Null) | None => {}
                    Some(other) => out.push_str(&other.to_string()),
                },
            }
        }
        Value::String(out)
    }

    /// The JSON Pointers of its placeholders.
    pub fn pointers_iter(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Pointer(p) => Some(p.as_str()),
            Part::Text(_) => None,
        })
    }
}

/// Where a rule finds ids (users or channels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ids {
    /// A JSON Pointer to one id (a string or a number) or an array of them.
    Pointer(String),
    /// One id per template.
    Templates(Vec<Template>),
}

impl Ids {
    fn resolve(&self, payload: &Value, out: &mut Vec<String>) -> Result<(), String> {
        match self {
            Ids::Templates(list) => {
                for t in list {
                    out.push(t.render(payload)?);
                }
            }
            Ids::Pointer(p) => {
                let one = |v: &Value| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
                    _ => Err(format!(
                        "{p} holds something that is not an id (a string or an integer)"
                    )),
                };
                match payload.pointer(p) {
                    None | Some(Value::Null) => {
                        return Err(format!("{p} is missing from the payload"))
                    }
                    Some(Value::Array(items)) => {
                        if items.len() > MAX_TARGETS {
                            return Err(format!("{p} holds more than {MAX_TARGETS} ids"));
                        }
                        for item in items {
                            out.push(one(item)?);
                        }
                    }
                    Some(v) => out.push(one(v)?),
                }
            }
        }
        Ok(())
    }

    fn pointers(&self) -> Vec<&str> {
        match self {
            Ids::Pointer(p) => vec![p.as_str()],
            Ids::Templates(list) => list.iter().flat_map(Template::pointers_iter).collect(),
        }
    }
}

/// What a rule sends as the event's data.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// The whole payload.
    Whole,
    /// The value at this JSON Pointer (`null` when missing).
    Pointer(String),
    /// A value whose strings are templates.
    Template(Value),
}

/// One rule of a webhook: when it applies and the event it makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// JSON Pointer → the value it must point at.
    pub when: Vec<(String, Value)>,
    /// Header name (lowercase) → the text it must have.
    pub when_headers: Vec<(http::HeaderName, String)>,
    /// The event name.
    pub event: Template,
    /// Users (`users` and `user`).
    pub users: Vec<Ids>,
    /// Channels.
    pub channels: Option<Ids>,
    /// Every connection.
    pub broadcast: bool,
    /// Also broadcast when the targets match nobody online.
    pub fallback: Fallback,
    /// The data.
    pub data: Data,
}

/// Why a rule that applies could not make its event (the payload lacks a target, an id is not
/// valid…): the delivery is acknowledged and ignored, with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError(pub String);

impl Rule {
    /// Whether the rule applies to this payload and these headers.
    pub fn applies(&self, payload: &Value, headers: &HeaderMap) -> bool {
        self.when
            .iter()
            .all(|(pointer, expected)| payload.pointer(pointer) == Some(expected))
            && self.when_headers.iter().all(|(name, expected)| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim() == expected)
            })
    }

    /// The event this rule makes of `payload` (call it when the rule [applies](Self::applies)).
    ///
    /// # Errors
    /// A [`MapError`] when the event name or a target cannot be made from the payload.
    pub fn publication(&self, payload: &Value) -> Result<Publication, MapError> {
        let event = self.event.render(payload).map_err(MapError)?;
        let name = EventName::new(&event).map_err(|e| MapError(format!("event: {}", e.message)))?;
        let mut users = Vec::new();
        for ids in &self.users {
            ids.resolve(payload, &mut users).map_err(MapError)?;
        }
        let mut channels = Vec::new();
        if let Some(ids) = &self.channels {
            ids.resolve(payload, &mut channels).map_err(MapError)?;
        }
        if users.len() + channels.len() > MAX_TARGETS {
            return Err(MapError(format!("more than {MAX_TARGETS} targets")));
        }
        let targets = TargetFields {
            users,
            channels,
            connections: Vec::new(),
            broadcast: self.broadcast,
            fallback: self.fallback,
        }
        .into_targets()
        .map_err(|e| MapError(format!("{}: {}", e.field, e.message)))?;
        let data = match &self.data {
            Data::Whole => payload.clone(),
            Data::Pointer(p) => payload.pointer(p).cloned().unwrap_or(Value::Null),
            Data::Template(t) => render(t, payload),
        };
        let payload = Payload::json(&data).map_err(|e| MapError(format!("data: {}", e.message)))?;
        Ok(Publication {
            name,
            payload,
            targets,
            idempotency: None,
        })
    }

    /// Every JSON Pointer the rule reads (for checks at startup).
    pub fn pointers(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.when.iter().map(|(p, _)| p.as_str()).collect();
        out.extend(self.event.pointers_iter());
        for ids in self.users.iter().chain(self.channels.iter()) {
            out.extend(ids.pointers());
        }
        if let Data::Pointer(p) = &self.data {
            out.push(p);
        }
        out
    }
}

/// A data template with every string rendered.
fn render(template: &Value, payload: &Value) -> Value {
    match template {
        Value::String(s) => Template::parse(s).render_value(payload),
        Value::Array(items) => Value::Array(items.iter().map(|v| render(v, payload)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render(v, payload)))
                .collect::<Map<String, Value>>(),
        ),
        other => other.clone(),
    }
}

/// Whether `p` is a JSON Pointer: empty (the whole document) or starting with `/`, with `~`
/// only in `~0` and `~1`.
pub fn is_pointer(p: &str) -> bool {
    if !(p.is_empty() || p.starts_with('/')) {
        return false;
    }
    let bytes = p.as_bytes();
    bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b != b'~' || matches!(bytes.get(i + 1), Some(b'0' | b'1')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule() -> Rule {
        Rule {
            when: vec![("/type".into(), json!("payment.succeeded"))],
            when_headers: Vec::new(),
            event: Template::parse("payment"),
            users: vec![Ids::Pointer("/data/customerId".into())],
            channels: None,
            broadcast: false,
            fallback: Fallback::None,
            data: Data::Pointer("/data".into()),
        }
    }

    #[test]
    fn templates_render_placeholders() {
        let p = json!({"a": {"b": "x"}, "n": 7, "o": {"k": 1}});
        assert_eq!(
            Template::parse("order:{/a/b}-{/n}").render(&p).unwrap(),
            "order:x-7"
        );
        assert_eq!(
            Template::parse("{literal}").as_literal().as_deref(),
            Some("{literal}")
        );
        assert!(Template::parse("{/missing}").render(&p).is_err());
        assert!(Template::parse("{/o}").render(&p).is_err());
        assert_eq!(Template::parse("{/o}").render_value(&p), json!({"k": 1}));
        assert_eq!(Template::parse("{/nope}").render_value(&p), Value::Null);
        assert_eq!(
            Template::parse("n={/n}{/nope}").render_value(&p),
            json!("n=7")
        );
        assert_eq!(
            Template::parse("open {/a/b").as_literal().as_deref(),
            Some("open {/a/b")
        );
    }

    #[test]
    fn a_rule_maps_the_issue_example() {
        let payload =
            json!({"type": "payment.succeeded", "data": {"customerId": "cus_1", "amount": 5}});
        let r = rule();
        assert!(r.applies(&payload, &HeaderMap::new()));
        let p = r.publication(&payload).unwrap();
        assert_eq!(p.name.as_str(), "payment");
        assert_eq!(p.payload.as_str(), r#"{"customerId":"cus_1","amount":5}"#);
        assert_eq!(p.targets.list().len(), 1);
        assert!(!r.applies(&json!({"type": "payment.failed"}), &HeaderMap::new()));
    }

    #[test]
    fn unresolvable_targets_are_map_errors() {
        let r = rule();
        let e = r
            .publication(&json!({"type": "payment.succeeded", "data": {}}))
            .unwrap_err();
        assert!(e.0.contains("/data/customerId"), "{e:?}");
        let e = r
            .publication(&json!({"data": {"customerId": {"x": 1}}}))
            .unwrap_err();
        assert!(e.0.contains("not an id"), "{e:?}");
        let e = r
            .publication(&json!({"data": {"customerId": []}}))
            .unwrap_err();
        assert!(e.0.contains("targets"), "{e:?}");
        let mut c = rule();
        c.users.clear();
        c.channels = Some(Ids::Templates(vec![Template::parse("bad channel {/x}")]));
        let e = c.publication(&json!({"x": 1})).unwrap_err();
        assert!(e.0.starts_with("channels"), "{e:?}");
    }

    #[test]
    fn arrays_numbers_and_templates_give_ids() {
        let mut r = rule();
        r.users = vec![
            Ids::Pointer("/ids".into()),
            Ids::Templates(vec![Template::parse("admin")]),
        ];
        r.channels = Some(Ids::Templates(vec![Template::parse("orders:{/order}")]));
        r.data = Data::Template(json!({"who": "{/ids/0}", "text": "Order {/order} paid", "k": 1}));
        let p = r
            .publication(&json!({"ids": ["a", 42], "order": 9}))
            .unwrap();
        assert_eq!(p.targets.list().len(), 4);
        assert_eq!(
            p.payload.as_str(),
            r#"{"who":"a","text":"Order 9 paid","k":1}"#
        );
        let many: Vec<u32> = (0..1001).collect();
        assert!(r.publication(&json!({"ids": many, "order": 1})).is_err());
    }

    #[test]
    fn pointers_are_checked() {
        assert!(is_pointer(""));
        assert!(is_pointer("/a/b~1c~0"));
        assert!(!is_pointer("a/b"));
        assert!(!is_pointer("/a~2"));
        assert!(!is_pointer("/a~"));
    }
}
