//! Configuration of `herald serve`: command-line flags, then environment variables, then an
//! optional TOML file, then the library's documented defaults.
//!
//! Every setting is one field of [`herald::config::Settings`] (flag and TOML key from its name).
//! This file gives each flag its environment variable by the one rule, `HERALD_` + the flag in
//! UPPER_SNAKE ([`env_name`]), accepts the older names in [`ENV_ALIASES`], and merges the layers
//! ([`load`]).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};

use herald::config::{Config, LogFormat, Settings};

/// `herald serve`'s arguments: the TOML file, and every setting.
#[derive(Debug, Args)]
#[command(
    after_help = "Every setting can also be given in the TOML file of --config, under its \
    snake_case name (e.g. heartbeat_interval = \"15s\"), and in the environment as HERALD_ + its \
    name in UPPER_SNAKE (e.g. HERALD_HEARTBEAT_INTERVAL=15s). Precedence: flag, then \
    environment, then file, then default."
)]
pub(crate) struct ServeArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

/// Other environment names, accepted when the rule's name is unset: `(flag, alias)`: the older
/// names of earlier releases, and the Mercure hub's own names of its keys, so that a Mercure
/// deployment's environment carries over. Never add another; new settings follow the rule.
pub(crate) const ENV_ALIASES: &[(&str, &str)] = &[
    ("heartbeat-interval", "SSE_HEARTBEAT_INTERVAL"),
    ("heartbeat-style", "SSE_HEARTBEAT_STYLE"),
    ("cleanup-interval", "SSE_CLEANUP_INTERVAL"),
    ("connection-timeout", "SSE_CONNECTION_TIMEOUT"),
    ("retry", "SSE_RETRY"),
    ("max-connections", "SSE_MAX_CONNECTIONS"),
    ("max-connections-per-user", "SSE_MAX_CONNECTIONS_PER_USER"),
    ("max-connections-per-ip", "SSE_MAX_CONNECTIONS_PER_IP"),
    ("queue-capacity", "SSE_QUEUE_CAPACITY"),
    ("queue-max-bytes", "SSE_QUEUE_MAX_BYTES"),
    ("engine", "HERALD_REDIS_URL"),
    ("mercure-publisher-jwt-key", "MERCURE_PUBLISHER_JWT_KEY"),
    ("mercure-subscriber-jwt-key", "MERCURE_SUBSCRIBER_JWT_KEY"),
    ("mercure-publisher-jwt-alg", "MERCURE_PUBLISHER_JWT_ALG"),
    ("mercure-subscriber-jwt-alg", "MERCURE_SUBSCRIBER_JWT_ALG"),
];

/// The environment variable of a flag: `HERALD_` + the flag in UPPER_SNAKE.
pub(crate) fn env_name(flag: &str) -> String {
    format!("HERALD_{}", flag.replace('-', "_").to_ascii_uppercase())
}

/// Gives every setting of `command` (the `herald` command or its `serve` subcommand) its
/// environment variable: the rule's name, or its alias when only the alias is set.
pub(crate) fn with_env_names(command: Command) -> Command {
    command.mut_args(|arg| with_env(arg, |name| std::env::var_os(name).is_some()))
}

fn with_env(arg: Arg, is_set: impl Fn(&str) -> bool) -> Arg {
    let Some(flag) = arg.get_long().map(str::to_owned) else {
        return arg;
    };
    if matches!(flag.as_str(), "help" | "version") {
        return arg;
    }
    let primary = env_name(&flag);
    let Some(&(_, alias)) = ENV_ALIASES.iter().find(|(f, _)| *f == flag) else {
        return arg.env(primary);
    };
    let note = format!(" [env alias: {alias}]");
    let help = arg.get_help().map(|h| format!("{h}{note}"));
    let long_help = arg.get_long_help().map(|h| format!("{h}{note}"));
    let mut arg = if !is_set(&primary) && is_set(alias) {
        arg.env(alias)
    } else {
        arg.env(primary)
    };
    if let Some(help) = help {
        arg = arg.help(help);
    }
    if let Some(long_help) = long_help {
        arg = arg.long_help(long_help);
    }
    arg
}

/// Merges the layers: the file, overwritten by whatever flags and environment variables set
/// (`matches` are those of the command that holds [`ServeArgs`]), then the defaults.
pub(crate) fn load(args: &ServeArgs, matches: &ArgMatches) -> anyhow::Result<(Config, LogFormat)> {
    let mut settings = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the configuration file {}", path.display())
            })?;
            toml::from_str::<Settings>(&text)
                .with_context(|| format!("invalid configuration file {}", path.display()))?
        }
        None => Settings::default(),
    };
    // Publisher keys add up: the file's scoped [[publisher_keys]] stay when flags or the
    // environment name more.
    let file_keys = settings.publisher_keys.take();
    settings.update_from_arg_matches(matches)?;
    if let Some(file_keys) = file_keys {
        settings
            .publisher_keys
            .get_or_insert_with(Vec::new)
            .extend(file_keys);
    }
    let log_format = settings.log_format.unwrap_or_default();
    Ok((settings.into_config()?, log_format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::time::Duration;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// Loads the settings of `args` and the TOML `file` (the environment is left alone: the
    /// tests of the binary in `tests/binary.rs` set variables).
    fn load_with(args: &[&str], file: Option<&str>) -> Config {
        let mut argv = vec!["herald"];
        argv.extend_from_slice(args);
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let mut args = Cli::from_arg_matches(&matches).unwrap().serve;
        let dir = std::env::temp_dir().join(format!("herald-settings-{}", rand_suffix()));
        if let Some(text) = file {
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("herald.toml");
            std::fs::write(&path, text).unwrap();
            args.config = Some(path);
        }
        let config = load(&args, &matches).unwrap().0;
        let _ = std::fs::remove_dir_all(&dir);
        config
    }

    fn rand_suffix() -> String {
        format!(
            "{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )
    }

    #[test]
    fn env_names_follow_the_rule() {
        assert_eq!(env_name("heartbeat-interval"), "HERALD_HEARTBEAT_INTERVAL");
        let command = Cli::command().mut_args(|arg| with_env(arg, |_| false));
        for arg in command.get_arguments() {
            let Some(flag) = arg.get_long() else { continue };
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(env_name(flag).as_str()),
                "--{flag}"
            );
        }
        // Only the alias set: the alias is read.
        let command = Cli::command().mut_args(|arg| with_env(arg, |name| name == "SSE_RETRY"));
        let retry = command
            .get_arguments()
            .find(|a| a.get_long() == Some("retry"))
            .unwrap();
        assert_eq!(retry.get_env().and_then(|e| e.to_str()), Some("SSE_RETRY"));
        // Both set: the rule's name wins.
        let command = Cli::command().mut_args(|arg| with_env(arg, |_| true));
        let retry = command
            .get_arguments()
            .find(|a| a.get_long() == Some("retry"))
            .unwrap();
        assert_eq!(
            retry.get_env().and_then(|e| e.to_str()),
            Some("HERALD_RETRY")
        );
        for (flag, _) in ENV_ALIASES {
            assert!(
                command.get_arguments().any(|a| a.get_long() == Some(flag)),
                "alias of an unknown flag --{flag}"
            );
        }
    }

    /// The `[default: …]` of each flag's help is the library's default: giving the flag that
    /// value changes nothing.
    #[test]
    fn help_defaults_are_the_library_defaults() {
        let defaults = format!("{:?}", load_with(&[], None));
        let mut checked = 0;
        for arg in Cli::command().get_arguments() {
            let (Some(flag), Some(help)) = (arg.get_long(), arg.get_help()) else {
                continue;
            };
            let help = help.to_string();
            let Some(value) = help
                .split("[default: ")
                .nth(1)
                .and_then(|rest| rest.split(']').next())
            else {
                continue;
            };
            // Words, not values (`unlimited`, `none`, `memory only`, …), and a Redis setting
            // that needs a Redis engine.
            if value.contains(' ')
                || value.starts_with('`')
                || ["none", "unlimited"].contains(&value)
                || flag == "redis-prefix"
            {
                continue;
            }
            let flag_arg = format!("--{flag}={value}");
            let config = format!("{:?}", load_with(&[&flag_arg], None));
            assert_eq!(config, defaults, "{flag_arg} is not the default");
            checked += 1;
        }
        assert!(checked > 30, "only {checked} defaults checked");
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let c = load_with(
            &["--retry", "1234"],
            Some("retry = \"7s\"\nheartbeat_interval = 50\nmax_body_size = \"128KiB\""),
        );
        assert_eq!(c.hub.retry, Duration::from_millis(1234));
        assert_eq!(c.hub.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(c.http.max_body_size, 128 * 1024);
        assert_eq!(
            c.hub.cleanup_interval,
            herald::config::DEFAULT_CLEANUP_INTERVAL
        );
    }

    #[test]
    fn booleans_take_a_value_or_none() {
        assert!(load_with(&["--reuse-port"], None).reuse_port);
        assert!(load_with(&["--reuse-port", "--retry", "1s"], None).reuse_port);
        assert!(!load_with(&["--reuse-port=no"], None).reuse_port);
        assert!(load_with(&["--reuse-port=1"], None).reuse_port);
        assert!(!load_with(&[], Some("reuse_port = false")).reuse_port);
        assert!(load_with(&[], Some("reuse_port = true")).reuse_port);
        assert!(!load_with(&["--reuse-port=false"], Some("reuse_port = true")).reuse_port);
        let c = load_with(&["--cors-credentials", "yes"], None);
        assert!(c.http.cors_credentials);
        let c = load_with(&["--identity-from-query", "off"], None);
        assert!(!c.http.identity_from_query);
    }

    #[test]
    fn publisher_keys_from_flags_add_to_the_file_s() {
        let c = load_with(
            &[
                "--publisher-keys",
                "a=0123456789abcdef-a, b=0123456789abcdef-b",
            ],
            Some(
                "[[publisher_keys]]\nname = \"billing\"\nkey = \"0123456789abcdef-c\"\n\
                 channels = [\"billing:*\"]\n",
            ),
        );
        let names: Vec<&str> = c
            .http
            .publisher_keys
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "billing"]);
        assert!(!c.http.publisher_keys[2].admin);
        assert!(c.http.publisher_keys[0].admin);
        let c = load_with(&[], Some("publisher_keys = \"x=0123456789abcdef-x\""));
        assert_eq!(c.http.publisher_keys[0].name, "x");
    }

    #[test]
    fn identity_from_query_defaults_off_with_keys_or_proxies() {
        let identity = |args: &[&str]| load_with(args, None).http.identity_from_query;
        assert!(identity(&[]));
        assert!(!identity(&["--publisher-key", "0123456789abcdef"]));
        assert!(!identity(&["--trusted-proxies", "127.0.0.1"]));
        assert!(identity(&[
            "--trusted-proxies",
            "127.0.0.1",
            "--identity-from-query",
            "true"
        ]));
    }

    #[test]
    fn lists_from_flags_and_file() {
        let c = load_with(
            &["--publish-origins", "https://a.example, https://b.example"],
            None,
        );
        assert_eq!(
            c.http.publish_origins,
            ["https://a.example", "https://b.example"]
        );
        for text in [
            "publish_origins = \"https://a.example,https://b.example\"",
            "publish_origins = [\"https://a.example\", \"https://b.example\"]",
        ] {
            let c = load_with(&[], Some(text));
            assert_eq!(
                c.http.publish_origins,
                ["https://a.example", "https://b.example"]
            );
        }
        let c = load_with(&[], Some("trusted_proxies = [\"10.0.0.1\", \"::1\"]"));
        assert_eq!(c.http.trusted_proxies.len(), 2);
    }

    #[test]
    fn file_settings_parse() {
        let s: Settings = toml::from_str(
            "listen = \"127.0.0.1:9000\"\nheartbeat_interval = \"5s\"\nretry = 1500\n\
             heartbeat_style = \"comment\"\nmax_body_size = \"128KiB\"\n\
             engine = \"redis://h:6379/1\"\nnode_id = \"n2\"\nlog_format = \"json\"",
        )
        .unwrap();
        assert_eq!(s.node_id.as_deref(), Some("n2"));
        assert_eq!(s.log_format, Some(LogFormat::Json));
        let c = s.into_config().unwrap();
        assert_eq!(c.hub.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(c.hub.retry, Duration::from_millis(1500));
        assert_eq!(c.http.max_body_size, 128 * 1024);
        assert!(toml::from_str::<Settings>("heartbeat = 1").is_err());
        // Mistakes are named.
        for (text, named) in [
            ("retry = \"soon\"", "is not a duration"),
            ("retry = true", "a duration like"),
            ("max_body_size = \"1GB\"", "unknown unit"),
            ("max_body_size = -1", "negative"),
            ("trusted_proxies = [\"10.0.0.300\"]", "invalid IP address"),
            (
                "publisher_keys = [{ name = \"a\", key = \"k\", admn = true }]",
                "admn",
            ),
            ("publisher_keys = [\"no-equals-sign\"]", "name=key"),
        ] {
            let err = toml::from_str::<Settings>(text).unwrap_err().to_string();
            assert!(err.contains(named), "{text}: {err}");
        }
        assert!(toml::from_str::<Settings>("config = \"x.toml\"").is_err());
    }
}
