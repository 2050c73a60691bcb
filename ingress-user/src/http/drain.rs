//! Graceful shutdown of one worker's client connections: a signal every connection
//! watches, and a wait until the last of them has finished.
//!
//! Our own rather than hyper-util's `GracefulShutdown`, whose connection trait is sealed:
//! the HTTP/1.1 fast path ([`h1`](super::h1)) is not a hyper connection, and it must be
//! told to finish just like one.

use std::{future::Future, pin::Pin};

use tokio::sync::watch;

/// The worker's side: starts draining and waits for the connections.
#[derive(Debug)]
pub struct Drain {
    tx: watch::Sender<bool>,
}

/// A connection's side: whether to finish, and a future for when to.
#[derive(Clone, Debug)]
pub struct Signal {
    rx: watch::Receiver<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            tx: watch::channel(false).0,
        }
    }
}

impl Drain {
    /// The signal for one more connection; the connection counts until it drops it.
    pub fn signal(&self) -> Signal {
        Signal {
            rx: self.tx.subscribe(),
        }
    }

    /// Connections still open.
    pub fn count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Tells every connection to finish, then waits until all have.
    pub async fn drained(self) {
        self.tx.send_replace(true);
        self.tx.closed().await;
    }
}

impl Signal {
    /// Whether the connection should finish its current request and close. One atomic
    /// load: cheap enough to ask after every response.
    pub fn is_draining(&self) -> bool {
        // `has_changed` fails only when the worker is gone, which is also a reason to stop.
        self.rx.has_changed().unwrap_or(true)
    }

    /// Completes when draining starts (or the worker is gone). Owned and boxed, so a
    /// connection can create it once and poll it across many waits.
    pub fn draining(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut rx = self.rx.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|draining| *draining).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_see_the_signal_and_drained_waits_for_them() {
        let drain = Drain::default();
        let signal = drain.signal();
        assert!(!signal.is_draining());
        assert_eq!(drain.count(), 1);
        let connection = tokio::spawn({
            let signal = signal.clone();
            async move {
                signal.draining().await;
                signal.is_draining()
            }
        });
        drop(signal);
        drain.drained().await;
        assert!(connection.await.unwrap(), "the connection saw the signal");
    }
}
