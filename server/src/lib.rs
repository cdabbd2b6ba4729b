//! The chat server: accepts connections, serves the browser page, and
//! drives `chat-core` from one task.
//!
//! [`run`] is the whole server; `main` only parses flags, installs logging,
//! binds and calls it. Tests call it with their own listener and shutdown
//! future.
//!
//! This crate deliberately holds no chat rules (they are `chat-core`'s) and
//! no wire details beyond the conversions in `wire.rs`.
#![warn(missing_docs)]
// Network input must never panic the server: no indexing that could.
#![cfg_attr(not(test), warn(clippy::indexing_slicing))]

pub mod auth;
pub mod backup;
mod clock;
pub mod cluster;
mod commits;
mod config;
mod connection;
pub mod docs;
mod files;
mod hub;
mod log_limit;
mod metrics;
mod page_dir;
mod readiness;
mod sink;
mod socketio;
mod stats;
mod storage;
mod store;
mod web;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use chat_transport::Accepted;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, debug_span, info, warn};

pub use config::ServerConfig;
pub use files::{Uploads, stored_path};
pub use store::{
    DocUpdate, Erased, MemoryStore, Retention, Snapshot, SqliteStore, Store, StoreError,
    VERSIONS_KEPT, VersionInfo,
};

use crate::hub::{Hub, Input};

/// Serves chat on `listener` until `shutdown` completes, then closes every
/// connection with 1001 and returns once they are gone (or after
/// [`ServerConfig::shutdown_grace`]) and storage has committed everything.
///
/// The chat starts from what `store` holds and persists every message to it
/// before anyone sees the message.
///
/// # Errors
/// `store` cannot be read at startup, or the storage thread cannot start.
/// Failures of single connections are logged and never end the server.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    store: Box<dyn Store>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with_metrics(listener, None, config, store, shutdown).await
}

/// [`run`], also serving `/metrics` (and `/livez`, `/readyz`) on
/// `metrics`, a listener of its own an operator keeps private.
///
/// # Errors
/// As [`run`].
pub async fn run_with_metrics(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: ServerConfig,
    mut store: Box<dyn Store>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut config = config;
    let metrics = Arc::new(metrics::Metrics::new(config.redis.is_some()));
    // With Redis, rooms' messages are numbered there for every node.
    let cluster = match &config.redis {
        Some(url) => {
            config.chat.sequencing = chat_core::Sequencing::Shared;
            // Sessions are named to the other nodes by a digest of their
            // token, which also names them in conversations.
            config.chat.session_key = chat_core::SessionKey(cluster::digest);
            let remember = config.chat.dedupe_window;
            let node = config
                .node_id
                .get_or_insert_with(|| format!("node-{:08x}", rand::random::<u32>()))
                .clone();
            let files = config.uploads.as_ref().filter(|_| config.files_shared);
            let engine = cluster::EngineConfig {
                url: url.clone(),
                node,
                lease: config.cluster_lease,
                history: config.chat.history_per_room,
                remember,
                files: files.map(|uploads| uploads.dir.clone()),
                sweep_every: config.prune_interval,
                files_keep_for: config.chat.history_max_age,
                metrics: Arc::clone(&metrics),
            };
            let engine = cluster::Engine::connect(&engine)
                .await
                .with_context(|| format!("connecting to Redis at {}", cluster::redacted(url)))?;
            Some(engine)
        }
        None => None,
    };
    anyhow::ensure!(
        cluster.is_some() || config.chat.sequencing == chat_core::Sequencing::Alone,
        "shared sequencing (cluster mode) needs a Redis to share"
    );
    if cluster.is_some() && !config.files_shared && config.uploads.take().is_some() {
        // A file would live in one node's directory and its message in
        // Redis: the other nodes could not serve it.
        warn!("cluster mode: uploads are off (max_upload_bytes 0) without a shared --files-dir");
    }
    let retention = config.retention();
    let snapshot = store.load(&retention, storage::now_ms()).context("loading stored history")?;
    if let Some(uploads) = &config.uploads {
        uploads
            .prepare()
            .with_context(|| format!("preparing the upload directory {}", uploads.dir.display()))?;
    }
    let (acks_tx, acks_rx) = mpsc::unbounded_channel();
    // In cluster mode this node's store holds none of the rooms' messages:
    // its sweep would take every shared file for one no message carries.
    let files = config.uploads.as_ref().filter(|_| cluster.is_none()).map(|u| u.dir.clone());
    let storage = storage::Storage::spawn(
        store,
        retention,
        files,
        config.prune_interval,
        acks_tx,
        Arc::clone(&metrics),
    )
    .context("starting the storage thread")?;
    let (hub_tx, hub_rx) = mpsc::channel(config.inbound_queue);
    let (engine, cluster_events) = cluster.unzip();
    let health = engine.as_ref().map(cluster::Engine::health);
    let event_streams = match &engine {
        Some(engine) => engine.event_streams().await,
        None => Arc::default(),
    };
    // Socket.IO clients' sessions; in a cluster their ids name the node's
    // run, and long-polling requests for another node's go there.
    let sessions = chat_transport::engineio::SessionConfig {
        max_queued: config.transport.max_queued_frames,
        ..Default::default()
    };
    let engines = match &engine {
        Some(engine) => engine.engineio(sessions).await,
        None => Arc::new(chat_transport::engineio::Engines::new("", sessions)),
    };
    let readiness = readiness::Readiness::new(health.clone());
    let hub = Hub::new(&config, snapshot, storage, Arc::clone(&metrics), engine, readiness.clone());
    let hub = tokio::spawn(hub.run(hub_rx, acks_rx, cluster_events).in_current_span());
    // Shared, not cloned, by every connection.
    let files = files::server(config.uploads.clone(), &hub_tx, Arc::clone(&metrics));
    let page = |open| web::MetricsPage {
        metrics: Arc::clone(&metrics),
        token: config.metrics_token.clone(),
        open,
    };
    let metrics_task = metrics_listener.map(|listener| {
        let site = web::metrics_site(readiness.clone(), page(true));
        tokio::spawn(serve_metrics(listener, site, config.transport.clone()).in_current_span())
    });
    let pages = (readiness.clone(), page(false));
    let site = web::site(files, health, pages, docs::frame_limit(&config));
    let mut site = site.with_event_streams(event_streams).with_engineio(socketio::PATH, engines);
    if let Some(dir) = &config.socketio_page {
        site = site.dynamic(page_dir::PREFIX, Arc::new(page_dir::PageDir { dir: dir.clone() }));
    }
    let site = Arc::new(site);
    let gate = chat_transport::Gate::with_downloads(
        config.max_connections,
        config.max_connections_per_ip,
        config.max_downloads_per_ip,
    );
    let config = Arc::new(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut next_conn = 0u64;
    let mut accept_errors = AcceptBackoff::default();
    tokio::pin!(shutdown);
    // Each connection in a task of its own, stopped when `stop` says so.
    let spawn = |connections: &mut JoinSet<()>, stream: tokio::net::TcpStream, peer, id: u64| {
        // At debug level only: a live span costs every connection about
        // 200 bytes for as long as it lasts, and at info level the few
        // lines a connection logs name their member and peer themselves.
        let span = debug_span!("conn", conn = id, %peer, member = tracing::field::Empty);
        let (site, config, hub, mut stop) =
            (Arc::clone(&site), Arc::clone(&config), hub_tx.clone(), stop_rx.clone());
        // Stopped by the next change only: one accepted while draining
        // is answered.
        stop.borrow_and_update();
        let gate = Arc::clone(&gate);
        let metrics = Arc::clone(&metrics);
        connections.spawn(
            async move {
                // Each phase in its own allocation: the HTTP parsing state
                // is freed once the upgrade is done, instead of living as
                // long as the task.
                let upgraded = tokio::select! {
                    accepted = Box::pin(chat_transport::accept(stream, &site, &config.transport, &gate)) => accepted,
                    _ = stop.changed() => return,
                };
                match upgraded {
                    Ok(Accepted::Upgraded(upgraded))
                        if upgraded.request.uri().path().starts_with(docs::PREFIX) =>
                    {
                        Box::pin(docs::serve(upgraded, hub, &config, &metrics)).await;
                    }
                    Ok(Accepted::Upgraded(upgraded)) => {
                        Box::pin(connection::serve(upgraded, hub, &config, metrics)).await;
                    }
                    Ok(Accepted::EngineIo(opened)) => {
                        Box::pin(socketio::serve(opened, hub, &config, metrics)).await;
                    }
                    Ok(Accepted::Answered(status)) => debug!(%status, "answered over http"),
                    Ok(Accepted::Refused(refused)) => {
                        let reason = refused.reason.name();
                        metrics.refused(reason);
                        if metrics.connection_lines.allow() {
                            info!(peer = %refused.peer, reason, "refused a connection");
                        }
                    }
                    Ok(Accepted::Closed) => debug!("closed before a request"),
                    Err(err) => debug!(%err, "http failed"),
                }
            }
            .instrument(span),
        );
    };
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    accept_errors.succeeded();
                    next_conn += 1;
                    spawn(&mut connections, stream, peer, next_conn);
                }
                Err(err) => {
                    // Usually out of file descriptors: back off instead of
                    // spinning, and keep serving the connections we have.
                    let wait = accept_errors.failed(&err);
                    tokio::time::sleep(wait).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    info!("shutting down");
    // Not ready from now on: /readyz says 503, new connections are
    // refused with a word (503, Retry-After). For --drain-delay everything
    // else goes on, so a load balancer stops sending clients before their
    // connections close; then the connections are closed (1012, with a
    // delay to come back after) while requests are still answered, until
    // the last one ended or the grace ran out.
    readiness.drain();
    gate.drain();
    let delay = tokio::time::sleep(config.drain_delay);
    tokio::pin!(delay);
    let grace = tokio::time::sleep(config.drain_delay + config.shutdown_grace);
    tokio::pin!(grace);
    let mut closing = false;
    loop {
        tokio::select! {
            () = &mut delay, if !closing => {
                closing = true;
                let _ = stop_tx.send(true);
                // Bounded: a hub stalled on failing storage must not stall shutdown.
                let _ = tokio::time::timeout(config.shutdown_grace, hub_tx.send(Input::Shutdown)).await;
                grace.as_mut().reset(tokio::time::Instant::now() + config.shutdown_grace);
            }
            () = &mut grace => {
                warn!(left = connections.len(), "connections still open after the grace period");
                connections.shutdown().await;
                break;
            }
            joined = connections.join_next(), if closing || !connections.is_empty() => {
                if closing && joined.is_none() {
                    break;
                }
            }
            accepted = listener.accept() => if let Ok((stream, peer)) = accepted {
                next_conn += 1;
                spawn(&mut connections, stream, peer, next_conn);
            },
        }
    }
    drop(listener);
    drop(hub_tx);
    let _ = hub.await;
    if let Some(task) = metrics_task {
        task.abort();
    }
    info!("stopped");
    Ok(())
}

/// Answers `site` (metrics and probes) on `listener` until the runtime
/// stops: a few scrapers, each request its own task, under the same time
/// limits as every request (but neither TLS nor the chat's limits per
/// address), for any `Host` (a scraper names the node as it knows it).
async fn serve_metrics(
    listener: TcpListener,
    site: chat_transport::Site,
    transport: chat_transport::TransportConfig,
) {
    let site = Arc::new(site);
    let allowed_hosts = vec!["*".to_owned()];
    let config =
        Arc::new(chat_transport::TransportConfig { tls: None, allowed_hosts, ..transport });
    let gate = chat_transport::Gate::new(64, 64);
    let mut backoff = AcceptBackoff::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff.succeeded();
                let (site, config, gate) =
                    (Arc::clone(&site), Arc::clone(&config), Arc::clone(&gate));
                tokio::spawn(async move {
                    if let Err(err) = chat_transport::accept(stream, &site, &config, &gate).await {
                        debug!(%err, "metrics request failed");
                    }
                });
            }
            Err(err) => tokio::time::sleep(backoff.failed(&err)).await,
        }
    }
}

/// How the accept loop waits after failures: 10 ms doubling to a second
/// while they go on, so running out of file descriptors does not spin a
/// core; logged once a second at most, with how many were not logged.
#[derive(Debug, Default)]
struct AcceptBackoff {
    failures: u32,
    unlogged: u64,
    logged: Option<std::time::Instant>,
}

impl AcceptBackoff {
    fn succeeded(&mut self) {
        self.failures = 0;
    }

    fn failed(&mut self, err: &std::io::Error) -> std::time::Duration {
        self.failures = self.failures.saturating_add(1);
        let quiet = self.logged.is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(1));
        if quiet {
            self.unlogged += 1;
        } else {
            warn!(%err, failures = self.failures, not_logged = self.unlogged, "accept failed");
            self.unlogged = 0;
            self.logged = Some(std::time::Instant::now());
        }
        let exponent = self.failures.saturating_sub(1).min(7);
        std::time::Duration::from_millis(10 << exponent).min(std::time::Duration::from_secs(1))
    }
}
