//! The binary encoding of everything the Raft layer persists or sends: postcard, which
//! writes byte strings (record batches) as a length and the raw bytes.

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("cannot decode stored value: {0}")]
pub struct DecodeError(#[from] postcard::Error);

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("in-memory values always encode")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    Ok(postcard::from_bytes(bytes)?)
}
