//! The settings that each set one field of [`ServerConfig`], declared once
//! each in [`tuning!`]: the flag (whose long name is also the config file's
//! key, see `settings.rs`), its environment variable, its help, and the
//! field it sets. The default is the field's own in
//! `ServerConfig::default()`, so `--help` shows what the library does and
//! the two cannot drift. Durations and sizes read and print with units
//! (`25s`, `256MiB`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chat_server::ServerConfig;

/// Declares the tuning settings: each is doc comments, then `flag: Type =>
/// field.path, "CHAT_ENV";`. `Type` converts from and into the field's.
macro_rules! tuning {
    ($( $(#[doc = $doc:literal])+ $flag:ident: $ty:ty => $($path:ident).+, $env:literal; )+) => {
        /// The settings that each set one field of the server's config.
        #[derive(Debug, clap::Args)]
        pub(crate) struct Tuning {
            $(
                $(#[doc = $doc])+
                #[arg(long, env = $env, default_value_t = <$ty>::from(ServerConfig::default().$($path).+))]
                $flag: $ty,
            )+
        }

        impl Tuning {
            /// Sets the fields of `config` these settings name.
            pub(crate) fn apply(&self, config: &mut ServerConfig) {
                $( config.$($path).+ = self.$flag.clone().into(); )+
            }
        }
    };
}

tuning! {
    /// Sustained chat messages (say and dm) allowed per second per connection.
    messages_per_sec: u32 => chat.messages_per_sec, "CHAT_MESSAGES_PER_SEC";
    /// Chat messages a connection may send in a burst.
    messages_burst: u32 => chat.messages_burst, "CHAT_MESSAGES_BURST";
    /// Messages kept per room (in storage and for history and resume).
    history_max_per_room: usize => chat.history_per_room, "CHAT_HISTORY_MAX_PER_ROOM";
    /// At shutdown, clients are told to reconnect after a random delay
    /// within this window (500ms, 10s, ...), so they do not all return at
    /// once.
    drain_window: Span => drain_window, "CHAT_DRAIN_WINDOW";
    /// At shutdown, how long to go on serving first while /readyz says
    /// 503 and new connections are refused (0s, 5s, ...), so a load
    /// balancer stops sending clients before theirs are closed.
    drain_delay: Span => drain_delay, "CHAT_DRAIN_DELAY";
    /// How long a file download may wait for the client to read more before
    /// it is dropped: 30s, 2m...
    send_timeout: Positive => transport.send_timeout, "CHAT_SEND_TIMEOUT";
    /// File downloads going at once from one IP address; more get 429.
    max_downloads_per_ip: usize => max_downloads_per_ip, "CHAT_MAX_DOWNLOADS_PER_IP";
    /// Connections open at once from one IP address (WebSockets, downloads
    /// and requests still being read); more get 429.
    max_connections_per_ip: usize => max_connections_per_ip, "CHAT_MAX_CONNECTIONS_PER_IP";
    /// How often quiet connections are pinged (500ms, 25s, ...); one that
    /// has not said hello by its second check is closed (1008).
    ping_interval: Positive => ping_interval, "CHAT_PING_INTERVAL";
    /// Pings in a row a connection may leave unanswered before it is closed
    /// as dead (4010).
    ping_misses: u32 => ping_misses, "CHAT_PING_MISSES";
    /// Sustained frames of any kind per second per connection; past it
    /// frames are refused with rate_limited.
    frames_per_sec: u32 => frames_per_sec, "CHAT_FRAMES_PER_SEC";
    /// Frames of any kind a connection may send in a burst.
    frames_burst: u32 => frames_burst, "CHAT_FRAMES_BURST";
    /// Refused frames (recovering one per second) before a connection is
    /// closed as abusive (1008).
    frames_refused_max: u32 => frames_refused_max, "CHAT_FRAMES_REFUSED_MAX";
    /// Sustained joins of new rooms per second per session.
    joins_per_sec: u32 => chat.joins_per_sec, "CHAT_JOINS_PER_SEC";
    /// New rooms a session may join in a burst.
    joins_burst: u32 => chat.joins_burst, "CHAT_JOINS_BURST";
    /// Rooms one session may be in.
    max_rooms_per_session: usize => chat.max_rooms_per_session, "CHAT_MAX_ROOMS_PER_SESSION";
    /// Members one room may have.
    max_members_per_room: usize => chat.max_members_per_room, "CHAT_MAX_MEMBERS_PER_ROOM";
    /// Shared documents one room may hold (limit_reached past it).
    max_docs_per_room: usize => chat.max_docs_per_room, "CHAT_MAX_DOCS_PER_ROOM";
    /// The largest WebSocket message (and frame) accepted, in bytes; larger
    /// ones close the connection with 1009.
    max_message_bytes: usize => transport.max_message_bytes, "CHAT_MAX_MESSAGE_BYTES";
    /// The largest update of a shared document one message may carry (a
    /// paste, or what an editor typed offline); larger ones close the
    /// document's connection with 4413.
    doc_update_bytes: Size => docs.update_bytes, "CHAT_DOC_UPDATE_BYTES";
    /// The largest a shared document may grow to; edits past it are
    /// refused (4413).
    doc_max_bytes: Size => docs.doc_bytes, "CHAT_DOC_MAX_BYTES";
    /// The longest say or dm text, in bytes (too_large past it).
    max_text_bytes: usize => chat.max_text_bytes, "CHAT_MAX_TEXT_BYTES";
    /// How long after sending a message its sender may edit it: 15m, 1h...
    edit_window: Span => chat.edit_window, "CHAT_EDIT_WINDOW";
    /// The most members `joined` lists (a bigger room's first page) and
    /// the largest page of `who`.
    member_page_max: usize => chat.member_page_max, "CHAT_MEMBER_PAGE_MAX";
    /// In a room bigger than a member page, presence goes out at most once
    /// per this interval, as one batch: 1s, 500ms...
    presence_interval: Positive => chat.presence_interval, "CHAT_PRESENCE_INTERVAL";
    /// How long a message may wait in an overloaded server before it is
    /// refused with unavailable (and sent again by its client): 250ms, 1s...
    max_input_wait: Positive => max_input_wait, "CHAT_MAX_INPUT_WAIT";
    /// The largest HTTP request head, in bytes (431 past it).
    max_header_bytes: usize => transport.max_header_bytes, "CHAT_MAX_HEADER_BYTES";
    /// How long a client may take for the TLS handshake and its request
    /// head (408 past it): 10s, 500ms...
    handshake_timeout: Positive => transport.handshake_timeout, "CHAT_HANDSHAKE_TIMEOUT";
    /// Rooms held in memory at once; idle ones make way for new ones.
    max_rooms: usize => chat.max_rooms, "CHAT_MAX_ROOMS";
    /// Sessions waiting to be resumed that one address may hold; past it
    /// the one detached longest ends.
    max_detached_per_address: usize => chat.max_detached_per_source, "CHAT_MAX_DETACHED_PER_ADDRESS";
    /// Bytes queued for one connection that is not reading fast enough;
    /// past it the connection is closed as too slow (4008) and its client
    /// resumes.
    max_queued_bytes: Size => transport.max_queued_bytes, "CHAT_MAX_QUEUED_BYTES";
    /// Frames queued for one connection before it is closed as too slow.
    max_queued_frames: usize => transport.max_queued_frames, "CHAT_MAX_QUEUED_FRAMES";
    /// Bytes of history all rooms may hold in memory; past it the windows
    /// of the rooms used longest ago are read back from storage when asked.
    history_memory: Size => chat.history_memory_max, "CHAT_HISTORY_MEMORY";
}

/// A duration written with its unit: 500ms, 45s, 30m, 12h, 90d.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span(pub Duration);

/// A duration above zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Positive(pub Duration);

/// A size in bytes, with an optional unit: 1024, 64KiB, 8MiB, 1GB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size(pub u64);

/// A duration type: parsed by `$parse`, printed in its largest exact unit.
macro_rules! duration_type {
    ($name:ident, $parse:path) => {
        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                $parse(text).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_duration(self.0, f)
            }
        }

        impl From<Duration> for $name {
            fn from(duration: Duration) -> Self {
                Self(duration)
            }
        }

        impl From<$name> for Duration {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

duration_type!(Span, parse_duration);
duration_type!(Positive, parse_positive_duration);

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_size(text).map(Self)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The largest binary unit that divides it exactly.
        let bytes = self.0;
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if bytes != 0 && bytes.trailing_zeros() >= shift {
                return write!(f, "{}{unit}", bytes >> shift);
            }
        }
        write!(f, "{bytes}")
    }
}

/// The largest unit that divides `duration` exactly.
fn write_duration(duration: Duration, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let millis = duration.as_millis();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if millis != 0 && millis.is_multiple_of(size) {
            return write!(f, "{}{unit}", millis / size);
        }
    }
    write!(f, "{millis}ms")
}

impl From<usize> for Size {
    fn from(bytes: usize) -> Self {
        Self(u64::try_from(bytes).unwrap_or(u64::MAX))
    }
}

impl From<Size> for usize {
    fn from(size: Size) -> Self {
        usize::try_from(size.0).unwrap_or(usize::MAX)
    }
}

/// A duration above zero.
pub(crate) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("must be more than zero".to_owned()),
        duration => Ok(duration),
    }
}

/// A size in bytes, with an optional unit: 1024, 64KiB, 8MiB, 1GB.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a size like 8MiB"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!("unknown size unit {other:?} (use KiB, MiB, GiB, kB, MB or GB)"));
        }
    };
    number.checked_mul(scale).ok_or_else(|| format!("{text:?} is too large"))
}

/// A duration written as a number and a unit: 500ms, 45s, 30m, 12h, 90d.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 =
        number.parse().map_err(|_| format!("{text:?} is not like 500ms, 45s, 30m, 12h or 90d"))?;
    let millis = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("unknown unit {unit:?}: use ms, s, m, h or d")),
    };
    number
        .checked_mul(millis)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        tuning: Tuning,
    }

    fn applied(args: &[&str]) -> ServerConfig {
        let flags =
            Flags::try_parse_from(std::iter::once("chat-server").chain(args.iter().copied()))
                .unwrap_or_else(|e| panic!("{e}"));
        // Other values to start from, so a default that does not reach its
        // field shows.
        let mut config =
            ServerConfig { ping_interval: Duration::from_secs(1), ..ServerConfig::default() };
        config.chat.history_memory_max = 1;
        config.transport.send_timeout = Duration::from_secs(1);
        flags.tuning.apply(&mut config);
        config
    }

    #[test]
    fn defaults_are_the_librarys_and_flags_reach_their_fields() {
        let library = ServerConfig::default();
        let config = applied(&[]);
        assert_eq!(config.ping_interval, library.ping_interval);
        assert_eq!(config.chat.history_memory_max, library.chat.history_memory_max);
        assert_eq!(config.transport.send_timeout, library.transport.send_timeout);
        assert_eq!(config.chat.messages_per_sec, library.chat.messages_per_sec);
        let config =
            applied(&["--ping-interval", "3s", "--history-memory", "1MiB", "--max-rooms", "7"]);
        assert_eq!(config.ping_interval, Duration::from_secs(3));
        assert_eq!(config.chat.history_memory_max, 1 << 20);
        assert_eq!(config.chat.max_rooms, 7);
        assert!(Flags::try_parse_from(["chat-server", "--ping-interval", "0s"]).is_err());
    }

    #[test]
    fn units_print_as_they_are_written() {
        assert_eq!(Span(Duration::from_secs(25)).to_string(), "25s");
        assert_eq!(Span(Duration::from_secs(90 * 86_400)).to_string(), "90d");
        assert_eq!(Span(Duration::from_millis(1500)).to_string(), "1500ms");
        assert_eq!(Span(Duration::ZERO).to_string(), "0ms");
        assert_eq!(Size(256 << 20).to_string(), "256MiB");
        assert_eq!(Size(1000).to_string(), "1000");
        for text in ["25s", "90d", "1500ms", "256MiB", "3KiB", "7"] {
            let round = |t: &str| match t.parse::<Span>() {
                Ok(span) => span.to_string(),
                Err(_) => t.parse::<Size>().map(|s| s.to_string()).unwrap_or_default(),
            };
            assert_eq!(round(text), text);
        }
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("999999999999999d").is_err());
        assert!(parse_positive_duration("0ms").is_err());
        assert_eq!(parse_positive_duration("1ms"), Ok(Duration::from_millis(1)));
    }

    #[test]
    fn sizes_take_an_optional_unit() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("8 parsecs").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }
}
