//! A CloudEvents receiver for tests (`cloudevents_receiver.py`: programmable statuses and
//! delays, every request recorded) and the independent check of what it received
//! (`check_cloudevents.py`: the CloudEvents Python SDK, the JSON Schemas, Python's hmac).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::{project, shared_data};

/// The test receiver (`cloudevents_receiver.py`), killed on drop.
pub struct Receiver {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Receiver {
    pub fn start(dir: &Path, statuses: &str, delay: f64) -> Receiver {
        Receiver::start_on(dir, 0, statuses, delay)
    }

    /// [`Receiver::start`] on a given port (0: any).
    pub fn start_on(dir: &Path, port: u16, statuses: &str, delay: f64) -> Receiver {
        Receiver::start_at(dir, "127.0.0.1", port, statuses, delay)
    }

    /// [`Receiver::start_on`] on a given address (a lab cluster's pods reach the host's).
    pub fn start_at(dir: &Path, host: &str, port: u16, statuses: &str, delay: f64) -> Receiver {
        let portfile = dir.join("port");
        let log = dir.join("requests.jsonl");
        std::fs::create_dir_all(dir).unwrap();
        let child = Command::new("python3")
            .arg(project().join("tests/common/cloudevents_receiver.py"))
            .args([portfile.to_str().unwrap(), log.to_str().unwrap()])
            .args(["--statuses", statuses, "--delay", &delay.to_string()])
            .args(["--port", &port.to_string(), "--host", host])
            .spawn()
            .unwrap();
        let port = bound_port(&portfile, "the receiver");
        Receiver {
            child,
            url: format!("http://{host}:{port}/hook"),
            log,
        }
    }

    /// The events received so far, checked by `check_cloudevents.py` (SDK, schemas, HMAC).
    pub fn events(&self, secret: Option<&Path>) -> Vec<serde_json::Value> {
        if !self.log.exists() {
            return Vec::new();
        }
        let mut cmd = Command::new("python3");
        cmd.arg(project().join("tests/common/check_cloudevents.py"))
            .arg(&self.log)
            .arg(shared_data().join("schemas/cloudevents/cloudevents.json"))
            .arg(project().join("docs/schemas/events"));
        if let Some(s) = secret {
            cmd.arg(s);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "check_cloudevents: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// The requests received so far, unchecked (JSON lines of headers, body, status).
    pub fn requests(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

/// The port a helper wrote to `portfile` once it listens (it writes the file whole, by a
/// rename), waited for up to 20 s.
pub fn bound_port(portfile: &Path, what: &str) -> u16 {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !portfile.exists() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(portfile).unwrap().trim().parse().unwrap()
}
