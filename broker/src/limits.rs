//! Node-wide bounds on what clients may hold: connections (in all and per address) and the
//! memory of requests being read. Kafka's names: max.connections, max.connections.per.ip,
//! queued.max.request.bytes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Open connections, in all and by client address. As Kafka: a node at max.connections
/// stops accepting until one closes; a connection past max.connections.per.ip is closed at
/// once.
pub struct ConnectionLimits {
    max: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
    /// Told whenever a connection closes.
    freed: Notify,
    /// Connections closed at once because their address had its share, for the metrics.
    pub refused: AtomicU64,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// A connection counted against the limits until dropped.
pub struct Admitted {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    pub fn new(max: usize, max_per_ip: usize) -> Self {
        ConnectionLimits {
            max,
            max_per_ip,
            open: Mutex::new(Open::default()),
            freed: Notify::new(),
            refused: AtomicU64::new(0),
        }
    }

    /// Returns once the node may accept another connection.
    pub async fn room(&self) {
        loop {
            let freed = self.freed.notified();
            if self.open.lock().expect("connection limits lock").total < self.max {
                return;
            }
            freed.await;
        }
    }

    /// Counts a new connection from `ip`, or `None` when its address has its share.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        // An IPv4 client seen through an IPv6 socket is the same client.
        let ip = ip.to_canonical();
        let mut open = self.open.lock().expect("connection limits lock");
        let from_ip = open.by_ip.entry(ip).or_default();
        if *from_ip >= self.max_per_ip {
            self.refused.fetch_add(1, Relaxed);
            return None;
        }
        *from_ip += 1;
        open.total += 1;
        Some(Admitted {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().expect("connection limits lock");
        open.total -= 1;
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
        drop(open);
        self.limits.freed.notify_waiters();
    }
}

/// Bytes of request frames being read, over all connections: a frame's size is taken
/// before its body is buffered, and a connection that finds too little left waits (stops
/// reading) until other requests are read.
pub struct RequestMemory {
    bytes: Arc<Semaphore>,
    capacity: usize,
}

impl RequestMemory {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.min(Semaphore::MAX_PERMITS);
        RequestMemory {
            bytes: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// Takes `bytes` (a frame larger than the whole pool takes all of it).
    pub async fn take(&self, bytes: usize) -> OwnedSemaphorePermit {
        let wanted = u32::try_from(bytes.min(self.capacity)).unwrap_or(u32::MAX);
        self.bytes
            .clone()
            .acquire_many_owned(wanted)
            .await
            .expect("the request memory semaphore is never closed")
    }

    /// Bytes taken now.
    pub fn in_use(&self) -> usize {
        self.capacity - self.bytes.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_node_waits_and_an_address_past_its_share_is_refused() {
        let limits = Arc::new(ConnectionLimits::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limits.admit(a).unwrap();
        let _second = limits.admit(a).unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(limits.admit(mapped).is_none(), "a third from one address");
        assert_eq!(limits.refused.load(Relaxed), 1);
        let _third = limits.admit(b).unwrap();
        let waiting = tokio::spawn({
            let limits = limits.clone();
            async move { limits.room().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "room at max.connections");
        drop(first);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("room once one closed")
            .unwrap();
        assert!(limits.admit(b).is_some());
    }

    #[tokio::test]
    async fn request_memory_waits_until_bytes_are_given_back() {
        let memory = Arc::new(RequestMemory::new(1000));
        let held = memory.take(800).await;
        assert_eq!(memory.in_use(), 800);
        let waiting = tokio::spawn({
            let memory = memory.clone();
            async move { memory.take(400).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "400 more bytes than are left");
        drop(held);
        let second = waiting.await.unwrap();
        assert_eq!(memory.in_use(), 400);
        drop(second);
        // A frame larger than the pool still gets read, alone.
        let _all = memory.take(5000).await;
        assert_eq!(memory.in_use(), 1000);
    }
}
