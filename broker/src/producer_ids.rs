//! Idempotent producers, broker side: handing out producer ids, and expiring the state of
//! producers that went quiet.
//!
//! Ids come in blocks from the controller group, whose counter is replicated, so no two
//! brokers and no restart ever hand out the same id. A block that is lost in a crash is
//! simply never used.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use strand_raft::{Command, ControllerCommand, ProposeError, RaftNode, Response, CONTROLLER_GROUP};
use tokio::sync::Mutex;

use crate::groups::now_ms;
use crate::Broker;

/// Producer ids fetched from the controller at a time.
const BLOCK: u32 = 1000;

/// This broker's current block of producer ids.
#[derive(Debug, Default)]
pub struct ProducerIds {
    block: Mutex<Range<i64>>,
}

impl ProducerIds {
    /// A producer id no one has had before.
    pub async fn next(&self, node: &RaftNode) -> Result<i64, ProposeError> {
        let mut block = self.block.lock().await;
        if block.is_empty() {
            let command =
                Command::Controller(ControllerCommand::AllocateProducerIds { count: BLOCK });
            match node.propose(CONTROLLER_GROUP, command).await? {
                Response::ProducerIds { first, count } => *block = first..first + count as i64,
                other => {
                    return Err(ProposeError::Unavailable(format!(
                        "unexpected controller answer {other:?}"
                    )))
                }
            }
        }
        let id = block.start;
        block.start += 1;
        Ok(id)
    }
}

/// How often leaders look for producers to expire.
const EXPIRY_CHECK: Duration = Duration::from_secs(60);

/// For every partition this node leads, forgets producers whose last batch is older than
/// the expiration time, through Raft so every replica forgets the same ones. Keeps memory
/// bounded when clients come and go (Kafka: producer.id.expiration.ms).
pub async fn expiry_loop(broker: Arc<Broker>) {
    loop {
        tokio::time::sleep(EXPIRY_CHECK).await;
        let before = now_ms() - broker.config.producer_id_expiration.as_millis() as i64;
        for partition in broker.node.partitions() {
            if !partition.replica.leadership().serving {
                continue;
            }
            let stale = match partition.reader.producers() {
                Ok(producers) => producers.iter().any(|(_, p)| p.last_timestamp < before),
                Err(e) => {
                    tracing::warn!(group = partition.replica.group(), error = %e, "cannot read producer state");
                    false
                }
            };
            if stale {
                let expired = partition
                    .replica
                    .propose(Command::ExpireProducers { before })
                    .await;
                tracing::debug!(
                    group = partition.replica.group(),
                    ?expired,
                    "expired idle producers"
                );
            }
        }
    }
}
