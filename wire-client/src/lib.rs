//! A blocking Kafka wire client: one TCP connection, requests encoded and responses decoded
//! by `strand_protocol::codec`. The broker's raw-protocol tests and the Jepsen harness's
//! admin calls (those librdkafka does not offer) share it, so one piece of code frames
//! requests for both. It sends exactly the version it is told to, which a real client never
//! does; that is what the tests need.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strand_protocol::codec;
use strand_protocol::kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

/// One connection to a broker.
pub struct Connection {
    stream: TcpStream,
    correlation: i32,
    client_id: String,
}

impl Connection {
    /// Connects to `addr`; reads and writes give up after `timeout`.
    pub fn connect(addr: SocketAddr, timeout: Duration, client_id: &str) -> io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Connection {
            stream,
            correlation: 0,
            client_id: client_id.to_string(),
        })
    }

    /// Sends a request without waiting for its answer (pipelining). A body that cannot be
    /// encoded at `version` is an `InvalidInput` error and nothing is sent.
    pub fn send(&mut self, key: ApiKey, version: i16, body: &RequestKind) -> io::Result<()> {
        self.correlation += 1;
        let frame = codec::encode_request(self.correlation, &self.client_id, key, version, body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:#}")))?;
        self.stream.write_all(&frame)
    }

    /// Reads the next answer, to a request of `key` v`version`, with its correlation id.
    pub fn receive(&mut self, key: ApiKey, version: i16) -> io::Result<(i32, ResponseKind)> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut frame = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        self.stream.read_exact(&mut frame)?;
        codec::decode_response(Bytes::from(frame), key, version)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:#}")))
    }

    /// Sends a request and waits for its answer, which must carry its correlation id.
    pub fn call(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &RequestKind,
    ) -> io::Result<ResponseKind> {
        self.send(key, version, body)?;
        let (correlation, response) = self.receive(key, version)?;
        if correlation != self.correlation {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "answer to request {correlation} while waiting for {}",
                    self.correlation
                ),
            ));
        }
        Ok(response)
    }

    /// The raw socket, for tests that write bytes no encoder would.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// Whether the Kafka crate's request encoder can write `body` at `version` (its encoders
/// trail its decoders for a few APIs).
pub fn encodable(body: &RequestKind, version: i16) -> bool {
    body.encode(&mut BytesMut::new(), version).is_ok()
}
