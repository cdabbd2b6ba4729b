//! How many WebSockets may be open at once: in total, and from one IP
//! address. Checked at the upgrade, so a refused client gets an HTTP status
//! (`503` when the server is full, `429` when its address has too many)
//! instead of a WebSocket that is closed right after it opened.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::StatusCode;

/// Counts open WebSockets against the limits; shared by every connection.
#[derive(Debug)]
pub struct Gate {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted WebSocket; dropping it frees its place.
#[derive(Debug)]
pub struct Pass {
    gate: Arc<Gate>,
    ip: IpAddr,
}

/// Why a WebSocket was refused: the status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The server holds its maximum of connections (`503`).
    Server,
    /// The address holds its maximum of connections (`429`).
    Address,
}

impl Full {
    /// The HTTP status that says so.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Server => StatusCode::SERVICE_UNAVAILABLE,
            Self::Address => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl Gate {
    /// At most `max_total` WebSockets, and `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self { max_total, max_per_ip, open: Mutex::default() })
    }

    /// No limits.
    pub fn unlimited() -> Arc<Self> {
        Self::new(usize::MAX, usize::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        // Plain counters; a panic elsewhere cannot break them.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a place for a WebSocket from `ip`, if there is one.
    ///
    /// # Errors
    /// The server or the address is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Pass, Full> {
        let ip = canonical(ip);
        let mut open = self.lock();
        if open.total >= self.max_total {
            return Err(Full::Server);
        }
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.max_per_ip {
            return Err(Full::Address);
        }
        open.total += 1;
        open.per_ip.insert(ip, from_ip + 1);
        Ok(Pass { gate: Arc::clone(self), ip })
    }

    /// WebSockets open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut open = self.gate.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
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
    fn limits_per_address_then_in_total_and_passes_free_their_place() {
        let gate = Gate::new(3, 2);
        let a1 = gate.admit(ip("10.0.0.1"));
        let a2 = gate.admit(ip("10.0.0.1"));
        assert!(a1.is_ok() && a2.is_ok());
        assert_eq!(gate.admit(ip("10.0.0.1")).err(), Some(Full::Address));
        let b1 = gate.admit(ip("10.0.0.2"));
        assert!(b1.is_ok());
        assert_eq!(gate.admit(ip("10.0.0.3")).err(), Some(Full::Server));
        assert_eq!(gate.open(), 3);
        drop(a1);
        assert_eq!(gate.open(), 2);
        assert!(gate.admit(ip("10.0.0.1")).is_ok(), "a place freed for the address");
        assert_eq!(gate.open(), 2, "that pass was dropped at once");
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        let gate = Gate::new(10, 1);
        let _v4 = gate.admit(ip("10.0.0.1"));
        assert_eq!(gate.admit(ip("::ffff:10.0.0.1")).err(), Some(Full::Address));
        assert!(gate.admit(ip("2001:db8::1")).is_ok());
    }

    #[test]
    fn statuses() {
        assert_eq!(Full::Server.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Full::Address.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}
