use std::fmt;
use std::num::NonZeroU64;

/// Names one connected member (one connection) for the lifetime of a
/// [`Chat`](crate::Chat). Allocated by [`Chat::handle_connect`](crate::Chat::handle_connect)
/// from a counter, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(NonZeroU64);

/// Names one room for the lifetime of a [`Chat`](crate::Chat). Allocated when
/// the room is created, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomId(u64);

/// Names a session inside the core; never shown to the driver. Counted
/// from 1 (non-zero, so an optional one takes no more room).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SessionId(NonZeroU64);

impl SessionId {
    /// The least there can be: where a range of them starts.
    pub(crate) const MIN: Self = Self(NonZeroU64::MIN);

    pub(crate) fn new(raw: u64) -> Self {
        Self(NonZeroU64::new(raw).unwrap_or(NonZeroU64::MAX))
    }
}

impl MemberId {
    /// From the core's counter, which starts at 1.
    pub(crate) fn new(raw: u64) -> Self {
        Self(NonZeroU64::new(raw).unwrap_or(NonZeroU64::MAX))
    }

    /// The raw number, for logs and maps in the driver.
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl RoomId {
    pub(crate) fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw number, for logs and maps in the driver.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}
