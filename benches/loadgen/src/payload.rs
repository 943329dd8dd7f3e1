//! Record payloads: random bytes (so compression has no easy win) whose first 16 bytes
//! carry the run id and the send time, which is how the end-to-end consumer measures
//! produce-to-consume latency and ignores records left by other runs.

/// Bytes at the front of every payload that hold the run id and the send timestamp.
pub const HEADER_LEN: usize = 16;

/// Random payload bytes, from xorshift64: reproducible per seed and fast enough to fill
/// many megabytes, with no dependency for it.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes the header into `payload` when it is long enough to hold one.
pub fn stamp(payload: &mut [u8], run_id: u64, sent_ns: u64) {
    if payload.len() >= HEADER_LEN {
        payload[..8].copy_from_slice(&run_id.to_le_bytes());
        payload[8..16].copy_from_slice(&sent_ns.to_le_bytes());
    }
}

/// The send timestamp of a payload stamped by this run, or None for anything else.
pub fn sent_ns(payload: &[u8], run_id: u64) -> Option<u64> {
    if payload.len() < HEADER_LEN || payload[..8] != run_id.to_le_bytes() {
        return None;
    }
    Some(u64::from_le_bytes(payload[8..16].try_into().ok()?))
}

/// The keys records cycle through: `count` distinct decimal strings, or none at all.
pub fn keys(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|k| format!("key-{k}").into_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_payload_gives_back_its_timestamp_only_to_its_own_run() {
        let mut payload = random_bytes(1024, 7);
        stamp(&mut payload, 42, 123_456_789);
        assert_eq!(sent_ns(&payload, 42), Some(123_456_789));
        assert_eq!(sent_ns(&payload, 43), None);
        assert_eq!(payload.len(), 1024);
    }

    #[test]
    fn payloads_too_short_for_a_header_are_left_alone() {
        let mut payload = vec![9u8; 10];
        stamp(&mut payload, 1, 2);
        assert_eq!(payload, vec![9u8; 10]);
        assert_eq!(sent_ns(&payload, 1), None);
    }

    #[test]
    fn random_bytes_differ_by_seed_and_have_the_asked_length() {
        assert_eq!(random_bytes(13, 1).len(), 13);
        assert_ne!(random_bytes(64, 1), random_bytes(64, 2));
    }
}
