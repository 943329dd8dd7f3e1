//! Record payloads: random bytes (so compression has no easy win), or text-like words that
//! compress as JSON or log lines do, whose first 16 bytes carry the run id and the send
//! time, which is how the end-to-end consumer measures produce-to-consume latency and
//! ignores records left by other runs.

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

/// What fills a record's payload.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// The same random bytes in every record: incompressible, and free to make.
    Random,
    /// Words drawn afresh for every record from a small vocabulary, so a compressor
    /// finds repeats within a record and across a batch, but no two records are equal.
    Words,
}

const WORDS: [&[u8]; 32] = [
    b"{\"id\":",
    b"\"user\":",
    b"\"order\":",
    b"\"status\":",
    b"\"amount\":",
    b"true,",
    b"false,",
    b"null,",
    b"\"EUR\",",
    b"\"USD\",",
    b"\"2026-12-06T",
    b"08:41:07Z\",",
    b"\"shipped\",",
    b"\"pending\",",
    b"\"items\":[",
    b"],",
    b"\"sku\":",
    b"\"qty\":",
    b"\"price\":",
    b"\"name\":",
    b"\"Lisbon\",",
    b"\"Oslo\",",
    b"\"Kyoto\",",
    b"},",
    b"\"region\":",
    b"\"eu-west\",",
    b"\"note\":",
    b"\"gift\",",
    b"1",
    b"42",
    b"7.5",
    b"\n",
];

/// Fills `out` with words chosen by a xorshift64 `state` (advanced).
pub fn fill_words(out: &mut [u8], state: &mut u64) {
    let mut at = 0;
    while at < out.len() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let word = WORDS[(*state % WORDS.len() as u64) as usize];
        let n = word.len().min(out.len() - at);
        out[at..at + n].copy_from_slice(&word[..n]);
        at += n;
    }
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
