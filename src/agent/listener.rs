//! The HTTP listener under hostile clients: a total deadline for a request's headers (a
//! client trickling bytes is cut off, not kept alive by each byte), a bound on header bytes,
//! and a connection cap that, when reached, closes the oldest connection still waiting for a
//! request so that a new one (the next scrape) is admitted.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Limits of one listener (agent flags `--http-*`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request's headers must arrive whole within this.
    pub header_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Bytes of a request's head at most (hyper's read buffer; at least 8192).
    pub max_header_bytes: usize,
}

/// One open connection: whether it is waiting for a request, and how to close it.
struct Conn {
    waiting: Arc<AtomicBool>,
    close: Arc<Notify>,
}

/// The open connections, oldest first (by accept order).
#[derive(Default)]
struct Conns {
    next: u64,
    open: BTreeMap<u64, Conn>,
}

impl Conns {
    /// Makes room for one more: closes the oldest waiting connection when at the cap.
    /// `false` when every connection is busy with a request (the new one is refused).
    fn admit(&mut self, cap: usize) -> bool {
        if self.open.len() < cap {
            return true;
        }
        let oldest_waiting = self
            .open
            .iter()
            .find(|(_, c)| c.waiting.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match oldest_waiting.and_then(|id| self.open.remove(&id)) {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Raises the soft limit of open files to the hard one (as Go's runtime does), so that the
/// connection cap, not `EMFILE`, bounds the listeners.
pub fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        let raised = Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!("open file limit stays {:?}: {e}", l.current);
        }
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let conns = Arc::new(Mutex::new(Conns::default()));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // EMFILE and friends: pause instead of spinning.
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (id, waiting, close) = {
            let mut c = conns.lock().unwrap_or_else(|e| e.into_inner());
            if !c.admit(limits.max_connections) {
                continue; // dropping the stream closes it
            }
            let (waiting, close) = (Arc::new(AtomicBool::new(true)), Arc::new(Notify::new()));
            let id = c.next;
            c.next += 1;
            let conn = Conn {
                waiting: waiting.clone(),
                close: close.clone(),
            };
            c.open.insert(id, conn);
            (id, waiting, close)
        };
        let service = marking_service(router.clone(), waiting);
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conns = conns.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {}
                _ = close.notified() => {}
            }
            conns.lock().unwrap_or_else(|e| e.into_inner()).open.remove(&id);
        });
    }
}

/// The router, marking the connection busy while one of its requests is being answered.
fn marking_service(
    router: Router,
    waiting: Arc<AtomicBool>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        use tower_service::Service;
        let mut router = router.clone();
        let waiting = waiting.clone();
        waiting.store(false, Ordering::Relaxed);
        async move {
            let response = router.call(req.map(axum::body::Body::new)).await;
            waiting.store(true, Ordering::Relaxed);
            response
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(waiting: bool) -> Conn {
        Conn {
            waiting: Arc::new(AtomicBool::new(waiting)),
            close: Arc::new(Notify::new()),
        }
    }

    #[test]
    fn at_the_cap_the_oldest_waiting_connection_makes_room() {
        let mut c = Conns::default();
        c.open.insert(1, conn(false));
        c.open.insert(2, conn(true));
        c.open.insert(3, conn(true));
        assert!(c.admit(4), "below the cap");
        assert_eq!(c.open.len(), 3);
        assert!(c.admit(3));
        assert_eq!(c.open.keys().copied().collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn at_the_cap_with_every_connection_busy_the_new_one_is_refused() {
        let mut c = Conns::default();
        c.open.insert(1, conn(false));
        c.open.insert(2, conn(false));
        assert!(!c.admit(2));
        assert_eq!(c.open.len(), 2);
    }
}
