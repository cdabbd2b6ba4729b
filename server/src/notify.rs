//! systemd's readiness protocol (`Type=notify`): a datagram to the socket
//! `$NOTIFY_SOCKET` names, saying `READY=1` once the listener is bound and
//! `STOPPING=1` when the drain begins. Without the variable (not started
//! by systemd), nothing is sent.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Tells the service manager `state` (`READY=1`, `STOPPING=1`,
/// `STATUS=...`); a failure is logged, never fatal.
pub(crate) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(err) = send(&path, state) {
        tracing::warn!(%err, "cannot tell systemd how the service stands");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let addr = match path.as_bytes().strip_prefix(b"@") {
        // A name in Linux's abstract namespace.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(path)?,
    };
    UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}
