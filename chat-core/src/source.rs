use std::num::NonZeroU64;

/// Where a connection comes from, as the driver groups connections for the
/// limits that apply per address: sessions waiting to be resumed, rooms
/// created, bytes uploaded.
///
/// The core only compares sources. The server makes one from the peer's IP
/// address, taking an IPv6 address by its /64 network (one host commonly
/// holds a whole /64, so counting single IPv6 addresses would limit
/// nothing): 64 bits hold either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source(NonZeroU64);

impl Source {
    /// A source from the driver's number for it (0 counts as `u64::MAX`:
    /// kept non-zero, an optional source takes no more room).
    pub const fn new(raw: u64) -> Self {
        match NonZeroU64::new(raw) {
            Some(raw) => Self(raw),
            None => Self(NonZeroU64::MAX),
        }
    }

    /// The number the driver gave.
    pub const fn get(self) -> u64 {
        self.0.get()
    }
}
