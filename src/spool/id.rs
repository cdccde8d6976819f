//! Queue IDs: unique, sortable by arrival, safe as file names.

use std::fmt;

/// 13 uppercase hex digits of arrival microseconds followed by 5 of a per-process
/// sequence/pid mix: 18 characters of `[0-9A-F]`, so it sorts by arrival and can never
/// name a path outside the spool.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(String);

impl QueueId {
    /// Accept only the exact form we generate (`queue -d ../../etc/passwd` is refused).
    pub fn parse(s: &str) -> Option<QueueId> {
        if s.len() == 18
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        {
            Some(QueueId(s.to_string()))
        } else {
            None
        }
    }

    /// A new ID for a message arriving at `micros` (µs since the epoch); `seq` makes IDs
    /// made in the same microsecond differ (a per-process counter mixed with the pid).
    pub fn new(micros: u64, seq: u32) -> QueueId {
        QueueId(format!(
            "{:013X}{:05X}",
            micros & 0x1F_FFFF_FFFF_FFFF,
            seq & 0xF_FFFF
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let id = QueueId::new(1_796_396_783_123_456, 42);
        assert_eq!(id.as_str().len(), 18);
        assert_eq!(QueueId::parse(id.as_str()), Some(id.clone()));
        for bad in [
            "",
            "../../etc/passwd",
            "0123456789abcdef01",
            "0123456789ABCDEF0",
            "ALL",
        ] {
            assert_eq!(QueueId::parse(bad), None, "{bad}");
        }
        assert!(QueueId::new(1, 0) < QueueId::new(2, 0));
    }
}
