//! Topic selectors of the 0.x protocol: `*`, an exact topic, or a URI Template (RFC 6570),
//! each compiled once into what fan-out asks.
//!
//! No maintained Rust crate matches URI Templates (they expand them), so the template is
//! compiled here into a regular expression of the `regex` crate, whose matching is linear in
//! the topic's length whatever the template (no backtracking: a hostile selector cannot stall
//! fan-out). Supported, as the tests state:
//!
//! - Level 1: `{var}`: any run of unreserved characters (`A-Z a-z 0-9 - . _ ~`),
//!   percent-encodings and non-ASCII characters (topics are IRIs); not `/`, `?`, `#`, …
//! - Level 2: `{+var}` (reserved characters too, `/` included) and `{#var}` (`#` then the
//!   same).
//! - Level 3: several variables in one expression (`{x,y}`) and the operators `{.var}`,
//!   `{/var}`, `{;var}`, `{?var}` and `{&var}`, each with its prefix and separator.
//! - Level 4: the explode modifier (`{/path*}`, `{?query*}`: any number of items, any keys) and
//!   the prefix modifier (`{var:3}`: at most that many characters; above 256 no bound).
//!
//! A variable may always be undefined (its expansion empty), so `/books{/id}` also matches
//! `/books`. Matching is a superset of expansion: a topic matches when some values of the
//! variables could have produced it, not counting the order and number of the variables of one
//! expression. A selector that is not a valid template (`{` unclosed, a reserved operator such
//! as `{=x}`) matches only itself, as in the Mercure hub. A template always matches its own
//! text too.

use regex::{Regex, RegexBuilder};

/// The selector that matches every topic.
pub(crate) const ANY: &str = "*";

/// Largest compiled form of one template, in bytes (the `regex` crate's size limit): a
/// template that needs more is not compiled and matches only its own text.
const MAX_COMPILED_SIZE: usize = 1 << 20;

/// Prefix modifiers above this many characters match any length.
const MAX_BOUNDED_PREFIX: usize = 256;

/// One compiled topic selector.
#[derive(Debug)]
pub(crate) enum Selector {
    /// `*`: every topic.
    Any,
    /// Exactly this topic.
    Exact(Box<str>),
    /// A URI Template: its text and its compiled form.
    Template {
        /// The template as written (a topic equal to it matches too).
        raw: Box<str>,
        /// `^…$` over the whole topic.
        regex: Regex,
    },
}

impl Selector {
    /// Compiles `text`.
    pub(crate) fn parse(text: &str) -> Selector {
        if text == ANY {
            return Selector::Any;
        }
        if !text.contains('{') {
            return Selector::Exact(text.into());
        }
        match template_regex(text) {
            Some(regex) => Selector::Template {
                raw: text.into(),
                regex,
            },
            None => Selector::Exact(text.into()),
        }
    }

    /// Whether `topic` matches.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        match self {
            Selector::Any => true,
            Selector::Exact(t) => **t == *topic,
            Selector::Template { raw, regex } => **raw == *topic || regex.is_match(topic),
        }
    }

    /// The one topic it matches, for an exact selector.
    pub(crate) fn as_exact(&self) -> Option<&str> {
        match self {
            Selector::Exact(t) => Some(t),
            _ => None,
        }
    }
}

/// Unreserved characters, percent-encodings and non-ASCII characters.
const UNRESERVED: &str = r"(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2}|[^\x00-\x7F])";
/// The same and the reserved characters.
const RESERVED: &str = r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2}|[^\x00-\x7F])";

/// The regular expression of a whole template, `None` when it is not a valid one.
fn template_regex(template: &str) -> Option<Regex> {
    let mut pattern = String::from("^");
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let literal = &rest[..open];
        if literal.contains('}') {
            return None;
        }
        pattern.push_str(&regex::escape(literal));
        let close = rest[open..].find('}')? + open;
        pattern.push_str(&expression_regex(&rest[open + 1..close])?);
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return None;
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    RegexBuilder::new(&pattern)
        .size_limit(MAX_COMPILED_SIZE)
        .build()
        .ok()
}

/// One variable of an expression.
struct VarSpec<'a> {
    name: &'a str,
    explode: bool,
    prefix: Option<usize>,
}

/// The regular expression of the inside of one `{…}`.
fn expression_regex(inner: &str) -> Option<String> {
    let (op, list) = match inner.chars().next()? {
        c @ ('+' | '#' | '.' | '/' | ';' | '?' | '&') => (Some(c), &inner[1..]),
        // Reserved for future extensions by RFC 6570: not a template.
        '=' | ',' | '!' | '@' | '|' => return None,
        _ => (None, inner),
    };
    let vars = list.split(',').map(var_spec).collect::<Option<Vec<_>>>()?;
    // (first, separator, named, allowed characters)
    let (first, sep, named, allow) = match op {
        None => ("", ",", false, UNRESERVED),
        Some('+') => ("", ",", false, RESERVED),
        Some('#') => ("#", ",", false, RESERVED),
        Some('.') => (".", ".", false, UNRESERVED),
        Some('/') => ("/", "/", false, UNRESERVED),
        Some(';') => (";", ";", true, UNRESERVED),
        Some('?') => ("?", "&", true, UNRESERVED),
        Some('&') => ("&", "&", true, UNRESERVED),
        Some(_) => return None,
    };
    let (first, sep) = (regex::escape(first), regex::escape(sep));
    let items: Vec<String> = vars
        .iter()
        .map(|v| {
            let value = match v.prefix {
                Some(n) if n <= MAX_BOUNDED_PREFIX => format!("{allow}{{0,{n}}}"),
                _ => format!("{allow}*"),
            };
            // A list or an associative array, unexploded: its items joined by commas.
            let joined = format!("{value}(?:,{value})*");
            // Exploded: items (or `key=value` pairs) joined by the separator.
            let pair = format!("{value}(?:={value})?");
            match (named, v.explode) {
                (false, false) => joined,
                (_, true) => format!("{pair}(?:{sep}{pair})*"),
                (true, false) if op == Some(';') => {
                    format!("{}(?:={joined})?", regex::escape(v.name))
                }
                (true, false) => format!("{}={joined}", regex::escape(v.name)),
            }
        })
        .collect();
    let any_item = format!("(?:{})", items.join("|"));
    // Without an exploded variable, at most one item per variable.
    let more = if vars.iter().any(|v| v.explode) {
        "*".to_owned()
    } else {
        format!("{{0,{}}}", vars.len() - 1)
    };
    Some(format!("(?:{first}{any_item}(?:{sep}{any_item}){more})?"))
}

/// `name`, `name*` or `name:N`; `None` when not well formed.
fn var_spec(spec: &str) -> Option<VarSpec<'_>> {
    let (name, explode, prefix) = if let Some(name) = spec.strip_suffix('*') {
        (name, true, None)
    } else if let Some((name, n)) = spec.split_once(':') {
        let valid = !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit());
        let n: usize = n.parse().ok().filter(|n| valid && *n > 0)?;
        (name, false, Some(n))
    } else {
        (spec, false, None)
    };
    is_var_name(name).then_some(VarSpec {
        name,
        explode,
        prefix,
    })
}

/// `varchar *( ["."] varchar )`, where a varchar is a letter, a digit, `_` or `%XX`.
fn is_var_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes[0] == b'.' || bytes[bytes.len() - 1] == b'.' {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b'.' if bytes[i - 1] == b'.' => return false,
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(selector: &str, topic: &str) -> bool {
        Selector::parse(selector).matches(topic)
    }

    #[test]
    fn any_and_exact() {
        assert!(matches("*", "https://example.com/books/1"));
        assert!(matches("*", ""));
        assert!(matches("https://example.com/a", "https://example.com/a"));
        assert!(!matches("https://example.com/a", "https://example.com/A"));
        assert!(!matches("https://example.com/a", "https://example.com/a/"));
        // Byte for byte: no normalization.
        assert!(!matches(
            "https://example.com/%7Ea",
            "https://example.com/~a"
        ));
        assert!(Selector::parse("urn:x").as_exact() == Some("urn:x"));
    }

    #[test]
    fn level_1_simple_expansion() {
        let s = "https://example.com/books/{id}";
        assert!(matches(s, "https://example.com/books/1"));
        assert!(matches(s, "https://example.com/books/abc-DEF_1.2~x"));
        assert!(matches(s, "https://example.com/books/%C3%A9t%C3%A9"));
        assert!(matches(s, "https://example.com/books/été"), "IRIs");
        assert!(matches(s, "https://example.com/books/"), "an empty value");
        assert!(!matches(s, "https://example.com/books/1/reviews"));
        assert!(!matches(s, "https://example.com/books/1?x=2"));
        assert!(!matches(s, "https://example.org/books/1"));
        assert!(!matches(s, "xhttps://example.com/books/1"), "anchored");
        // The template's own text matches too (step 2 of the protocol's matching).
        assert!(matches(s, s));
        let two = "https://example.com/users/{user}/orders/{order}";
        assert!(matches(two, "https://example.com/users/7/orders/42"));
        assert!(!matches(two, "https://example.com/users/7/orders"));
        // The dot of the literal is a dot, not "any character".
        assert!(!matches("https://example.com/{x}", "https://exampleXcom/1"));
    }

    #[test]
    fn level_2_reserved_and_fragment() {
        let s = "https://example.com/{+path}";
        assert!(matches(s, "https://example.com/a/b/c?x=1"));
        assert!(!matches(
            "https://example.com/{path}",
            "https://example.com/a/b"
        ));
        let f = "https://example.com/page{#section}";
        assert!(matches(f, "https://example.com/page#intro/part"));
        assert!(matches(f, "https://example.com/page"));
        assert!(!matches(f, "https://example.com/pageintro"));
    }

    #[test]
    fn level_3_operators_and_several_variables() {
        assert!(matches("/map{?x,y}", "/map?x=1&y=2"));
        assert!(matches("/map{?x,y}", "/map?x=1"));
        assert!(matches("/map{?x,y}", "/map"));
        assert!(!matches("/map{?x,y}", "/map?z=1"), "only the named keys");
        assert!(matches("/map?a=1{&x}", "/map?a=1&x=3"));
        assert!(matches("/p{;x,y}", "/p;x=1;y"));
        assert!(matches("/books{/id}", "/books/42"));
        assert!(matches("/books{/id}", "/books"));
        assert!(!matches("/books{/id}", "/books/42/x"));
        assert!(matches("/f{.ext}", "/f.json"));
        assert!(matches("{x,y}", "1,2"));
        assert!(!matches("{x}", "1/2"));
    }

    #[test]
    fn level_4_explode_and_prefix() {
        assert!(matches("/files{/path*}", "/files/a/b/c"));
        assert!(matches("/files{/path*}", "/files"));
        assert!(matches("/search{?q*}", "/search?a=1&b=2&c"));
        assert!(matches("/y/{year:4}", "/y/2024"));
        assert!(!matches("/y/{year:4}", "/y/20245"));
        assert!(matches(
            "/long/{v:9999}",
            &format!("/long/{}", "a".repeat(5000))
        ));
    }

    #[test]
    fn invalid_templates_match_only_themselves() {
        for bad in [
            "https://example.com/{id",
            "https://example.com/id}",
            "https://example.com/{}",
            "https://example.com/{=x}",
            "https://example.com/{a b}",
            "https://example.com/{x:0}",
            "https://example.com/{x:10000}",
            "https://example.com/{.}",
            "https://example.com/{a..b}",
        ] {
            let s = Selector::parse(bad);
            assert!(s.as_exact().is_some(), "{bad} should be exact");
            assert!(s.matches(bad));
            assert!(!s.matches("https://example.com/1"));
        }
    }

    #[test]
    fn matching_stays_linear_on_hostile_input() {
        // Nested repetition that would backtrack exponentially elsewhere.
        let s = Selector::parse("{+a}{+b}{+c}{+d}{+e}{+f}{+g}{+h}x");
        let topic = "a".repeat(20_000);
        let started = std::time::Instant::now();
        assert!(!s.matches(&topic));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
