//! `loadgen validate`: Strand's own cost of reading every produced record, with no broker
//! and no network. Batches are built as a producer would send them, with the payloads the
//! `produce` runs send, then validated over and over on one thread exactly as Produce
//! validates them (`strand_protocol::batch::validate_produce_records`). Dividing a produce
//! run's records/s by the records/s here gives the share of one core validation takes.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use clap::Args;
use serde_json::{json, Value};
use strand_protocol::batch::validate_produce_records;
use strand_protocol::kafka_protocol::indexmap::IndexMap;
use strand_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strand_protocol::records::{TimestampBounds, MAX_INFLATED_BATCH_BYTES};

use crate::payload;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    #[arg(long, value_enum, default_value = "random")]
    pub content: payload::Content,
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Bytes of records per batch before compression: `produce`'s batch.size default.
    #[arg(long, default_value_t = 131_072)]
    pub batch_size: usize,
    /// Different batches to cycle through, so caches see more than one.
    #[arg(long, default_value_t = 64)]
    pub batches: usize,
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
}

fn codec(name: &str) -> anyhow::Result<Compression> {
    Ok(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => bail!("unknown compression {other:?}: use none, gzip, snappy, lz4 or zstd"),
    })
}

/// One producer batch of `records` payloads of the run's content.
fn batch(args: &ValidateArgs, compression: Compression, seed: u64) -> anyhow::Result<Vec<u8>> {
    let per_batch = (args.batch_size / args.record_size.max(1)).max(1);
    let mut body = payload::random_bytes(args.record_size, seed);
    let mut words = seed | 1;
    let records: Vec<Record> = (0..per_batch)
        .map(|i| {
            if args.content == payload::Content::Words {
                payload::fill_words(&mut body, &mut words);
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                // The encoder starts a new batch wherever offset minus sequence changes.
                sequence: i as i32 - 1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(body.clone().into()),
                headers: IndexMap::new(),
            }
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut out, &records, &options).context("encoding a batch")?;
    Ok(out.to_vec())
}

/// The figures as JSON, and one line for people.
pub fn run(args: &ValidateArgs) -> anyhow::Result<(Value, String)> {
    let compression = codec(&args.compression)?;
    let batches = (0..args.batches.max(1))
        .map(|i| batch(args, compression, 0x9e37_79b9 + i as u64))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (mut records, mut wire_bytes, mut validated) = (0u64, 0u64, 0u64);
    let limit = Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    while started.elapsed() < limit {
        for b in &batches {
            let done = validate_produce_records(b, MAX_INFLATED_BATCH_BYTES, &TimestampBounds::ANY)
                .map_err(|e| anyhow::anyhow!("a producer's batch was refused: {e}"))?;
            records += done
                .headers
                .iter()
                .map(|h| h.record_count as u64)
                .sum::<u64>();
            wire_bytes += b.len() as u64;
            validated += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let payload_mb = records as f64 * args.record_size as f64 / 1e6;
    let human = format!(
        "{} ({:?}): {:.0} records/s, {:.1} MB/s of payload, {:.1} MB/s on the wire, one thread",
        args.compression,
        args.content,
        records as f64 / secs,
        payload_mb / secs,
        wire_bytes as f64 / 1e6 / secs
    );
    let result = json!({
        "mode": "validate",
        "compression": args.compression,
        "content": format!("{:?}", args.content).to_lowercase(),
        "record_size": args.record_size,
        "batch_size": args.batch_size,
        "batches_validated": validated,
        "seconds": secs,
        "records_per_sec": records as f64 / secs,
        "payload_mb_per_sec": payload_mb / secs,
        "wire_mb_per_sec": wire_bytes as f64 / 1e6 / secs,
        "compression_ratio": payload_mb * 1e6 / wire_bytes.max(1) as f64,
    });
    Ok((result, human))
}
