//! `chat-server`: flags and environment onto [`ServerConfig`], logging, bind,
//! then [`chat_server::run`] until ctrl-c or SIGTERM.

mod logging;
mod notify;
mod settings;
mod tuning;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chat_core::Rate;
use chat_server::auth::{self, Claims, Secret};
use chat_server::{MemoryStore, ServerConfig, SqliteStore, Store};
use chat_transport::TlsConfig;
use clap::{Parser, ValueEnum};
use sha2::Digest;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::tuning::{Tuning, parse_duration, parse_positive_duration, parse_size};

/// A real-time chat server with its own browser page.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Log format on stderr: text, or json (one object per line, for log
    /// pipelines).
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// What to log, as RUST_LOG takes it: a level (debug), or per module
    /// (info,chat_server::hub=debug). Default: RUST_LOG, else info.
    #[arg(long, env = "CHAT_LOG")]
    log: Option<String>,
    #[command(flatten)]
    tuning: Tuning,
    /// Directory of the message store (SQLite, created if missing).
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "./chat-data", global = true)]
    data_dir: PathBuf,
    /// Keep history in memory only: nothing survives a restart. For tests
    /// and demos. Uploaded files go to a temporary directory, removed at
    /// exit.
    #[arg(long, env = "CHAT_EPHEMERAL")]
    ephemeral: bool,
    /// The largest file a client may upload (bytes, or with KiB, MiB, GiB,
    /// kB, MB, GB); 0 turns uploads off. Files are kept in
    /// <data-dir>/files, named by their SHA-256.
    #[arg(long, env = "CHAT_MAX_UPLOAD", default_value = "8MiB", value_parser = parse_size)]
    max_upload: u64,
    /// The most bytes all stored files may take together (past it uploads
    /// get quota_exceeded).
    #[arg(long, env = "CHAT_MAX_FILES_BYTES", default_value = "4GiB", value_parser = parse_size)]
    max_files_bytes: u64,
    /// Free disk space to keep: uploads that would leave less are refused
    /// (unavailable) while chat goes on.
    #[arg(long, env = "CHAT_MIN_FREE_DISK", default_value = "512MiB", value_parser = parse_size)]
    min_free_disk: u64,
    /// Bytes one session may upload per hour (quota_exceeded past it).
    #[arg(long, env = "CHAT_UPLOAD_QUOTA_SESSION", default_value = "256MiB", value_parser = parse_size)]
    upload_quota_session: u64,
    /// Bytes the sessions of one address may upload per hour together.
    #[arg(long, env = "CHAT_UPLOAD_QUOTA_ADDRESS", default_value = "1GiB", value_parser = parse_size)]
    upload_quota_address: u64,
    /// A token clients must give to watch the live counters (the $stats
    /// channel, the /stats page); without it anyone connected may.
    #[arg(long, env = "CHAT_STATS_TOKEN", hide_env_values = true)]
    stats_token: Option<String>,
    /// Also serve /metrics (Prometheus), /livez and /readyz on this
    /// address, and nothing else: keep it private (127.0.0.1:9090, an
    /// internal interface).
    #[arg(long, env = "CHAT_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// A token scrapers must send (Authorization: Bearer) to read /metrics;
    /// with it /metrics is served on the listen address too. Without it
    /// and without --metrics-listen, /metrics is off.
    #[arg(long, env = "CHAT_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Serve this directory's pages under /classic/ (index.html for a
    /// directory): a page written for a Socket.IO server, such as the
    /// Socket.IO tutorial's chat page, works here unchanged.
    #[arg(long, env = "CHAT_SOCKETIO_PAGE", value_name = "DIR")]
    socketio_page: Option<PathBuf>,
    /// How long messages are kept: a number with s, m, h or d (90d), or
    /// "forever".
    #[arg(long, env = "CHAT_HISTORY_MAX_AGE", default_value = "90d", value_parser = parse_age)]
    history_max_age: Age,
    /// A host name, besides IP addresses and localhost, that this server
    /// answers for (chat.example.com, *.example.com, or * for any); repeat
    /// for more. Requests for other names get 421, so a page of another site
    /// cannot reach the server by pointing its own name at it.
    #[arg(long = "allowed-host", env = "CHAT_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// A browser origin, besides the server's own, whose pages may open a
    /// WebSocket (https://chat.example.com), or * for any; repeat for more.
    /// Others get 403.
    #[arg(long = "allowed-origin", env = "CHAT_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// A reverse proxy in front of the server (an address, or a network:
    /// 10.0.0.0/8), whose forwarding header (--forwarded-header) says who
    /// each request comes from: per-address limits and logs then use that
    /// address. From anyone else the header is ignored. Repeat or separate
    /// with commas.
    #[arg(long = "trusted-proxy", env = "CHAT_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
    /// The header the trusted proxies set: x-forwarded-for (nginx's
    /// $proxy_add_x_forwarded_for) or forwarded (RFC 7239).
    #[arg(long, env = "CHAT_FORWARDED_HEADER", value_enum, default_value_t = ForwardedBy::XForwardedFor)]
    forwarded_header: ForwardedBy,
    /// Rooms whose shared documents members may read but not change: room
    /// names or patterns (`*` matches any run: `archive-*`); repeat or
    /// separate with commas.
    #[arg(long = "read-only-docs", env = "CHAT_READ_ONLY_DOCS", value_delimiter = ',')]
    read_only_docs: Vec<String>,
    /// WebSockets open at once; more get 503. Default: the open-file limit
    /// less 64.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Rooms one session may create per hour (rate_limited past it).
    #[arg(long, env = "CHAT_ROOMS_CREATED_PER_HOUR", default_value_t = ServerConfig::default().chat.rooms_created_per_session.amount)]
    rooms_created_per_hour: u64,
    /// Rooms one session may create at once.
    #[arg(long, env = "CHAT_ROOMS_CREATED_BURST", default_value_t = ServerConfig::default().chat.rooms_created_per_session.burst)]
    rooms_created_burst: u64,
    /// Rooms the sessions of one address may create per hour together.
    #[arg(long, env = "CHAT_ROOMS_CREATED_PER_HOUR_PER_ADDRESS", default_value_t = ServerConfig::default().chat.rooms_created_per_source.amount)]
    rooms_created_per_hour_per_address: u64,
    /// Rooms the sessions of one address may create at once.
    #[arg(long, env = "CHAT_ROOMS_CREATED_BURST_PER_ADDRESS", default_value_t = ServerConfig::default().chat.rooms_created_per_source.burst)]
    rooms_created_burst_per_address: u64,
    /// History bytes one connection may be sent per second (history pages
    /// and joined backlogs).
    #[arg(long, env = "CHAT_HISTORY_BYTES_PER_SEC", default_value = "512KiB", value_parser = parse_size)]
    history_bytes_per_sec: u64,
    /// History bytes one connection may be sent at once.
    #[arg(long, env = "CHAT_HISTORY_BYTES_BURST", default_value = "4MiB", value_parser = parse_size)]
    history_bytes_burst: u64,
    /// What `rooms` lists: every room (that the client's token allows), or
    /// only the rooms the client is in.
    #[arg(long, env = "CHAT_ROOM_LIST", value_enum, default_value_t = RoomList::All)]
    room_list: RoomList,
    /// Turns authentication on: every hello must carry an access token
    /// signed with this secret (HS256, at least 32 bytes). Prefer
    /// --auth-secret-file, which keeps it out of the process list.
    #[arg(long, env = "CHAT_AUTH_SECRET", hide_env_values = true, global = true)]
    auth_secret: Option<String>,
    /// The same, read from a file (trailing whitespace ignored).
    #[arg(long, env = "CHAT_AUTH_SECRET_FILE", conflicts_with = "auth_secret", global = true)]
    auth_secret_file: Option<PathBuf>,
    /// PEM certificate chain (leaf first): serve https:// and wss:// on the
    /// listen address instead of plain HTTP.
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve TLS with a certificate made up at start for localhost,
    /// 127.0.0.1 and ::1, and print its SHA-256 fingerprint. For
    /// development: clients must be told to trust it (chat --insecure).
    #[arg(long, env = "CHAT_TLS_SELF_SIGNED", conflicts_with = "tls_cert")]
    tls_self_signed: bool,
    /// Cluster mode: the Redis (6.2 or later) that several nodes share,
    /// as redis://[:password@]host[:port][/db] or rediss:// for TLS. Rooms'
    /// messages are numbered and kept there for every node. Each node still
    /// needs a --data-dir of its own.
    #[arg(long, env = "CHAT_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// Where uploaded files are kept (default <data-dir>/files). In cluster
    /// mode uploads are on only with this set to one directory every node
    /// shares (a network file system, a volume mounted on each).
    #[arg(long, env = "CHAT_FILES_DIR", global = true)]
    files_dir: Option<PathBuf>,
    /// This node's name in a cluster (letters, digits, '.', '_', '-'; at
    /// most 64), shown in welcome, the live counters and the logs. Default:
    /// a random one in cluster mode.
    #[arg(long, env = "CHAT_NODE_ID", value_parser = parse_node_id)]
    node_id: Option<String>,
    /// A TOML file of settings, keyed by these flags' long names; flags and
    /// environment variables override it.
    #[arg(long, env = "CHAT_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Subcommand>,
}

/// The command line with the settings of a `--config` file merged in, as
/// arguments.
fn merged_args() -> anyhow::Result<Vec<std::ffi::OsString>> {
    use clap::CommandFactory;
    let flags: Vec<(String, Option<String>)> = Args::command()
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env().map(|env| env.to_string_lossy().into_owned());
            arg.get_long().map(|long| (long.to_owned(), env))
        })
        .collect();
    settings::merge(std::env::args_os().collect(), std::env::var_os("CHAT_CONFIG"), &flags)
}

/// The settings no check may print: they are secrets, or may hold one (a
/// Redis URL's password).
const SECRET_SETTINGS: [&str; 4] = ["auth-secret", "stats-token", "metrics-token", "redis"];

/// The settings that are not settings of the server.
fn is_setting(long: &str) -> bool {
    !matches!(long, "help" | "version" | "config")
}

/// A setting's value as TOML: numbers and booleans as they are, the rest
/// quoted.
fn toml_value(text: &str) -> String {
    if text.parse::<i64>().is_ok() || matches!(text, "true" | "false") {
        return text.to_owned();
    }
    toml::Value::String(text.to_owned()).to_string()
}

/// `chat-server print-config`: a config file holding every setting,
/// commented out at its default, under what it does.
fn default_config_file() -> String {
    use clap::CommandFactory;
    let mut file = String::from(
        "# chat-server settings (docs/operations.md). Each key is a flag's long name;\n\
         # uncomment to change one. Flags and environment variables override this file.\n",
    );
    for arg in Args::command().get_arguments() {
        let Some(long) = arg.get_long().filter(|long| is_setting(long)) else {
            continue;
        };
        file.push('\n');
        let help = arg.get_long_help().or(arg.get_help()).map(ToString::to_string);
        for line in wrap(&help.unwrap_or_default(), 76) {
            file.push_str(&format!("# {line}\n"));
        }
        let defaults: Vec<String> =
            arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        match defaults.as_slice() {
            [value] => file.push_str(&format!("# {long} = {}\n", toml_value(value))),
            [] if matches!(arg.get_action(), clap::ArgAction::SetTrue) => {
                file.push_str(&format!("# {long} = false\n"));
            }
            _ => file.push_str(&format!("# {long}: not set by default\n")),
        }
    }
    file
}

/// `text` in lines of at most `width` characters (longer words alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

/// `chat-server check-config`: the effective settings, secrets hidden.
fn effective_settings(args: Vec<std::ffi::OsString>) -> String {
    use clap::CommandFactory;
    let matches = Args::command().get_matches_from(args);
    let mut file =
        String::from("# the effective settings (flags, environment, config file, defaults)\n");
    for arg in Args::command().get_arguments() {
        let Some(long) = arg.get_long().filter(|long| is_setting(long)) else {
            continue;
        };
        let id = arg.get_id().as_str();
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let line = match values.as_slice() {
            [] => format!("# {long}: not set"),
            _ if SECRET_SETTINGS.contains(&long) => format!("{long} = \"(set, not shown)\""),
            [value] => format!("{long} = {}", toml_value(value)),
            more => {
                let items: Vec<String> = more.iter().map(|v| toml_value(v)).collect();
                format!("{long} = [{}]", items.join(", "))
            }
        };
        file.push_str(&line);
        file.push('\n');
    }
    file
}

/// The TLS configuration the flags ask for, if any; prints the fingerprint
/// of a self-signed certificate.
fn tls_config(args: &Args, announce: bool) -> anyhow::Result<Option<TlsConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let (chain, key) = match (&args.tls_cert, &args.tls_key, args.tls_self_signed) {
        (Some(cert), Some(key), _) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .with_context(|| format!("reading certificates from {}", cert.display()))?;
            anyhow::ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading the private key from {}", key.display()))?;
            (chain, key)
        }
        (_, _, true) => {
            let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
            let made = rcgen::generate_simple_self_signed(names).context("making a certificate")?;
            let cert = made.cert.der().clone();
            let fingerprint = sha2::Sha256::digest(cert.as_ref())
                .iter()
                .map(|byte| format!("{byte:02X}"))
                .collect::<Vec<_>>()
                .join(":");
            if announce {
                println!(
                    "self-signed certificate for localhost, SHA-256 fingerprint {fingerprint}"
                );
            }
            let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
            (vec![cert], PrivateKeyDer::Pkcs8(key))
        }
        _ => return Ok(None),
    };
    TlsConfig::new(chain, key).map(Some).context("setting up TLS")
}

#[derive(Debug, clap::Subcommand)]
enum Subcommand {
    /// Checks the settings (flags, environment, --config file) as a start
    /// would, without starting: prints the effective ones and exits 0, or
    /// says what is wrong and exits 1.
    CheckConfig,
    /// Prints a config file with every setting, commented out at its
    /// default, under what it does.
    PrintConfig,
    /// Backs up the store of --data-dir (and its files) to OUT, a new
    /// directory, while the server runs: a consistent copy as of one
    /// commit (docs/operations.md, Backup and restore).
    Backup {
        /// Where the backup goes; must not exist.
        out: PathBuf,
    },
    /// Brings a backup back into --data-dir, which must hold no store; then
    /// start the server on it.
    Restore {
        /// The backup's directory.
        from: PathBuf,
    },
    /// Erases what a person wrote, on request: the text and files of
    /// their messages (kept as deleted, so clients show them deleted) and
    /// their sessions. The server must be stopped (docs/operations.md).
    Erase {
        /// Their nick, exactly as shown.
        #[arg(long)]
        nick: String,
    },
    /// Prints an access token signed with the auth secret.
    Token {
        /// The nick the token is for.
        #[arg(long)]
        nick: String,
        /// How long it is valid: 30m, 24h, 7d...
        #[arg(long, default_value = "24h", value_parser = parse_positive_duration)]
        ttl: Duration,
        /// A room pattern it may join (team-*); repeat for more. Without,
        /// every room.
        #[arg(long = "rooms", value_delimiter = ',')]
        rooms: Vec<String>,
    },
}

/// The auth secret from the flags, if any.
fn auth_secret(args: &Args) -> anyhow::Result<Option<Secret>> {
    let bytes = match (&args.auth_secret, &args.auth_secret_file) {
        (Some(secret), _) => secret.clone().into_bytes(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the auth secret from {}", path.display()))?;
            text.trim_end().as_bytes().to_vec()
        }
        (None, None) => return Ok(None),
    };
    Secret::new(bytes).map(Some).map_err(anyhow::Error::msg)
}

/// A retention age, or none.
#[derive(Debug, Clone, Copy)]
struct Age(Option<Duration>);

fn parse_age(text: &str) -> Result<Age, String> {
    if text == "forever" {
        return Ok(Age(None));
    }
    match parse_duration(text)? {
        Duration::ZERO => {
            Err("the age must be more than zero; use \"forever\" to keep everything".to_owned())
        }
        age => Ok(Age(Some(age))),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ForwardedBy {
    /// X-Forwarded-For: client, proxy1, ...
    XForwardedFor,
    /// Forwarded: for=client, for=proxy1 (RFC 7239).
    Forwarded,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoomList {
    /// Every room someone is in, with member counts.
    All,
    /// Only the rooms the client is in.
    Joined,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Raises this process's soft limit on open files to its hard limit: each
/// connection is a file descriptor, and common defaults (1024) are far
/// below what a chat server holds. Returns the limits before and after.
fn raise_open_file_limit() -> (Option<u64>, Option<u64>) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    if limit.current < limit.maximum || (limit.current.is_some() && limit.maximum.is_none()) {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        if setrlimit(Resource::Nofile, raised).is_err() {
            return (before, before);
        }
    }
    (before, getrlimit(Resource::Nofile).current)
}

/// Runs the server; a mistake at start (a bad setting, a port in use, an
/// unreadable certificate) is one line on stderr and exit status 1, never
/// a backtrace.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match start().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn start() -> anyhow::Result<()> {
    // Before anything reads the limit: the connection limit follows it.
    let (files_before, files_now) = raise_open_file_limit();
    let merged = merged_args()?;
    let mut args = Args::parse_from(merged.clone());
    match args.command {
        Some(Subcommand::PrintConfig) => {
            print!("{}", default_config_file());
            return Ok(());
        }
        Some(Subcommand::Backup { ref out }) => {
            let copied = chat_server::backup::backup(&args.data_dir, &files_dir(&args), out)?;
            println!("backed up to {}: {}", out.display(), told(&copied));
            return Ok(());
        }
        Some(Subcommand::Restore { ref from }) => {
            let copied = chat_server::backup::restore(from, &args.data_dir, &files_dir(&args))?;
            println!("restored into {}: {}", args.data_dir.display(), told(&copied));
            return Ok(());
        }
        Some(Subcommand::Erase { ref nick }) => {
            let dir = args.data_dir.display();
            anyhow::ensure!(args.data_dir.join("chat.db").is_file(), "no store in {dir}");
            let mut store = SqliteStore::open(&args.data_dir).with_context(|| {
                format!("opening the store in {} (stop the server first)", args.data_dir.display())
            })?;
            let erased = store.erase_nick(nick)?;
            let files = files_dir(&args);
            for path in erased.files.iter().filter_map(|id| chat_server::stored_path(&files, id)) {
                if let Err(err) = std::fs::remove_file(&path)
                    && err.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(err).with_context(|| format!("deleting {}", path.display()));
                }
            }
            println!(
                "erased {nick}: {} messages, {} files, {} sessions",
                erased.messages,
                erased.files.len(),
                erased.sessions
            );
            return Ok(());
        }
        Some(Subcommand::CheckConfig) => {
            server_config(&args, auth_secret(&args)?, false)?;
            logging::filter(args.log.as_deref())?;
            print!("{}", effective_settings(merged));
            return Ok(());
        }
        _ => {}
    }
    let secret = auth_secret(&args)?;
    if let Some(Subcommand::Token { nick, ttl, rooms }) = args.command.take() {
        let secret =
            secret.context("chat-server token needs --auth-secret or --auth-secret-file")?;
        let claims = Claims {
            sub: nick,
            exp: auth::now_secs().saturating_add(ttl.as_secs()),
            rooms: (!rooms.is_empty()).then_some(rooms),
        };
        println!("{}", secret.sign(&claims));
        return Ok(());
    }
    // Every setting checked before anything is logged: a mistake is the
    // one line on stderr.
    let authenticated = secret.is_some();
    let mut config = server_config(&args, secret, true)?;
    let filter = logging::filter(args.log.as_deref())?;
    logging::init(matches!(args.log_format, LogFormat::Json), filter);
    let shown = |limit: Option<u64>| limit.map_or("unlimited".to_owned(), |n| n.to_string());
    tracing::info!(
        before = %shown(files_before),
        now = %shown(files_now),
        "open file limit"
    );
    if authenticated {
        tracing::info!("authentication on: every hello needs an access token");
    }
    // Kept until the server stops: an ephemeral server's files go with it.
    let mut scratch = None;
    if args.max_upload > 0 {
        let dir = if args.ephemeral {
            let dir = tempfile::Builder::new()
                .prefix("chat-server-files-")
                .tempdir()
                .context("creating a temporary directory for uploads")?;
            let path = dir.path().to_path_buf();
            scratch = Some(dir);
            path
        } else if let Some(dir) = &args.files_dir {
            config.files_shared = true;
            dir.clone()
        } else {
            args.data_dir.join("files")
        };
        config.uploads = Some(chat_server::Uploads {
            dir,
            max_bytes: args.max_upload,
            max_total_bytes: args.max_files_bytes,
            min_free_bytes: args.min_free_disk,
        });
    }
    let store: Box<dyn Store> = if args.ephemeral {
        tracing::warn!("--ephemeral: history is kept in memory only and lost on restart");
        Box::new(MemoryStore::new())
    } else {
        let store = SqliteStore::open(&args.data_dir).with_context(|| {
            format!(
                "opening the store in {} (is another chat-server using it?)",
                args.data_dir.display()
            )
        })?;
        tracing::info!(dir = %args.data_dir.display(), "message store opened");
        Box::new(store)
    };
    // Before anything says the server is ready.
    let stop = shutdown_signal()?;
    let listener =
        TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let metrics = match args.metrics_listen {
        Some(wanted) => {
            let listener = TcpListener::bind(wanted)
                .await
                .with_context(|| format!("binding the metrics address {wanted}"))?;
            let addr = listener.local_addr().context("reading the bound metrics address")?;
            println!("metrics on http://{addr}/metrics");
            tracing::info!(%addr, "serving metrics");
            Some(listener)
        }
        None => None,
    };
    // The readiness line (docs/operations.md): the listener is bound, so
    // connections from now on are served.
    let scheme = if config.transport.tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{addr}");
    tracing::info!(%addr, "listening");
    notify::notify(&format!("READY=1\nSTATUS=serving on {scheme}://{addr}"));
    let span = match &config.node_id {
        Some(node) => {
            tracing::info!(%node, "cluster mode: this node shares the chat through Redis");
            tracing::info_span!("node", id = %node)
        }
        None => tracing::Span::none(),
    };
    let served = chat_server::run_with_metrics(listener, metrics, config, store, stop)
        .instrument(span)
        .await;
    drop(scratch);
    served
}

/// Where uploaded files are kept: `--files-dir`, else `<data-dir>/files`.
fn files_dir(args: &Args) -> PathBuf {
    args.files_dir.clone().unwrap_or_else(|| args.data_dir.join("files"))
}

/// What a backup or restore copied, in words.
fn told(copied: &chat_server::backup::Copied) -> String {
    let mut told = format!(
        "the database ({} bytes) and {} files ({} bytes)",
        copied.db_bytes, copied.files, copied.file_bytes
    );
    if !copied.missing.is_empty() {
        told.push_str(&format!(
            "; {} files were gone (their messages deleted or aged out meanwhile): {}",
            copied.missing.len(),
            copied.missing.join(", ")
        ));
    }
    told
}

/// The server's configuration from `args` and the auth `secret`: every
/// check a start makes before it opens storage and binds. `announce`
/// prints a self-signed certificate's fingerprint.
fn server_config(
    args: &Args,
    secret: Option<Secret>,
    announce: bool,
) -> anyhow::Result<ServerConfig> {
    let mut config = ServerConfig::default();
    args.tuning.apply(&mut config);
    config.chat.history_max_age = args.history_max_age.0;
    config.transport.allowed_origins = args.allowed_origins.clone();
    let header = match args.forwarded_header {
        ForwardedBy::XForwardedFor => chat_transport::ForwardedHeader::XForwardedFor,
        ForwardedBy::Forwarded => chat_transport::ForwardedHeader::Forwarded,
    };
    config.transport.trusted_proxies =
        chat_transport::TrustedProxies::parse(&args.trusted_proxies, header)
            .map_err(|why| anyhow::anyhow!("--trusted-proxy {why}"))?;
    config.chat.read_only_docs =
        args.read_only_docs.iter().map(|room| chat_core::RoomPattern::new(room.trim())).collect();
    config.transport.allowed_hosts = args.allowed_hosts.clone();
    if let Some(max) = args.max_connections {
        config.max_connections = max;
    }
    config.chat.rooms_created_per_session =
        Rate::per_hour(args.rooms_created_per_hour, args.rooms_created_burst);
    config.chat.rooms_created_per_source = Rate::per_hour(
        args.rooms_created_per_hour_per_address,
        args.rooms_created_burst_per_address,
    );
    config.chat.history_bytes_per_conn = Rate {
        amount: args.history_bytes_per_sec,
        per: Duration::from_secs(1),
        burst: args.history_bytes_burst,
    };
    config.chat.upload_bytes_per_session =
        Rate::per_hour(args.upload_quota_session, args.upload_quota_session);
    config.chat.upload_bytes_per_source =
        Rate::per_hour(args.upload_quota_address, args.upload_quota_address);
    config.chat.public_rooms = matches!(args.room_list, RoomList::All);
    config.auth_secret = secret;
    config.transport.tls = tls_config(args, announce)?;
    config.stats_token = args.stats_token.clone();
    config.metrics_token = args.metrics_token.clone();
    config.socketio_page = args.socketio_page.clone();
    config.redis = args.redis.clone();
    config.node_id = args
        .node_id
        .clone()
        .or_else(|| config.redis.as_ref().map(|_| format!("node-{:08x}", rand::random::<u32>())));
    Ok(config)
}

/// A node id as `--node-id` takes it.
fn parse_node_id(text: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if text.is_empty() || text.len() > 64 || !text.chars().all(allowed) {
        return Err("1 to 64 letters, digits, '.', '_' or '-'".to_owned());
    }
    Ok(text.to_owned())
}

/// Resolves at ctrl-c or SIGTERM, then tells systemd the drain began.
/// The handlers are installed now, not at the first poll: a SIGTERM that
/// comes right after `READY=1` drains too, instead of killing the process.
///
/// # Errors
/// A handler cannot be installed.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for ctrl-c")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        notify::notify("STOPPING=1\nSTATUS=draining");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/operations.md lists every setting with its environment variable
    /// and default; this holds it to the flags, so the table cannot drift.
    #[test]
    fn the_operations_guide_lists_every_flag_as_it_is() {
        use clap::CommandFactory;
        const GUIDE: &str = include_str!("../../docs/operations.md");
        let rows: Vec<Vec<&str>> = GUIDE
            .lines()
            .filter(|line| line.starts_with("| `--"))
            .map(|line| line.split(" | ").collect())
            .collect();
        for arg in Args::command().get_arguments() {
            let Some(long) = arg.get_long().filter(|long| !matches!(*long, "help" | "version"))
            else {
                continue;
            };
            let flag = format!("`--{long}");
            let row = rows
                .iter()
                .find(|row| {
                    row.first().is_some_and(|cell| {
                        cell.contains(&format!("{flag} ")) || cell.contains(&format!("{flag}`"))
                    })
                })
                .unwrap_or_else(|| panic!("docs/operations.md has no row for --{long}"));
            let env =
                arg.get_env().map(|env| env.to_string_lossy().into_owned()).unwrap_or_default();
            assert!(
                row.get(1).is_some_and(|cell| cell.contains(&format!("`{env}`"))),
                "--{long}: {row:?}"
            );
            let default: Vec<String> =
                arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
            let documented = row.get(2).map(|cell| cell.trim_matches('`')).unwrap_or_default();
            match default.as_slice() {
                [] => assert!(
                    matches!(documented, "none" | "off") || long == "max-connections",
                    "--{long} has no default, the guide says {documented:?}"
                ),
                [value] if value == "false" => assert_eq!(documented, "off", "--{long}"),
                [value] => assert_eq!(documented, value, "--{long}: the guide's default"),
                more => panic!("--{long} has several defaults: {more:?}"),
            }
        }
    }

    #[test]
    fn ages_are_positive_or_forever() {
        assert_eq!(parse_age("forever").map(|age| age.0), Ok(None));
        assert_eq!(parse_age("2h").map(|age| age.0), Ok(Some(Duration::from_secs(7200))));
        assert!(parse_age("0d").is_err());
    }
}
