//! `chat`: the terminal client. On a terminal, the full-screen client
//! (`tui`); otherwise, or with `--plain`, line mode (`line`); and the
//! scriptable subcommands `send`, `tail` and `bench`. Both interactive modes
//! drive the same session `engine`.

mod bench;
mod config;
mod docs;
mod engine;
mod files;
mod input;
mod line;
mod oneshot;
mod outbox;
mod pacer;
mod rawws;
mod render;
mod session;
mod tui;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Terminal client for chat-server. On a terminal it opens the full-screen
/// client; with `--plain`, or when stdin or stdout is not a terminal, it
/// reads lines and prints lines.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// The server's WebSocket URL [default: ws://127.0.0.1:8080/ws].
    #[arg(long, global = true, env = "CHAT_SERVER")]
    server: Option<String>,
    /// The nick to use; the server assigns guest-NNNN without one.
    #[arg(long, env = "CHAT_NICK", global = true)]
    nick: Option<String>,
    /// A room to join at start; repeat for more (the environment variable
    /// takes a comma-separated list) [default: lobby].
    #[arg(long, env = "CHAT_ROOM", value_delimiter = ',')]
    room: Vec<String>,
    /// Print every server frame as one JSON line instead of text (line
    /// mode); lines that are JSON objects are sent as raw frames.
    #[arg(long, global = true)]
    json: bool,
    /// Line mode even on a terminal.
    #[arg(long)]
    plain: bool,
    /// An access token, for servers with authentication on (made with
    /// `chat-server token`); it names your nick.
    #[arg(long, env = "CHAT_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// For wss:// servers: trust the certificates in this PEM file (a
    /// private CA, or the server's own certificate) instead of the public
    /// certificate authorities.
    #[arg(long, env = "CHAT_CA", global = true)]
    ca: Option<PathBuf>,
    /// For wss:// servers: trust any certificate. Development only: the
    /// connection is encrypted, but anyone could be at the other end.
    #[arg(long, conflicts_with = "ca", global = true)]
    insecure: bool,
    /// The transport: `websocket`, `http` (the HTTP fallback: an event
    /// stream and posts, for when a proxy breaks WebSocket upgrades), or
    /// `auto` (a WebSocket, the fallback if the upgrade is refused).
    #[arg(long, env = "CHAT_TRANSPORT", value_enum, default_value_t, global = true)]
    transport: engine::Via,
    /// The config file [default: $XDG_CONFIG_HOME/chat/config.toml, or
    /// ~/.config/chat/config.toml]. Flags and environment variables
    /// override it.
    #[arg(long, env = "CHAT_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Print the effective settings (flags, environment, config file and
    /// defaults combined) as a config file, and exit.
    #[arg(long)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Subcommand>,
}

#[derive(Debug, clap::Subcommand)]
enum Subcommand {
    /// Load-test a server: many connections, fixed-rate senders; reports
    /// throughput, loss, latency and CPU (see docs/performance.md).
    Bench(bench::BenchArgs),
    /// Send one message; exits 0 once the server acknowledged it.
    Send(oneshot::SendArgs),
    /// Print a room's history, then follow it (across reconnects).
    Tail(oneshot::TailArgs),
    /// A room's shared document: `doc get ROOM NAME` prints it, `doc put
    /// ROOM NAME < FILE` replaces its text.
    Doc(docs::DocArgs),
}

/// The settings in effect: flags and environment over the config file over
/// the defaults.
#[derive(Debug)]
struct Settings {
    file: Option<PathBuf>,
    server: String,
    nick: Option<String>,
    rooms: Vec<String>,
    token: Option<String>,
    ca: Option<PathBuf>,
    palette: tui::view::Palette,
}

impl Settings {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let (file, config) = config::load(args.config.as_deref())?;
        let palette = config.palette()?;
        Ok(Self {
            file,
            server: args
                .server
                .clone()
                .or(config.server)
                .unwrap_or_else(|| config::DEFAULT_SERVER.to_owned()),
            nick: args.nick.clone().or(config.nick),
            rooms: Some(args.room.clone())
                .filter(|rooms| !rooms.is_empty())
                .or(config.rooms)
                .unwrap_or_else(|| vec![config::DEFAULT_ROOM.to_owned()]),
            token: args.token.clone().or(config.token),
            // --insecure on the command line beats a CA in the file.
            ca: args.ca.clone().or(config.ca.filter(|_| !args.insecure)),
            palette,
        })
    }

    /// The effective settings as a config file; the token is not shown.
    fn print(&self) -> anyhow::Result<String> {
        let colours = |colours: &[ratatui::style::Color]| -> Vec<String> {
            colours.iter().map(ToString::to_string).collect()
        };
        let file = config::File {
            server: Some(self.server.clone()),
            nick: self.nick.clone(),
            rooms: Some(self.rooms.clone()),
            token: self.token.as_ref().map(|_| "(set, not shown)".to_owned()),
            ca: self.ca.clone(),
            colors: Some(config::Colors {
                nicks: Some(colours(&self.palette.nicks)),
                mention: Some(self.palette.mention.to_string()),
                status: Some(self.palette.status.to_string()),
            }),
        };
        let source = match &self.file {
            Some(path) => format!("# config file: {}\n", path.display()),
            None => "# config file: none\n".to_owned(),
        };
        Ok(format!("{source}{}", toml::to_string(&file)?))
    }

    /// Who the client connects as.
    fn identity(&self, args: &Args) -> anyhow::Result<oneshot::Identity> {
        let client_tls = match (&self.ca, args.insecure) {
            (Some(path), _) => {
                Some(chat_transport::ClientTls::from_ca_file(path).map_err(anyhow::Error::msg)?)
            }
            (None, true) => Some(chat_transport::ClientTls::insecure()),
            (None, false) => None,
        };
        Ok(oneshot::Identity {
            server: self.server.clone(),
            nick: self.nick.clone(),
            token: self.token.clone(),
            json: args.json,
            client_tls,
            via: args.transport,
        })
    }
}

fn single_threaded(
    future: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(future)
}

/// The interactive client: full-screen on a terminal, else line mode.
fn interactive(args: &Args, settings: Settings) -> anyhow::Result<ExitCode> {
    let who = settings.identity(args)?;
    let full_screen = !args.plain
        && !args.json
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal();
    let mut options = engine::Options {
        server: who.server.clone(),
        transport: chat_transport::TransportConfig {
            client_tls: who.client_tls,
            ..chat_transport::TransportConfig::default()
        },
        via: who.via,
        nick: who.nick.clone(),
        access_token: who.token,
        rooms: settings.rooms.into_iter().map(|room| (room, None)).collect(),
        first_failure_fatal: true,
        linger: std::time::Duration::ZERO,
        outbox: None,
    };
    if !full_screen {
        return single_threaded(line::run(options, args.json));
    }
    let mut problem = None;
    match outbox::directory() {
        Some(dir) => match outbox::Outbox::open(&dir, &who.server, who.nick.as_deref()) {
            Ok(Some(outbox)) => options.outbox = Some(outbox),
            Ok(None) => {
                problem =
                    Some("another chat client is using this server and nick's outbox".to_owned())
            }
            Err(err) => problem = Some(format!("{err:#}")),
        },
        None => {
            problem = Some("no data directory (neither XDG_DATA_HOME nor HOME is set)".to_owned())
        }
    }
    let look = tui::app::Look { server: who.server, show_members: true, palette: settings.palette };
    single_threaded(tui::app::run(options, look, problem))
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    let result = Settings::new(&args).and_then(|settings| {
        if args.print_config {
            print!("{}", settings.print()?);
            return Ok(ExitCode::SUCCESS);
        }
        match args.command.take() {
            // The load generator needs every core it can get; chatting needs one.
            Some(Subcommand::Bench(bench)) => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    let http = args.transport == engine::Via::Http;
                    runtime.block_on(bench::run(&settings.server, bench, http))
                })
                .map(|()| ExitCode::SUCCESS),
            Some(Subcommand::Send(send)) => settings
                .identity(&args)
                .and_then(|who| single_threaded(oneshot::run_send(who, send))),
            Some(Subcommand::Tail(tail)) => settings
                .identity(&args)
                .and_then(|who| single_threaded(oneshot::run_tail(who, tail))),
            Some(Subcommand::Doc(doc)) => {
                settings.identity(&args).and_then(|who| single_threaded(docs::run(who, doc)))
            }
            None => interactive(&args, settings),
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
