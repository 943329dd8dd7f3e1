//! The Kafka listener's accept loop.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::connection;
use crate::Broker;

/// Accepts connections until `shutdown` completes.
pub async fn run(broker: Arc<Broker>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = broker.connection_limits.room() => {}
            _ = &mut shutdown => return,
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => match broker.connection_limits.admit(peer.ip()) {
                    Some(admitted) => {
                        let broker = broker.clone();
                        tokio::spawn(async move {
                            connection::serve(broker, socket, peer).await;
                            drop(admitted);
                        });
                    }
                    None => drop(socket),
                },
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = &mut shutdown => return,
        }
    }
}
