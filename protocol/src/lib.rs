//! The Kafka wire protocol as Strand speaks it, with no sockets and no storage (sans-io).
//!
//! - [`frame`] cuts a byte stream into length-prefixed frames.
//! - [`codec`] turns a frame into a typed request and a typed response back into bytes,
//!   including the ApiVersions fallback that old and new clients rely on.
//! - [`api_versions`]: version ranges and the ApiVersions answer built from a server's table.
//! - [`batch`] validates producer record batches (magic, length, CRC-32C) and patches the
//!   fields the broker owns (base offset, partition leader epoch) in place.
//! - [`records`] reads individual records out of a stored batch (for timestamp lookups),
//!   decompressing with a hard size cap.
//! - [`compaction`] reads the keys of a stored batch and rebuilds it with the records the
//!   log cleaner keeps.
//!
//! Everything here is tested on bytes alone.

pub mod alloc;
pub mod api_versions;
pub mod batch;
pub mod codec;
pub mod compaction;
pub mod frame;
pub mod records;

#[cfg(test)]
mod fuzz;

pub use kafka_protocol;
pub use kafka_protocol::ResponseError;

// Garbage array lengths make the generated decoders reserve absurd capacities; the broker
// binary installs this allocator for that reason, and so does this crate's test binary.
#[cfg(test)]
#[global_allocator]
static ALLOC: alloc::HugeAllocationGuard = alloc::HugeAllocationGuard;
