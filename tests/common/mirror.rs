//! A loopback HTTP/1.1 server serving a directory as an OSV mirror, with ETag and
//! If-None-Match, a request log, and per-path faults.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub enum Fault {
    Status(u16),
    /// Announce the full length, send this many bytes, close.
    CutBody(usize),
    /// Serve these bytes instead of the file.
    Body(Vec<u8>),
    /// Send this raw response head (status line and headers), then hold the connection open
    /// this long without a byte of body, then close: a stalled server, a lying Content-Length,
    /// a redirect (to itself: a loop).
    Head(String, std::time::Duration),
}

#[derive(Clone, Default)]
pub struct Mirror {
    pub port: u16,
    /// (path, status) of each request.
    pub log: Arc<Mutex<Vec<(String, u16)>>>,
    pub faults: Arc<Mutex<HashMap<String, Fault>>>,
    root: PathBuf,
}

impl Mirror {
    pub fn start(root: PathBuf) -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let m = Mirror {
            port: listener.local_addr().unwrap().port(),
            root,
            ..Default::default()
        };
        let server = m.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let server = server.clone();
                std::thread::spawn(move || server.serve(s));
            }
        });
        m
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_fault(&self, path: &str, fault: Option<Fault>) {
        let mut f = self.faults.lock().unwrap();
        match fault {
            Some(x) => f.insert(path.to_string(), x),
            None => f.remove(path),
        };
    }

    pub fn statuses(&self) -> Vec<u16> {
        self.log.lock().unwrap().iter().map(|x| x.1).collect()
    }

    fn serve(&self, mut s: TcpStream) {
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").replace("%20", " ");
        let mut if_none_match = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("if-none-match") {
                    if_none_match = Some(v.trim().to_string());
                }
            }
        }
        let fault = self.faults.lock().unwrap().get(&path).cloned();
        let file = self.root.join(path.trim_start_matches('/'));
        let (status, body, etag) = match fault {
            Some(Fault::Status(code)) => (code, b"injected failure".to_vec(), None),
            Some(Fault::Body(b)) => (200, b, None),
            Some(Fault::Head(head, hold)) => {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                self.log.lock().unwrap().push((path, status));
                let _ = s.write_all(head.as_bytes());
                let _ = s.flush();
                std::thread::sleep(hold);
                return;
            }
            Some(Fault::CutBody(n)) => {
                let body = std::fs::read(&file).unwrap_or_default();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                // Logged before the client can see an answer: once it has one, the log has it.
                self.log.lock().unwrap().push((path, 200));
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body[..n.min(body.len())]);
                return;
            }
            None => match std::fs::read(&file) {
                Ok(b) => {
                    let meta = std::fs::metadata(&file).unwrap();
                    let mtime = meta
                        .modified()
                        .unwrap()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos();
                    (200, b, Some(format!("\"{}-{mtime}\"", meta.len())))
                }
                Err(_) => (404, b"not found".to_vec(), None),
            },
        };
        let (status, body) = match (&etag, &if_none_match) {
            (Some(e), Some(inm)) if e == inm => (304, Vec::new()),
            _ => (status, body),
        };
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if let Some(e) = etag {
            head.push_str(&format!("ETag: {e}\r\n"));
        }
        head.push_str("\r\n");
        // Logged before the client can see an answer: once it has one, the log has it.
        self.log.lock().unwrap().push((path, status));
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(&body);
        let _ = s.flush();
        let _ = reader.read(&mut [0u8; 1]);
    }
}
