use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A queue id: 16 upper-case hex digits, sortable by time of acceptance.
/// 44 bits of microseconds (good until the year 2527) followed by a 20-bit
/// counter, so two ids from one process never collide within a microsecond
/// and ids from a restarted process never repeat older ones.
pub fn new_queue_id() -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xF_FFFF;
    format!("{:011X}{:05X}", micros & 0xFFF_FFFF_FFFF, n)
}

/// True for a string that has the shape of a queue id; used to keep path
/// names derived from ids inside the spool directory.
pub fn is_queue_id(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let a = new_queue_id();
        let b = new_queue_id();
        assert_ne!(a, b);
        assert!(is_queue_id(&a), "{a}");
        assert!(!is_queue_id("../etc/passwd0000"));
    }
}
