/// Where a connection comes from, as the driver groups connections for the
/// limits that apply per address: sessions waiting to be resumed, rooms
/// created, bytes uploaded.
///
/// The core only compares sources. The server makes one from the peer's IP
/// address, taking an IPv6 address by its /64 network (one host commonly
/// holds a whole /64, so counting single IPv6 addresses would limit
/// nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source(u128);

impl Source {
    /// A source from the driver's number for it.
    pub const fn new(raw: u128) -> Self {
        Self(raw)
    }

    /// The number the driver gave.
    pub const fn get(self) -> u128 {
        self.0
    }
}
