//! Node-wide bounds on what clients may hold: connections (in all and per address) and the
//! memory of requests being read. Kafka's names: max.connections, max.connections.per.ip,
//! queued.max.request.bytes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Open connections, by client address.
pub struct ConnectionLimits {
    max: usize,
    max_per_ip: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    /// Connections closed at once because a limit was reached, for the metrics.
    pub refused: AtomicU64,
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
            open: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// Counts a new connection from `ip`, or `None` when it would pass a limit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut open = self.open.lock().expect("connection limits lock");
        let total: usize = open.values().sum();
        let from_ip = open.get(&ip).copied().unwrap_or(0);
        if total >= self.max || from_ip >= self.max_per_ip {
            self.refused.fetch_add(1, Relaxed);
            return None;
        }
        *open.entry(ip).or_default() += 1;
        Some(Admitted {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().expect("connection limits lock");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
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

    #[test]
    fn connections_are_limited_in_all_and_per_address() {
        let limits = Arc::new(ConnectionLimits::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limits.admit(a).unwrap();
        let _second = limits.admit(a).unwrap();
        assert!(limits.admit(a).is_none(), "a third from one address");
        let _third = limits.admit(b).unwrap();
        assert!(limits.admit(b).is_none(), "a fourth in all");
        drop(first);
        assert!(limits.admit(b).is_some(), "room again once one closed");
        assert_eq!(limits.refused.load(Relaxed), 2);
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
