//! The `[[webhooks]]` tables of the TOML file ([`WebhookSettings`], [`RuleSettings`]) and the
//! checked form the hub runs on ([`WebhookConfig`]).
//!
//! ```toml
//! [[webhooks]]
//! name = "payments"                      # POST /api/webhooks/payments
//! scheme = "standard-webhooks"           # or "github", "stripe"
//! secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]   # several while rotating
//! tolerance = "5m"                       # signed timestamps further from now are refused
//! # id = "/id"                           # JSON Pointer to the delivery id (default: per scheme)
//! # max_body_size = "1MiB"  rate = "50/s:100"
//!
//! [[webhooks.rules]]
//! when = { "/type" = "payment.succeeded" }   # JSON Pointer -> expected value; all must hold
//! event = "payment"
//! users = "/data/customerId"             # JSON Pointer to a user id or an array of them
//! data = "/data"                         # JSON Pointer; omitted: the whole payload
//! ```

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::rules::{is_pointer, Data, Ids, Rule, Template};
use super::verify::{Scheme, SigningKey};
use crate::config::{ByteSize, ConfigError, HumanDuration, Rate, Secret};
use crate::target::Fallback;

/// Default tolerance of signed timestamps (Standard Webhooks and Stripe): 5 minutes, as both
/// recommend.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Default largest webhook body: 1 MiB (Stripe and Standard Webhooks payloads are a few KiB;
/// GitHub's can be larger, raise it per webhook).
pub const DEFAULT_MAX_BODY_SIZE: usize = 1024 * 1024;

/// Longest webhook name (it is one URL path segment).
pub const MAX_NAME_LEN: usize = 64;

/// Most rules of one webhook.
pub const MAX_RULES: usize = 64;

/// One `[[webhooks]]` table, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// The source's name: `POST /api/webhooks/{name}`. `A-Z a-z 0-9 _ -`, 1 to 64.
    pub name: String,
    /// `standard-webhooks`, `github` or `stripe`.
    pub scheme: String,
    /// The signing secrets; a delivery signed with any of them is accepted (rotation).
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// Files holding one secret each (Docker and Kubernetes secrets), read at startup; a
    /// trailing newline is dropped. Added after `secrets`.
    #[serde(default)]
    pub secret_files: Vec<std::path::PathBuf>,
    /// Largest distance between a signed timestamp and now. [default: 5m]
    pub tolerance: Option<HumanDuration>,
    /// JSON Pointer to the delivery's id in the payload, for de-duplication. [default: the
    /// `webhook-id` header (standard-webhooks), `X-GitHub-Delivery` (github), `/id` (stripe)]
    pub id: Option<String>,
    /// Largest body. [default: 1MiB]
    pub max_body_size: Option<ByteSize>,
    /// Deliveries per second this source may make, e.g. `50/s:100`; more get `429`.
    /// [default: the hub's publish_rate_per_key, if set]
    pub rate: Option<Rate>,
    /// The rules, tried in order; every rule that applies makes one event.
    #[serde(default)]
    pub rules: Vec<RuleSettings>,
}

/// One `[[webhooks.rules]]` table, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// JSON Pointer → expected value; every one must hold. Empty: always.
    #[serde(default)]
    pub when: Map<String, Value>,
    /// Header → expected text (e.g. `{ "X-GitHub-Event" = "push" }`); every one must hold.
    #[serde(default)]
    pub when_headers: Map<String, Value>,
    /// The event name (a template: `"github:{/action}"`).
    pub event: String,
    /// Users: a JSON Pointer (to an id or an array of ids) or an array of templates.
    pub users: Option<Value>,
    /// One user: a JSON Pointer or a template.
    pub user: Option<String>,
    /// Channels: a JSON Pointer (to a name or an array of names) or an array of templates.
    pub channels: Option<Value>,
    /// Every connection.
    #[serde(default)]
    pub broadcast: bool,
    /// `"broadcast"`: when the targets match nobody online, send to everyone. [default: none]
    pub fallback: Option<String>,
    /// A JSON Pointer (the value there), or any other value as a template. Omitted: the
    /// whole payload.
    pub data: Option<Value>,
}

/// Where the id that de-duplicates deliveries comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdSource {
    /// The scheme's own header (`webhook-id`, `X-GitHub-Delivery`).
    Scheme,
    /// A JSON Pointer into the (signed) payload.
    Pointer(String),
}

/// A checked webhook source.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Its name (the last path segment of its URL).
    pub name: String,
    /// Its signature scheme.
    pub scheme: Scheme,
    /// The keys of its secrets, in the order given.
    pub keys: Vec<SigningKey>,
    /// Largest distance of a signed timestamp from now.
    pub tolerance: Duration,
    /// Where its delivery ids come from.
    pub id: IdSource,
    /// Largest body.
    pub max_body_size: usize,
    /// Its rate limit; `None`: the hub's `publish_rate_per_key`, if any.
    pub rate: Option<Rate>,
    /// Its rules.
    pub rules: Vec<Rule>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl WebhookSettings {
    /// Checks the table and builds the source. `index` is its place in the file (for messages).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the webhook and the field: `webhooks "payments": secrets[1]: …`.
    pub fn into_config(self, index: usize) -> Result<WebhookConfig, ConfigError> {
        let who = if valid_name(&self.name) {
            format!("webhooks {:?}", self.name)
        } else {
            format!("webhooks[{index}]")
        };
        let err = |field: &str, message: String| ConfigError(format!("{who}: {field}: {message}"));
        if !valid_name(&self.name) {
            return Err(err(
                "name",
                format!(
                    "{:?} is not a name of 1 to {MAX_NAME_LEN} characters A-Z a-z 0-9 _ -",
                    self.name
                ),
            ));
        }
        let scheme: Scheme = self.scheme.parse().map_err(|e| err("scheme", e))?;
        if self.secrets.is_empty() && self.secret_files.is_empty() {
            return Err(err(
                "secrets",
                "give at least one signing secret (secrets = [\"…\"] or secret_files = \
                 [\"/run/secrets/…\"])"
                    .into(),
            ));
        }
        let mut keys = self
            .secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                scheme
                    .key(s.expose().trim())
                    .map_err(|e| err(&format!("secrets[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (i, path) in self.secret_files.iter().enumerate() {
            let field = format!("secret_files[{i}]");
            let text = std::fs::read_to_string(path)
                .map_err(|e| err(&field, format!("cannot read {}: {e}", path.display())))?;
            keys.push(
                scheme
                    .key(text.trim_end_matches(['\r', '\n']).trim())
                    .map_err(|e| err(&field, format!("{}: {e}", path.display())))?,
            );
        }
        let tolerance = self.tolerance.map_or(DEFAULT_TOLERANCE, |d| d.0);
        if tolerance < Duration::from_secs(1) {
            return Err(err("tolerance", "must be at least 1s".into()));
        }
        let id = match (self.id, scheme) {
            (Some(p), _) => {
                if !is_pointer(&p) || p.is_empty() {
                    return Err(err("id", format!("{p:?} is not a JSON Pointer like /id")));
                }
                IdSource::Pointer(p)
            }
            (None, Scheme::Stripe) => IdSource::Pointer("/id".into()),
            (None, _) => IdSource::Scheme,
        };
        let max_body_size = self.max_body_size.map_or(DEFAULT_MAX_BODY_SIZE, |b| b.0);
        if max_body_size == 0 {
            return Err(err("max_body_size", "must be at least 1".into()));
        }
        if self.rules.is_empty() {
            return Err(err(
                "rules",
                "add at least one [[webhooks.rules]] table: without one every delivery would \
                 be ignored"
                    .into(),
            ));
        }
        if self.rules.len() > MAX_RULES {
            return Err(err("rules", format!("at most {MAX_RULES} rules")));
        }
        let rules = self
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.into_rule()
                    .map_err(|(field, m)| err(&format!("rules[{i}].{field}"), m))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WebhookConfig {
            name: self.name,
            scheme,
            keys,
            tolerance,
            id,
            max_body_size,
            rate: self.rate,
            rules,
        })
    }
}

type FieldError = (&'static str, String);

fn pointer(field: &'static str, p: &str) -> Result<String, FieldError> {
    if is_pointer(p) {
        Ok(p.to_owned())
    } else {
        Err((
            field,
            format!("{p:?} is not a JSON Pointer (like /data/id)"),
        ))
    }
}

/// A template whose placeholders are valid pointers.
fn template(field: &'static str, text: &str) -> Result<Template, FieldError> {
    let t = Template::parse(text);
    if let Some(bad) = t.pointers_iter().find(|p| !is_pointer(p)) {
        return Err((
            field,
            format!("{{{bad}}} is not a JSON Pointer placeholder"),
        ));
    }
    Ok(t)
}

/// `"/pointer"` or `["template", …]`.
fn ids(field: &'static str, value: &Value) -> Result<Ids, FieldError> {
    match value {
        Value::String(p) => Ok(Ids::Pointer(pointer(field, p)?)),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(s) => template(field, s),
                _ => Err((field, "every item must be a string (a template)".into())),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Ids::Templates),
        _ => Err((
            field,
            "a JSON Pointer string (\"/data/ids\") or an array of templates ([\"ops\", \
             \"user:{/data/id}\"])"
                .into(),
        )),
    }
}

fn check_templates(field: &'static str, value: &Value) -> Result<(), FieldError> {
    match value {
        Value::String(s) => template(field, s).map(|_| ()),
        Value::Array(items) => items.iter().try_for_each(|v| check_templates(field, v)),
        Value::Object(map) => map.values().try_for_each(|v| check_templates(field, v)),
        _ => Ok(()),
    }
}

impl RuleSettings {
    fn into_rule(self) -> Result<Rule, FieldError> {
        let when = self
            .when
            .into_iter()
            .map(|(p, v)| Ok((pointer("when", &p)?, v)))
            .collect::<Result<Vec<_>, FieldError>>()?;
        let when_headers = self
            .when_headers
            .into_iter()
            .map(|(name, v)| {
                let header = http::HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| ("when_headers", format!("{name:?} is not a header name")))?;
                match v {
                    Value::String(s) => Ok((header, s)),
                    _ => Err((
                        "when_headers",
                        format!("{name}: the expected value must be a string"),
                    )),
                }
            })
            .collect::<Result<Vec<_>, FieldError>>()?;
        let event = template("event", &self.event)?;
        if let Some(literal) = event.as_literal() {
            crate::event::EventName::new(&literal).map_err(|e| ("event", e.message.to_string()))?;
        }
        let mut users = Vec::new();
        if let Some(v) = &self.users {
            users.push(ids("users", v)?);
        }
        if let Some(u) = &self.user {
            users.push(if u.starts_with('/') {
                Ids::Pointer(pointer("user", u)?)
            } else {
                Ids::Templates(vec![template("user", u)?])
            });
        }
        let channels = self
            .channels
            .as_ref()
            .map(|v| ids("channels", v))
            .transpose()?;
        if self.broadcast && (!users.is_empty() || channels.is_some()) {
            return Err((
                "broadcast",
                "broadcast = true cannot be combined with users, user or channels".into(),
            ));
        }
        if !self.broadcast && users.is_empty() && channels.is_none() {
            return Err((
                "users",
                "name a target: users, user, channels, or broadcast = true".into(),
            ));
        }
        let fallback = match self.fallback.as_deref() {
            None | Some("none") => Fallback::None,
            Some("broadcast") => Fallback::Broadcast,
            Some(other) => {
                return Err((
                    "fallback",
                    format!("{other:?}: expected \"none\" or \"broadcast\""),
                ))
            }
        };
        let data = match self.data {
            None => Data::Whole,
            Some(Value::String(p)) if p.starts_with('/') || p.is_empty() => {
                Data::Pointer(pointer("data", &p)?)
            }
            Some(v) => {
                check_templates("data", &v)?;
                Data::Template(v)
            }
        };
        Ok(Rule {
            when,
            when_headers,
            event,
            users,
            channels,
            broadcast: self.broadcast,
            fallback,
            data,
        })
    }
}

/// Checks every `[[webhooks]]` table and that names are unique.
///
/// # Errors
/// The first [`ConfigError`], naming the webhook and the field.
pub fn webhooks(list: Option<Vec<WebhookSettings>>) -> Result<Vec<WebhookConfig>, ConfigError> {
    let mut out: Vec<WebhookConfig> = Vec::new();
    for (i, w) in list.unwrap_or_default().into_iter().enumerate() {
        let w = w.into_config(i)?;
        if out.iter().any(|o| o.name == w.name) {
            return Err(ConfigError(format!(
                "webhooks {:?}: name: two webhooks have this name",
                w.name
            )));
        }
        out.push(w);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: Value) -> Result<Vec<WebhookConfig>, ConfigError> {
        let list: Vec<WebhookSettings> = serde_json::from_value(json).unwrap();
        webhooks(Some(list))
    }

    fn base() -> Value {
        serde_json::json!({
            "name": "payments",
            "scheme": "standard-webhooks",
            "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            "rules": [{"when": {"/type": "payment.succeeded"}, "event": "payment",
                       "users": "/data/customerId", "data": "/data"}]
        })
    }

    #[test]
    fn the_issue_example_is_valid() {
        let w = &parse(serde_json::json!([base()])).unwrap()[0];
        assert_eq!(w.scheme, Scheme::StandardWebhooks);
        assert_eq!(w.tolerance, DEFAULT_TOLERANCE);
        assert_eq!(w.id, IdSource::Scheme);
        assert_eq!(w.rules[0].data, Data::Pointer("/data".into()));
    }

    #[test]
    fn errors_name_the_webhook_and_the_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "scheme",
                serde_json::json!("svix"),
                "webhooks \"payments\": scheme: unknown scheme",
            ),
            (
                "secrets",
                serde_json::json!([]),
                "webhooks \"payments\": secrets:",
            ),
            (
                "secrets",
                serde_json::json!(["ok", "whsec_!!"]),
                "secrets[0]",
            ),
            ("name", serde_json::json!("a/b"), "webhooks[0]: name:"),
            (
                "tolerance",
                serde_json::json!("0s"),
                "tolerance: must be at least 1s",
            ),
            (
                "id",
                serde_json::json!("id"),
                "id: \"id\" is not a JSON Pointer",
            ),
            ("rules", serde_json::json!([]), "rules: add at least one"),
            (
                "rules",
                serde_json::json!([{"event": "x", "users": "data/id"}]),
                "rules[0].users:",
            ),
            (
                "rules",
                serde_json::json!([{"event": "x"}]),
                "rules[0].users: name a target",
            ),
            (
                "rules",
                serde_json::json!([{"event": "connected", "broadcast": true}]),
                "rules[0].event:",
            ),
            (
                "rules",
                serde_json::json!([{"event": "x", "broadcast": true, "channels": ["a"]}]),
                "rules[0].broadcast:",
            ),
            (
                "rules",
                serde_json::json!([{"event": "x", "broadcast": true, "fallback": "all"}]),
                "rules[0].fallback:",
            ),
        ];
        for (field, value, expected) in cases {
            let mut w = base();
            w[field] = value.clone();
            let e = parse(serde_json::json!([w])).unwrap_err();
            assert!(e.0.contains(expected), "{field}={value}: {e}");
        }
        let e = parse(serde_json::json!([base(), base()])).unwrap_err();
        assert!(e.0.contains("two webhooks"), "{e}");
    }

    #[test]
    fn secrets_come_from_files_too() {
        let dir = std::env::temp_dir().join(format!("herald-wh-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        let mut w = base();
        w["secrets"] = serde_json::json!([]);
        w["secret_files"] = serde_json::json!([file]);
        let only_file = &parse(serde_json::json!([w.clone()])).unwrap()[0];
        let inline = &parse(serde_json::json!([base()])).unwrap()[0];
        assert_eq!(only_file.keys, inline.keys);
        w["secret_files"] = serde_json::json!([dir.join("missing")]);
        let e = parse(serde_json::json!([w])).unwrap_err();
        assert!(e.0.contains("secret_files[0]: cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stripe_dedupes_by_the_event_id() {
        let mut w = base();
        w["scheme"] = "stripe".into();
        w["secrets"] = serde_json::json!(["whsec_anything"]);
        assert_eq!(
            parse(serde_json::json!([w])).unwrap()[0].id,
            IdSource::Pointer("/id".into())
        );
    }
}
