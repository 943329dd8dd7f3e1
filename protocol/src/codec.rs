//! Turning a frame into a typed request, and a typed response back into a frame.
//!
//! The request header's own version depends on the API key and version, so both are peeked
//! from the first four bytes before anything is decoded. An ApiVersions request with a
//! version we do not know gets the KIP-511 fallback: a v0 body with error 35 and our ranges,
//! so the client can retry with a version we share. Every other failure tells the caller to
//! close the connection, which is what Kafka does with requests it cannot read.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, FetchResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError;

use crate::api_versions::{self, ApiRange};
use crate::frame::{LateBytes, OutFrame, Part};

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Why a frame could not be decoded into a request.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api_key:?} version {version} is not supported")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

impl DecodeError {
    /// The frame to send back before closing, if Kafka defines one for this failure: only an
    /// ApiVersions request of an unknown version gets an answer (the KIP-511 fallback, which
    /// lists `apis`).
    pub fn reply(&self, apis: &[ApiRange]) -> Option<OutFrame> {
        match self {
            DecodeError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                correlation_id,
                ..
            } => Some(api_versions_fallback(apis, *correlation_id)),
            _ => None,
        }
    }
}

/// Decodes one frame (without its size prefix) into a request.
///
/// APIs not in `apis` are still decoded when the codec knows them; the broker then closes
/// the connection, as Kafka does for an API it has not enabled. Versions outside an
/// implemented API's advertised range are refused here.
pub fn decode_request(mut frame: Bytes, apis: &[ApiRange]) -> Result<Request, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApiKey(raw_key))?;

    let codec_range = api_key.valid_versions();
    let decodable = codec_range.min <= version && version <= codec_range.max;
    let advertised_ok = api_versions::find(apis, api_key).is_none_or(|r| r.contains(version));
    if !decodable || !advertised_ok {
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }

    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        version,
        correlation_id,
        reason,
    };
    // The generated decoders return errors on short input; catch_unwind is a second line of
    // defence so no byte sequence can take a connection task down with a panic.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))?;
        let body = RequestKind::decode(api_key, &mut frame, version)?;
        anyhow::Ok((header, body))
    }));
    match decoded {
        Ok(Ok((header, body))) => Ok(Request {
            api_key,
            version,
            header,
            body,
        }),
        Ok(Err(e)) => Err(malformed(format!("{e:#}"))),
        Err(_) => Err(malformed("decoder panicked".into())),
    }
}

/// Encodes a response frame, size prefix included, in the request's version.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<OutFrame, EncodeError> {
    if let ResponseKind::Fetch(fetch) = body {
        return encode_fetch_response(correlation_id, version, fetch, Vec::new());
    }
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api_key.response_header_version(version);
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    header
        .encode(&mut out, header_version)
        .map_err(|e| EncodeError(format!("{api_key:?} v{version} header: {e:#}")))?;
    body.encode(&mut out, version)
        .map_err(|e| EncodeError(format!("{api_key:?} v{version} body: {e:#}")))?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.into())
}

/// Record sets at least this large go out by reference rather than copied.
const SHARED_RECORDS_MIN: usize = 16 * 1024;

/// What the records of a fetch response hold in place of records read only as the frame is
/// written (see [`late_records`]): untouched zero pages, never resident.
static LATE_PLACEHOLDER: [u8; LATE_RECORDS_MAX] = [0; LATE_RECORDS_MAX];

/// The largest record set that can be late; a larger one is read before it is encoded.
pub const LATE_RECORDS_MAX: usize = 64 << 20;

/// A stand-in for `len` bytes of records that a [`LateBytes`] part will produce, for the
/// response's `records` field; `None` when `len` is 0 or above [`LATE_RECORDS_MAX`]. Hand
/// the late parts to [`encode_fetch_response`] in the order their stand-ins appear in the
/// response.
pub fn late_records(len: usize) -> Option<Bytes> {
    (len > 0 && len <= LATE_RECORDS_MAX).then(|| Bytes::from_static(&LATE_PLACEHOLDER[..len]))
}

/// Encodes a fetch response frame. Its megabytes of records go out as parts of their own:
/// shared with the buffers they were read into, or, where the response holds a
/// [`late_records`] stand-in, the next of `late`, produced as the frame is written. The
/// fields between them go into one buffer, sized in advance.
pub fn encode_fetch_response(
    correlation_id: i32,
    version: i16,
    fetch: &FetchResponse,
    late: Vec<Box<dyn LateBytes>>,
) -> Result<OutFrame, EncodeError> {
    encode_fetch(correlation_id, version, fetch, late)
        .map_err(|e| EncodeError(format!("Fetch v{version}: {e:#}")))
}

fn encode_fetch(
    correlation_id: i32,
    version: i16,
    fetch: &FetchResponse,
    late: Vec<Box<dyn LateBytes>>,
) -> anyhow::Result<OutFrame> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = ApiKey::Fetch.response_header_version(version);
    let size = header.compute_size(header_version)? + fetch.compute_size(version)?;
    let prefix = i32::try_from(size)
        .map_err(|_| anyhow::anyhow!("a response of {size} bytes does not fit a frame"))?;
    let shared: Vec<Bytes> = fetch
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
        .filter_map(|partition| partition.records.clone())
        .filter(|records| records.len() >= SHARED_RECORDS_MIN && !is_late(records))
        .collect();
    let apart: usize =
        shared.iter().map(Bytes::len).sum::<usize>() + late.iter().map(|l| l.len()).sum::<usize>();
    let late_count = late.len();
    let mut out = SharingWriter {
        parts: Vec::with_capacity(2 * (shared.len() + late_count) + 1),
        sent: 0,
        current: BytesMut::with_capacity((4 + size).saturating_sub(apart)),
        shared,
        late: late.into(),
        late_mismatch: None,
    };
    out.current.put_i32(prefix);
    header.encode(&mut out, header_version)?;
    fetch.encode(&mut out, version)?;
    if let Some((placeholder, part)) = out.late_mismatch {
        anyhow::bail!("a late record set of {part} bytes stood for {placeholder}");
    }
    anyhow::ensure!(
        out.late.is_empty(),
        "{} of {late_count} late record sets had no stand-in",
        out.late.len()
    );
    let frame = out.finish();
    anyhow::ensure!(
        frame.len() == 4 + size,
        "encoded {} bytes where {} were computed",
        frame.len(),
        4 + size
    );
    Ok(frame)
}

fn is_late(records: &[u8]) -> bool {
    !records.is_empty() && records.as_ptr() == LATE_PLACEHOLDER.as_ptr()
}

/// The buffer a fetch response is encoded into: writes go to `current`, except a slice
/// that is one of the `shared` record sets or a late stand-in, which closes `current` as a
/// part and becomes a part itself (the shared bytes by reference, or the next late part).
/// The encoder hands the records over as the very slice of the `Bytes` it holds, so
/// comparing address and length finds them.
struct SharingWriter {
    parts: Vec<Part>,
    /// The bytes in `parts`.
    sent: usize,
    current: BytesMut,
    shared: Vec<Bytes>,
    late: VecDeque<Box<dyn LateBytes>>,
    /// A stand-in's length and the late part's, when they differ.
    late_mismatch: Option<(usize, usize)>,
}

impl SharingWriter {
    fn finish(mut self) -> OutFrame {
        if !self.current.is_empty() {
            self.parts.push(Part::Ready(self.current.freeze()));
        }
        self.parts.into()
    }

    /// Closes `current` as a part and appends `part` after it.
    fn push_apart(&mut self, part: Part) {
        let fields = self.current.split().freeze();
        self.sent += fields.len() + part.len();
        self.parts.push(Part::Ready(fields));
        self.parts.push(part);
    }
}

// SAFETY: every method delegates to `current`, a `BytesMut`; `put_slice` only chooses
// between extending `current` and appending a whole part.
unsafe impl BufMut for SharingWriter {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's promise about `chunk_mut` of `current` carries over.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if is_late(src) {
            match self.late.pop_front() {
                Some(late) => {
                    if late.len() != src.len() {
                        self.late_mismatch = Some((src.len(), late.len()));
                    }
                    self.push_apart(Part::Late(late));
                }
                None => self.late_mismatch = Some((src.len(), 0)),
            }
            return;
        }
        let shared = self
            .shared
            .iter()
            .position(|r| r.as_ptr() == src.as_ptr() && r.len() == src.len());
        match shared {
            Some(i) => {
                let records = self.shared.swap_remove(i);
                self.push_apart(Part::Ready(records));
            }
            None => self.current.extend_from_slice(src),
        }
    }
}

/// Offsets are of the whole frame; the encoder only revisits bytes it has just written
/// (Fetch does not at all), which are still in `current`.
impl ByteBufMut for SharingWriter {
    fn offset(&self) -> usize {
        self.sent + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        self.current.seek(offset - self.sent);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        self.current.range(r.start - self.sent..r.end - self.sent)
    }
}

/// The client's side, for the tools and tests that talk to a broker: a request frame, size
/// prefix included.
pub fn encode_request(
    correlation_id: i32,
    client_id: &str,
    api_key: ApiKey,
    version: i16,
    body: &RequestKind,
) -> anyhow::Result<Bytes> {
    let mut out = BytesMut::with_capacity(128);
    out.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_string(
            client_id.to_string(),
        )))
        .encode(&mut out, api_key.request_header_version(version))?;
    body.encode(&mut out, version)
        .map_err(|e| anyhow::anyhow!("cannot encode {api_key:?} v{version}: {e}"))?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

/// The client's side: the correlation id and body of a response frame (without its size
/// prefix) to a request of `api_key` v`version`.
pub fn decode_response(
    mut frame: Bytes,
    api_key: ApiKey,
    version: i16,
) -> anyhow::Result<(i32, ResponseKind)> {
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))?;
    let body = ResponseKind::decode(api_key, &mut frame, version)
        .map_err(|e| anyhow::anyhow!("cannot decode the {api_key:?} v{version} response: {e}"))?;
    Ok((header.correlation_id, body))
}

/// A response that cannot be encoded in the requested version: a bug in a handler (it set a
/// field the version cannot carry), reported rather than sent half-written.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode response: {0}")]
pub struct EncodeError(String);

/// The KIP-511 answer to an ApiVersions request of a version we do not know: response header
/// v0, a v0 body, error UNSUPPORTED_VERSION and our supported ranges.
pub fn api_versions_fallback(apis: &[ApiRange], correlation_id: i32) -> OutFrame {
    let body = ResponseKind::ApiVersions(api_versions::api_versions_response(
        apis,
        ResponseError::UnsupportedVersion.code(),
    ));
    encode_response(correlation_id, ApiKey::ApiVersions, 0, &body)
        .expect("an ApiVersions v0 response always encodes")
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest};
    use kafka_protocol::protocol::Decodable;

    use super::*;

    /// A made-up server table, for the codec's own tests.
    const APIS: &[ApiRange] = &[
        ApiRange::new(ApiKey::Produce, 0, 12),
        ApiRange::new(ApiKey::Fetch, 4, 12),
        ApiRange::new(ApiKey::Metadata, 0, 12),
        ApiRange::new(ApiKey::ApiVersions, 0, 4),
        ApiRange::new(ApiKey::CreateTopics, 2, 7),
    ];

    fn request_frame(api_key: ApiKey, version: i16, correlation_id: i32, body: &[u8]) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_static_str(
                "t",
            )))
            .encode(&mut buf, api_key.request_header_version(version))
            .unwrap();
        buf.extend_from_slice(body);
        buf.freeze()
    }

    #[test]
    fn decodes_a_metadata_request() {
        let mut body = BytesMut::new();
        MetadataRequest::default().encode(&mut body, 9).unwrap();
        let req = decode_request(request_frame(ApiKey::Metadata, 9, 42, &body), APIS).unwrap();
        assert_eq!(req.api_key, ApiKey::Metadata);
        assert_eq!(req.header.correlation_id, 42);
        assert!(matches!(req.body, RequestKind::Metadata(_)));
    }

    /// Records produced in chunks, each in pieces, as the frame is written.
    struct Chunks(Vec<Vec<Bytes>>);

    impl LateBytes for Chunks {
        fn len(&self) -> usize {
            self.0.iter().flatten().map(Bytes::len).sum()
        }

        fn next_chunk(&mut self) -> std::io::Result<Option<Vec<Bytes>>> {
            Ok((!self.0.is_empty()).then(|| self.0.remove(0)))
        }
    }

    /// Big record sets go out as parts of their own, by reference, small ones inline, late
    /// ones as late parts; in order, the parts are byte for byte the frame encoded the
    /// ordinary way.
    #[test]
    fn fetch_records_are_shared_or_late_not_copied_and_the_frame_is_unchanged() {
        use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        use kafka_protocol::messages::TopicName;
        let big = |fill: u8| Bytes::from(vec![fill; 3 * SHARED_RECORDS_MIN]);
        let late = big(3);
        let response = |late_records: Bytes| {
            let partitions = vec![
                PartitionData::default().with_records(Some(big(1))),
                PartitionData::default()
                    .with_partition_index(1)
                    .with_records(Some(Bytes::from_static(b"small"))),
                PartitionData::default()
                    .with_partition_index(2)
                    .with_records(Some(big(2))),
                PartitionData::default().with_partition_index(3),
                PartitionData::default()
                    .with_partition_index(4)
                    .with_records(Some(late_records)),
            ];
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName::from(
                    kafka_protocol::protocol::StrBytes::from_static_str("t"),
                ))
                .with_partitions(partitions)])
        };
        let expected = response(late.clone());
        let with_stand_in = response(late_records(late.len()).unwrap());
        for version in [4, 11, 12, 16] {
            let chunks = Chunks(vec![
                vec![late.slice(..10), late.slice(10..1000)],
                vec![late.slice(1000..)],
            ]);
            let frame =
                encode_fetch_response(9, version, &with_stand_in, vec![Box::new(chunks)]).unwrap();
            let body = ResponseKind::Fetch(expected.clone());
            let mut plain = BytesMut::new();
            plain.put_i32(0);
            ResponseHeader::default()
                .with_correlation_id(9)
                .encode(&mut plain, ApiKey::Fetch.response_header_version(version))
                .unwrap();
            body.encode(&mut plain, version).unwrap();
            let size = (plain.len() - 4) as i32;
            plain[..4].copy_from_slice(&size.to_be_bytes());
            let shared: Vec<*const u8> = frame
                .parts()
                .iter()
                .filter_map(|p| match p {
                    Part::Ready(b) if b.len() == 3 * SHARED_RECORDS_MIN => Some(b.as_ptr()),
                    _ => None,
                })
                .collect();
            let records = |i: usize| {
                with_stand_in.responses[0].partitions[i]
                    .records
                    .as_ref()
                    .unwrap()
                    .as_ptr()
            };
            assert_eq!(
                shared,
                [records(0), records(2)],
                "v{version}: both big record sets are parts, by reference"
            );
            let late_parts: Vec<usize> = frame
                .parts()
                .iter()
                .filter_map(|p| match p {
                    Part::Late(l) => Some(l.len()),
                    Part::Ready(_) => None,
                })
                .collect();
            assert_eq!(late_parts, [late.len()], "v{version}: the late records");
            assert_eq!(frame.into_bytes().unwrap(), plain.freeze(), "v{version}");
        }
    }

    #[test]
    fn a_late_part_must_match_its_stand_in() {
        use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        let fetch =
            FetchResponse::default()
                .with_responses(vec![FetchableTopicResponse::default().with_partitions(
                    vec![PartitionData::default().with_records(late_records(100))],
                )]);
        let short = Chunks(vec![vec![Bytes::from_static(b"only ten b")]]);
        assert!(encode_fetch_response(1, 12, &fetch, vec![Box::new(short)]).is_err());
        assert!(
            encode_fetch_response(1, 12, &fetch, Vec::new()).is_err(),
            "no late part"
        );
        // Promises 100 bytes, produces 10: caught when the frame is written.
        struct Liar(Chunks);
        impl LateBytes for Liar {
            fn len(&self) -> usize {
                100
            }
            fn next_chunk(&mut self) -> std::io::Result<Option<Vec<Bytes>>> {
                self.0.next_chunk()
            }
        }
        let liar = Liar(Chunks(vec![vec![Bytes::from_static(b"only ten b")]]));
        let frame = encode_fetch_response(1, 12, &fetch, vec![Box::new(liar)]).unwrap();
        assert!(frame.into_bytes().is_err());
    }

    #[test]
    fn too_new_api_versions_gets_a_v0_fallback_with_error_35() {
        // A future ApiVersions v99 with a body we cannot read.
        let frame = request_frame(ApiKey::ApiVersions, 3, 7, &[0xde, 0xad]);
        let mut frame = BytesMut::from(&frame[..]);
        frame[2..4].copy_from_slice(&99i16.to_be_bytes());
        let err = decode_request(frame.freeze(), APIS).unwrap_err();
        let mut reply = err
            .reply(APIS)
            .expect("ApiVersions fallback")
            .into_bytes()
            .unwrap();
        let size = i32::from_be_bytes(reply[..4].try_into().unwrap());
        assert_eq!(size as usize, reply.len() - 4);
        // Response header v0: just the correlation id, no tagged fields.
        assert_eq!(&reply[4..8], &7i32.to_be_bytes());
        let _ = reply.split_to(8);
        let body = ApiVersionsResponse::decode(&mut reply, 0).unwrap();
        assert_eq!(body.error_code, 35);
        assert!(body
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 4));
    }

    #[test]
    fn unknown_keys_short_frames_and_unadvertised_versions_are_refused() {
        assert!(matches!(
            decode_request(Bytes::from_static(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1]), APIS),
            Err(DecodeError::UnknownApiKey(0x7f00))
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3, 0]), APIS),
            Err(DecodeError::TooShort(3))
        ));
        // Fetch v13 exists in the codec but this table does not advertise it.
        let err = decode_request(request_frame(ApiKey::Fetch, 13, 1, &[]), APIS).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::UnsupportedVersion { version: 13, .. }
        ));
        assert!(
            err.reply(APIS).is_none(),
            "only ApiVersions gets a fallback answer"
        );
        // Produce v2 is advertised (for librdkafka) but cannot be decoded.
        assert!(matches!(
            decode_request(request_frame(ApiKey::Produce, 2, 1, &[]), APIS),
            Err(DecodeError::UnsupportedVersion { version: 2, .. })
        ));
    }

    #[test]
    fn garbage_bodies_are_malformed_not_panics() {
        let garbage = [0xffu8; 64];
        for key in [
            ApiKey::Metadata,
            ApiKey::Produce,
            ApiKey::Fetch,
            ApiKey::CreateTopics,
        ] {
            let version = api_versions::find(APIS, key).unwrap().max;
            let frame = request_frame(key, version, 1, &garbage[..17]);
            assert!(
                matches!(
                    decode_request(frame, APIS),
                    Err(DecodeError::Malformed { .. })
                ),
                "{key:?}"
            );
        }
    }
}
