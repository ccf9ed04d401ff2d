//! Runs `stalewatch agent` for a test and reads its HTTP endpoints.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Agent {
    child: Child,
    pub port: u16,
    /// The loopback port of `/v1/findings` (not served on `port`).
    pub findings_port: u16,
    pub log: std::path::PathBuf,
}

/// The test agent's clock (`STALEWATCH_NOW`).
pub const AGENT_NOW: &str = "2026-11-29T00:00:00Z";

/// A loopback port nothing listens on now, for programs that cannot bind port 0 and say
/// which port they got (etcd, kube-apiserver): racy by nature, so its callers retry a start
/// that lost the port. The agent binds port 0 itself (`Agent::start`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The port the agent's log says a listener got (`serving <what> on 127.0.0.1:<port>`).
fn bound_port(log: &Path, what: &str) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter(|l| l.contains(&format!("serving {what}")))
        .find_map(|l| l.rsplit(" on 127.0.0.1:").next()?.trim().parse().ok())
}

impl Agent {
    pub fn start(sock: &Path, state: &Path, source: &str, extra: &[&str]) -> Agent {
        Agent::start_under(&[], sock, state, source, extra)
    }

    /// Starts the agent through `wrapper` (e.g. `setpriv …`), which execs it, and waits until
    /// it is ready.
    pub fn start_under(wrapper: &[&str], sock: &Path, state: &Path, source: &str, extra: &[&str]) -> Agent {
        let agent = Agent::serving(wrapper, sock, state, source, extra);
        agent.wait_for("ready", Duration::from_secs(120), |a| a.get("/readyz").0 == 200);
        agent
    }

    /// Starts the agent and returns once it serves HTTP, ready or not.
    pub fn serving(wrapper: &[&str], sock: &Path, state: &Path, source: &str, extra: &[&str]) -> Agent {
        std::fs::create_dir_all(state).unwrap();
        // Each agent of a state directory gets a log of its own.
        let n = (0..)
            .find(|n| !state.join(format!("agent-{n}.log")).exists())
            .unwrap();
        let log = state.join(format!("agent-{n}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(super::bin());
                c
            }
            None => Command::new(super::bin()),
        };
        let child = cmd
            .arg("agent")
            .arg("--containerd-address")
            .arg(sock)
            .arg("--state-dir")
            .arg(state)
            .arg("--db-dir")
            .arg(state.join("db"))
            .args([
                "--advisory-source",
                source,
                // Port 0: the agent binds, then logs the port it got; no port is handed over.
                "--listen",
                "127.0.0.1:0",
                "--findings-listen",
                "127.0.0.1:0",
                "--node-name",
                "test-node",
            ])
            .args(["--ecosystem", "Alpine", "--log-level", "debug"])
            .args(extra)
            .env("STALEWATCH_NOW", AGENT_NOW)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start the agent");
        let mut child = child;
        let deadline = Instant::now() + Duration::from_secs(30);
        let (port, findings_port) = loop {
            if let (Some(p), Some(f)) = (bound_port(&log, "/metrics"), bound_port(&log, "/v1/findings")) {
                break (p, f);
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the agent exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                // Never leave the agent behind a failed start.
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the agent did not say its ports: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Agent {
            child,
            port,
            findings_port,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (status, body) of a GET on the metrics port.
    pub fn get(&self, path: &str) -> (u16, String) {
        get(self.port, path)
    }

    /// (status, body) of `/v1/findings` on its own port.
    pub fn findings(&self) -> (u16, String) {
        get(self.findings_port, "/v1/findings")
    }

    /// The agent's metrics; a failed scrape is a test failure, never an empty body (an
    /// absence asserted on nothing would pass).
    pub fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "scraping /metrics failed: {body}");
        body
    }

    /// Waits until `cond` holds (panics with the last metrics and the log otherwise): a generous deadline, not a speed test (speed is measured in
    /// `bench/`); the time it took is printed (`--nocapture` shows it).
    pub fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&Agent) -> bool) {
        let started = Instant::now();
        let deadline = started + timeout;
        while Instant::now() < deadline {
            if cond(self) {
                eprintln!("agent: {what} after {:?}", started.elapsed());
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "agent: {what} not reached within {timeout:?}\n--- metrics ---\n{}\n--- log ---\n{}",
            self.metrics(),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// The agent's process id.
    /// Stops the agent with SIGTERM and waits for it.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let st = self.child.wait().unwrap();
        std::mem::forget(self);
        st
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one series: `name{labels…}` where every given label matches.
pub fn value(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, v) = l.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, r)) => (n, r.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        let ok = labels
            .iter()
            .all(|(k, val)| rest.split(',').any(|kv| kv == format!("{k}=\"{val}\"")));
        ok.then(|| v.parse().ok()).flatten()
    })
}

/// A pod's fixable vulnerabilities of unknown severity (what the Alpine OSV fixtures carry),
/// or -1 when the pod has no such series.
pub fn vulns(m: &str, pod: &str) -> f64 {
    let labels = [("pod", pod), ("severity", "unknown"), ("fixable", "true")];
    value(m, "stalewatch_container_vulnerabilities", &labels).unwrap_or(-1.0)
}

/// Every series of a metric whose labels include the given ones.
pub fn count(metrics: &str, name: &str, labels: &[(&str, &str)]) -> usize {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .count()
}

/// One request on a fresh connection, with a read deadline: (status line, headers, body).
pub fn request(port: u16, head: &str, deadline: Duration) -> std::io::Result<(String, String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(deadline))?;
    s.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let (status, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    Ok((status.to_string(), headers.to_ascii_lowercase(), body))
}

/// (status, body) of a GET on a loopback port; (0, "") when nothing listens.
pub fn get(port: u16, path: &str) -> (u16, String) {
    get_at("127.0.0.1", port, path)
}

/// (status, body) of a GET on `host:port` (a pod IP, say); (0, "") when nothing listens.
pub fn get_at(host: &str, port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect((host, port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}
