//! The agent's listener under hostile clients (issue 15): slowloris connections past the
//! connection cap do not keep a scrape out, a trickling client is cut off by the total header
//! deadline, oversized heads and other methods are refused, and gzip is what it says.
//! No containerd is needed: the agent serves while it retries the connection.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::agent::{request, Agent};

fn start(dir: &std::path::Path, header_timeout: &str) -> Agent {
    let sock = dir.join("no-containerd.sock");
    let extra = [
        "--http-header-timeout",
        header_timeout,
        "--http-max-connections",
        "1024",
    ];
    Agent::serving(
        &[],
        &sock,
        &dir.join("state"),
        dir.join("mirror").to_str().unwrap(),
        &extra,
    )
}

fn get(port: u16, path: &str, extra: &str) -> (String, String, Vec<u8>) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n");
    request(port, &head, Duration::from_secs(10)).unwrap()
}

/// This test process needs more than the usual 1024 descriptors for its 2000 sockets.
fn raise_own_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: l.maximum,
        maximum: l.maximum,
    };
    setrlimit(Resource::Nofile, raised).unwrap();
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(
        now > 2200,
        "RLIMIT_NOFILE hard limit {now} is too low for 2000 connections"
    );
}

#[test]
fn slowloris_connections_past_the_cap_do_not_keep_a_scrape_out() {
    raise_own_file_limit();
    let dir = tempfile::tempdir().unwrap();
    // A deadline longer than the test: only the cap's eviction can make room.
    let agent = start(dir.path(), "120s");
    let port = agent.port;
    // 2000 connections, each stuck in the middle of its headers: twice the cap.
    let mut loris = Vec::new();
    for _ in 0..2000 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            .unwrap();
        loris.push(s);
    }
    let started = Instant::now();
    let head = "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let (status, _, body) = request(port, head, Duration::from_secs(1)).expect("scrape within 1 s");
    let took = started.elapsed();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(String::from_utf8_lossy(&body).contains("stalewatch_layers_read_total"));
    assert!(took < Duration::from_secs(1), "scrape took {took:?}");
    // The oldest were closed to make room, not by a deadline: reading one
    // ends (EOF or reset) at once instead of waiting.
    let mut first = loris.remove(0);
    first.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 64];
    let read = first.read(&mut buf);
    let waiting = matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    assert!(
        !waiting,
        "the oldest slowloris connection is still open: {read:?}"
    );
    drop(loris);
}

#[test]
fn a_client_trickling_its_headers_is_cut_off_at_the_total_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(dir.path(), "3s");
    let mut s = TcpStream::connect(("127.0.0.1", agent.port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .unwrap();
    let started = Instant::now();
    // One byte every 200 ms: each byte would renew a per-read timeout, not a total deadline.
    let cut = loop {
        std::thread::sleep(Duration::from_millis(200));
        if s.write_all(b"a").is_err() || started.elapsed() > Duration::from_secs(15) {
            break started.elapsed();
        }
    };
    assert!(
        cut < Duration::from_secs(8),
        "still open after {cut:?} (deadline 3 s)"
    );
}

#[test]
fn oversized_heads_other_methods_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(dir.path(), "3s");
    let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
    assert_eq!(
        get(agent.port, "/healthz", &big).0,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let post = "POST /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    let (status, _, _) = request(agent.port, post, Duration::from_secs(10)).unwrap();
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    let (status, headers, gz) = get(agent.port, "/metrics", "Accept-Encoding: gzip\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("content-encoding: gzip"), "{headers}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        text.contains("# TYPE stalewatch_layers_read_total counter"),
        "{text}"
    );
    let (_, headers, plain) = get(agent.port, "/metrics", "Accept-Encoding: gzip;q=0\r\n");
    assert!(!headers.contains("content-encoding"), "{headers}");
    assert!(String::from_utf8_lossy(&plain).contains("# TYPE stalewatch_layers_read_total counter"));
}
