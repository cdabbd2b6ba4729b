//! How many connections may be open at once: from one IP address (in any
//! phase: reading a request head, downloading a file, speaking WebSocket),
//! WebSockets in total, and downloads from one address. Checked as early as
//! each can be, so a refused client gets an HTTP status (`429` for its
//! address, `503` when the server is full) instead of a connection that
//! hangs or is closed right after it opened.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::StatusCode;

/// Counts open connections against the limits; shared by every connection.
#[derive(Debug)]
pub struct Gate {
    max_websockets: usize,
    max_per_ip: usize,
    max_downloads_per_ip: usize,
    open: Mutex<Open>,
    /// The server is shutting down: no new WebSockets or streams.
    draining: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct Open {
    websockets: usize,
    per_ip: HashMap<IpAddr, usize>,
    downloads: HashMap<IpAddr, usize>,
}

/// One connection from an address; dropping it frees its place (and its
/// WebSocket place, once upgraded).
#[derive(Debug)]
pub struct Pass {
    gate: Arc<Gate>,
    ip: IpAddr,
    /// Whether `ip` holds one of its places (a trusted proxy's does not:
    /// its clients' do, once known).
    counted: bool,
    websocket: bool,
}

/// One download in progress; dropping it frees its place.
#[derive(Debug)]
pub struct DownloadPass {
    gate: Arc<Gate>,
    ip: IpAddr,
}

/// Why a connection was refused: the status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The server holds its most WebSockets (`503`).
    Server,
    /// The address holds its most connections (`429`).
    Address,
    /// The address holds its most downloads (`429`).
    Downloads,
    /// The server is shutting down and takes no new connections (`503`).
    Draining,
}

impl Full {
    /// The HTTP status that says so.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Server | Self::Draining => StatusCode::SERVICE_UNAVAILABLE,
            Self::Address | Self::Downloads => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// What the answer's body says.
    pub fn why(self) -> &'static str {
        match self {
            Self::Server => "the server is at its connection limit; try again later\n",
            Self::Address => "too many connections from your address\n",
            Self::Downloads => "too many downloads from your address at once\n",
            Self::Draining => "the server is shutting down; try again shortly\n",
        }
    }
}

impl Gate {
    /// At most `max_websockets` WebSockets, and `max_per_ip` connections
    /// of any kind from one address (8 of them downloads).
    pub fn new(max_websockets: usize, max_per_ip: usize) -> Arc<Self> {
        Self::with_downloads(max_websockets, max_per_ip, 8)
    }

    /// The same, with `max_downloads_per_ip` downloads at once from one
    /// address.
    pub fn with_downloads(
        max_websockets: usize,
        max_per_ip: usize,
        max_downloads_per_ip: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            max_websockets,
            max_per_ip,
            max_downloads_per_ip,
            open: Mutex::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The server is shutting down: from now on no connection upgrades
    /// (or opens an event stream); other requests are still answered.
    pub fn drain(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::Release);
    }

    /// No limits.
    pub fn unlimited() -> Arc<Self> {
        Self::with_downloads(usize::MAX, usize::MAX, usize::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        // Plain counters; a panic elsewhere cannot break them.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a place for a new connection from `ip`, if its address has
    /// one left: before anything is read from it, so a flood of slow
    /// request heads from one address cannot take every file descriptor.
    ///
    /// # Errors
    /// The address is full.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Result<Pass, Full> {
        let ip = canonical(ip);
        let mut open = self.lock();
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.max_per_ip {
            return Err(Full::Address);
        }
        open.per_ip.insert(ip, from_ip + 1);
        Ok(Pass { gate: Arc::clone(self), ip, counted: true, websocket: false })
    }

    /// As [`Gate::enter`], but a connection from one of `trusted`'s proxies
    /// takes no place of its address (it carries many clients): its client
    /// takes one once its request says who it is ([`Pass::rebind`]).
    ///
    /// # Errors
    /// The address is full.
    pub fn enter_via(
        self: &Arc<Self>,
        ip: IpAddr,
        trusted: &crate::TrustedProxies,
    ) -> Result<Pass, Full> {
        if trusted.contains(ip) {
            let ip = canonical(ip);
            return Ok(Pass { gate: Arc::clone(self), ip, counted: false, websocket: false });
        }
        self.enter(ip)
    }

    /// WebSockets open now.
    pub fn open(&self) -> usize {
        self.lock().websockets
    }

    /// Connections of any kind open now from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.lock().per_ip.get(&canonical(ip)).copied().unwrap_or(0)
    }
}

impl Pass {
    /// The connection is `ip`'s (the client a trusted proxy named): it
    /// takes one of that address's places, instead of the one it had.
    ///
    /// # Errors
    /// That address is full; the pass is as it was.
    pub fn rebind(&mut self, ip: IpAddr) -> Result<(), Full> {
        let ip = canonical(ip);
        if self.counted && ip == self.ip {
            return Ok(());
        }
        let mut open = self.gate.lock();
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.gate.max_per_ip {
            return Err(Full::Address);
        }
        open.per_ip.insert(ip, from_ip + 1);
        if self.counted {
            release(&mut open.per_ip, self.ip);
        }
        self.ip = ip;
        self.counted = true;
        Ok(())
    }

    /// The connection becomes a WebSocket, if the server has room for one
    /// more.
    ///
    /// # Errors
    /// The server holds its most WebSockets.
    pub fn upgrade(&mut self) -> Result<(), Full> {
        if self.websocket {
            return Ok(());
        }
        if self.gate.draining.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Full::Draining);
        }
        let mut open = self.gate.lock();
        if open.websockets >= self.gate.max_websockets {
            return Err(Full::Server);
        }
        open.websockets += 1;
        self.websocket = true;
        Ok(())
    }

    /// A download starts, if the address has room for one more.
    ///
    /// # Errors
    /// The address has its most downloads going.
    pub fn download(&self) -> Result<DownloadPass, Full> {
        let mut open = self.gate.lock();
        let going = open.downloads.get(&self.ip).copied().unwrap_or(0);
        if going >= self.gate.max_downloads_per_ip {
            return Err(Full::Downloads);
        }
        open.downloads.insert(self.ip, going + 1);
        Ok(DownloadPass { gate: Arc::clone(&self.gate), ip: self.ip })
    }
}

fn release(counts: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(count) = counts.get_mut(&ip) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(&ip);
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut open = self.gate.lock();
        if self.websocket {
            open.websockets = open.websockets.saturating_sub(1);
        }
        if self.counted {
            release(&mut open.per_ip, self.ip);
        }
    }
}

impl Drop for DownloadPass {
    fn drop(&mut self) {
        release(&mut self.gate.lock().downloads, self.ip);
    }
}

/// IPv4 clients reaching an IPv6 socket count as their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|_| IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn limits_per_address_then_websockets_in_total_and_passes_free_their_place() {
        let gate = Gate::new(2, 2);
        let mut a1 = gate.enter(ip("10.0.0.1")).unwrap();
        let mut a2 = gate.enter(ip("10.0.0.1")).unwrap();
        assert_eq!(gate.enter(ip("10.0.0.1")).err(), Some(Full::Address));
        assert_eq!((a1.upgrade(), a2.upgrade()), (Ok(()), Ok(())));
        let mut b1 = gate.enter(ip("10.0.0.2")).unwrap();
        assert_eq!(b1.upgrade(), Err(Full::Server), "the WebSockets are full");
        assert_eq!(gate.open(), 2);
        drop(a1);
        assert_eq!(gate.open(), 1);
        assert_eq!(gate.open_from(ip("10.0.0.1")), 1);
        assert!(gate.enter(ip("10.0.0.1")).is_ok(), "a place freed for the address");
        assert_eq!(b1.upgrade(), Ok(()));
    }

    #[test]
    fn downloads_are_limited_per_address() {
        let gate = Gate::with_downloads(10, 10, 1);
        let a = gate.enter(ip("10.0.0.1")).unwrap();
        let first = a.download().unwrap();
        assert_eq!(a.download().err(), Some(Full::Downloads));
        let b = gate.enter(ip("10.0.0.2")).unwrap();
        assert!(b.download().is_ok());
        drop(first);
        assert!(a.download().is_ok());
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        let gate = Gate::new(10, 1);
        let _v4 = gate.enter(ip("10.0.0.1"));
        assert_eq!(gate.enter(ip("::ffff:10.0.0.1")).err(), Some(Full::Address));
        assert!(gate.enter(ip("2001:db8::1")).is_ok());
    }

    #[test]
    fn statuses() {
        assert_eq!(Full::Server.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Full::Address.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(Full::Downloads.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}
