//! Topic selectors, each compiled once into what fan-out asks.
//!
//! Two protocol generations name them differently, and each spelling is one [`SelectorKind`]:
//!
//! - 0.x (`topic=`, the `mercure` claim): `*`, an exact topic, or a URI Template (RFC 6570)
//!   ([`SelectorKind::Template`]);
//! - 1.0 (`match=` and `{"match": …}`: [`SelectorKind::Exact`]; `match_urlpattern=` and
//!   `{"match_urlpattern": …}`: [`SelectorKind::UrlPattern`], a WHATWG URL Pattern such as
//!   `https://example.com/books/:id`). `*` matches every topic in both 1.0 kinds.
//!
//! ## URI Templates (0.x)
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
//!
//! ## URL Patterns (1.0)
//!
//! Compiled by the `urlpattern` crate (the WHATWG URL Pattern Standard as Deno implements it),
//! whose regular expressions are the `regex` crate's: matching is linear-time too, and a
//! pattern whose regular expression groups need backtracking (look-around, back-references)
//! does not compile and is refused. `ignoreCase` is off; hosts compare case-insensitively, as
//! URL parsing lowercases them. A topic matches when it parses as a URL (relative topics are
//! resolved against the base URL, see [`SelectorStore`](super::format::SelectorStore)) and the
//! pattern accepts it; a topic that is not a URL never matches a URL Pattern. A pattern is at
//! most [`MAX_PATTERN_LEN`] bytes; one that is not valid is refused (`400` in a query, `401` in
//! a token) rather than taken literally.

use std::fmt;

use regex::{Regex, RegexBuilder};
use url::Url;
use urlpattern::{UrlPattern, UrlPatternInit, UrlPatternMatchInput, UrlPatternOptions};

/// The selector that matches every topic.
pub(crate) const ANY: &str = "*";

/// Largest compiled form of one template, in bytes (the `regex` crate's size limit): a
/// template that needs more is not compiled and matches only its own text.
const MAX_COMPILED_SIZE: usize = 1 << 20;

/// Prefix modifiers above this many characters match any length.
const MAX_BOUNDED_PREFIX: usize = 256;

/// Longest URL Pattern, in bytes: compiling one costs more than a template, so they are
/// shorter than topics.
pub(crate) const MAX_PATTERN_LEN: usize = 2048;

/// Most groups, named groups and wildcards (`(`, `:name`, `*`) in one URL Pattern. Compiling
/// a pattern costs about the square of their number (2,000 wildcards take seconds), far more
/// than its length: real patterns have a handful.
pub(crate) const MAX_PATTERN_PARTS: usize = 64;

/// Most URL Patterns in one subscription's query, and in one token: each costs a compilation
/// (off the async threads, see `MercureState::compile`).
pub(crate) const MAX_URL_PATTERNS: usize = 32;

/// How a selector's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum SelectorKind {
    /// 0.x: `*`, an exact topic or a URI Template (`topic=`, `mercure.subscribe`).
    Template,
    /// 1.0 exact matching: byte for byte, `*` for every topic (`match=`, `{"match": …}`).
    Exact,
    /// 1.0 URL Pattern (`match_urlpattern=`, `{"match_urlpattern": …}`).
    UrlPattern,
}

impl SelectorKind {
    /// The 1.0 name of the kind (`exact`, `urlpattern`; `template` for 0.x selectors), as the
    /// subscriptions API's `{match_type}` segment and the docs spell it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SelectorKind::Template => "template",
            SelectorKind::Exact => "exact",
            SelectorKind::UrlPattern => "urlpattern",
        }
    }
}

/// A selector as written: its kind and its text, before it is compiled (the form tokens and
/// queries carry, and the key the compiled selectors are interned by).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SelectorSpec {
    pub(crate) kind: SelectorKind,
    pub(crate) text: String,
}

impl SelectorSpec {
    /// A 0.x selector (`topic=`, `mercure.subscribe`).
    pub(crate) fn template(text: impl Into<String>) -> Self {
        SelectorSpec {
            kind: SelectorKind::Template,
            text: text.into(),
        }
    }

    /// A 1.0 exact matcher.
    pub(crate) fn exact(text: impl Into<String>) -> Self {
        SelectorSpec {
            kind: SelectorKind::Exact,
            text: text.into(),
        }
    }

    /// A 1.0 URL Pattern.
    pub(crate) fn url_pattern(text: impl Into<String>) -> Self {
        SelectorSpec {
            kind: SelectorKind::UrlPattern,
            text: text.into(),
        }
    }
}

impl fmt::Display for SelectorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.name(), self.text)
    }
}

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
    /// A URL Pattern and the base URL relative topics are resolved against.
    UrlPattern { pattern: Box<UrlPattern>, base: Url },
}

impl Selector {
    /// Compiles `spec`; relative URL Patterns and topics are resolved against `base`.
    ///
    /// # Errors
    /// A URL Pattern that is too long or not valid (0.x selectors always compile: an invalid
    /// template matches only itself).
    pub(crate) fn compile(spec: &SelectorSpec, base: &Url) -> Result<Selector, String> {
        match spec.kind {
            SelectorKind::Template => Ok(Selector::parse(&spec.text)),
            SelectorKind::Exact if spec.text == ANY => Ok(Selector::Any),
            SelectorKind::Exact => Ok(Selector::Exact(spec.text.as_str().into())),
            SelectorKind::UrlPattern if spec.text == ANY => Ok(Selector::Any),
            SelectorKind::UrlPattern => Selector::url_pattern(&spec.text, base),
        }
    }

    /// Compiles a URL Pattern.
    fn url_pattern(text: &str, base: &Url) -> Result<Selector, String> {
        if text.len() > MAX_PATTERN_LEN {
            return Err(format!("a URL Pattern is at most {MAX_PATTERN_LEN} bytes"));
        }
        if pattern_parts(text) > MAX_PATTERN_PARTS {
            return Err(format!(
                "a URL Pattern has at most {MAX_PATTERN_PARTS} groups, named groups and \
                 wildcards"
            ));
        }
        let bad = |e: urlpattern::Error| format!("{text:?} is not a valid URL Pattern: {e}");
        let init =
            UrlPatternInit::parse_constructor_string::<regex::Regex>(text, Some(base.clone()))
                .map_err(bad)?;
        let pattern = UrlPattern::parse(init, UrlPatternOptions::default()).map_err(bad)?;
        Ok(Selector::UrlPattern {
            pattern: Box::new(pattern),
            base: base.clone(),
        })
    }

    /// Compiles a 0.x selector (`text`).
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
            Selector::UrlPattern { pattern, base } => {
                let Ok(url) = Url::options().base_url(Some(base)).parse(topic) else {
                    return false;
                };
                pattern
                    .test(UrlPatternMatchInput::Url(url))
                    .unwrap_or(false)
            }
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

/// An upper bound of the groups, named groups and wildcards of a URL Pattern: every `(`, every
/// `*`, and every `:` that starts a name (not the scheme's `:` nor a port's); escaped ones and
/// those inside a group's regular expression count too, which only overestimates.
fn pattern_parts(text: &str) -> usize {
    let b = text.as_bytes();
    (0..b.len())
        .filter(|&i| match b[i] {
            b'(' | b'*' => true,
            b':' => b
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, b'_' | b'$') || *c >= 0x80),
            _ => false,
        })
        .count()
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

    fn url_pattern(pattern: &str) -> Selector {
        let base = Url::parse("https://hub.example.com/.well-known/mercure").unwrap();
        Selector::compile(&SelectorSpec::url_pattern(pattern), &base).unwrap()
    }

    #[test]
    fn url_patterns() {
        let s = url_pattern("https://example.com/books/:id");
        assert!(s.matches("https://example.com/books/1"));
        assert!(
            s.matches("https://EXAMPLE.com/books/abc"),
            "hosts ignore case"
        );
        assert!(!s.matches("https://example.com/Books/1"), "paths do not");
        assert!(!s.matches("https://example.com/books/1/reviews"));
        assert!(!s.matches("https://example.com/books/"));
        assert!(!s.matches("https://example.org/books/1"));
        assert!(!s.matches("http://example.com/books/1"));
        assert!(!s.matches("urn:isbn:1"), "not a URL of the pattern");
        assert!(
            s.matches("https://example.com/books/1?x=2"),
            "search is a wildcard"
        );
        let wild = url_pattern("https://example.com/books/*");
        assert!(wild.matches("https://example.com/books/1/reviews/2"));
        let digits = url_pattern("https://example.com/books/:id(\\d+)");
        assert!(digits.matches("https://example.com/books/42"));
        assert!(!digits.matches("https://example.com/books/x"));
        let optional = url_pattern("https://example.com/books{/:id}?");
        assert!(optional.matches("https://example.com/books"));
        assert!(optional.matches("https://example.com/books/1"));
        let host = url_pattern("https://:tenant.example.com/*");
        assert!(host.matches("https://acme.example.com/x"));
        // A relative pattern and relative topics resolve against the base.
        let relative = url_pattern("/.well-known/mercure/subscriptions/:kind/:topic/:subscriber");
        assert!(relative.matches("/.well-known/mercure/subscriptions/exact/urn%3Aa/urn%3Auuid%3A1"));
        assert!(
            relative.matches("https://hub.example.com/.well-known/mercure/subscriptions/exact/a/b")
        );
        assert!(!relative.matches("/.well-known/mercure/subscriptions/exact/a"));
        // `*` is every topic, in both 1.0 kinds.
        assert!(url_pattern("*").matches("not even a URL"));
    }

    #[test]
    fn bad_url_patterns_are_refused() {
        let base = Url::parse("https://hub.example.com/").unwrap();
        for bad in [
            "https://example.com/books/:id(",
            "https://example.com/(?<=a)b",
            "https://example.com/:x(a)/:y(\\1)",
            "https://example.com/{",
            &format!("https://example.com/{}", "a".repeat(MAX_PATTERN_LEN)),
            // More parts than compile in reasonable time.
            &"*".repeat(MAX_PATTERN_PARTS + 1),
            &"/:a*".repeat(MAX_PATTERN_PARTS + 1),
            &format!(
                "https://example.com{}",
                "/(x)".repeat(MAX_PATTERN_PARTS + 1)
            ),
        ] {
            assert!(
                Selector::compile(&SelectorSpec::url_pattern(bad), &base).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn url_pattern_parts_are_bounded_and_compile_fast() {
        assert_eq!(pattern_parts("https://example.com:8443/books/:id"), 1);
        assert_eq!(pattern_parts("https://:tenant.example.com/*/:x(\\d+)"), 4);
        let base = Url::parse("https://hub.example.com/").unwrap();
        // The most expensive shapes at the bound: consecutive wildcards, modified named groups.
        for worst in [
            "*".repeat(MAX_PATTERN_PARTS),
            (0..MAX_PATTERN_PARTS / 2)
                .map(|i| format!("/:a{i}*"))
                .collect(),
        ] {
            let started = std::time::Instant::now();
            Selector::compile(&SelectorSpec::url_pattern(&worst), &base).unwrap();
            assert!(
                started.elapsed() < std::time::Duration::from_secs(1),
                "{worst}: {:?}",
                started.elapsed()
            );
        }
    }

    #[test]
    fn exact_1_0_matchers() {
        let base = Url::parse("https://hub.example.com/").unwrap();
        let exact = |t: &str| Selector::compile(&SelectorSpec::exact(t), &base).unwrap();
        assert!(exact("urn:a").matches("urn:a"));
        assert!(!exact("urn:a").matches("urn:A"));
        assert_eq!(
            exact("https://example.com/{id}").as_exact(),
            Some("https://example.com/{id}")
        );
        assert!(
            !exact("https://example.com/{id}").matches("https://example.com/1"),
            "no templates"
        );
        assert!(!exact("/books/:id").matches("/books/1"), "no patterns");
        assert!(exact("*").matches("anything"));
    }

    #[test]
    fn url_pattern_matching_stays_linear_on_hostile_input() {
        let s = url_pattern("https://example.com/:a*:b*:c*:d*:e*x");
        let topic = format!("https://example.com/{}", "a".repeat(8000));
        let started = std::time::Instant::now();
        let _ = s.matches(&topic);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
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
