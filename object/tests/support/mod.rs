//! Test support: a real S3-compatible server on loopback (`moto_server`,
//! from PyPI's `moto[server]`) and a proxy in front of it that injects
//! faults. Shared by ringfeed-object's tests and the loader's (through
//! `#[path]`).
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A `moto_server` on a loopback port, killed on drop.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    /// Starts one and waits until it says it listens (its own log line,
    /// not a sleep). Credentials are moto's: any.
    pub fn start() -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto_server ({e}): install it with `pip install 'moto[server]'`")
            });
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut said = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Running on") {
                    let _ = tx.send(Ok(()));
                }
                said.push(line);
                if said.len() > 200 {
                    said.remove(0);
                }
            }
            let _ = tx.send(Err(said.join("\n")));
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(())) => {}
            Ok(Err(log)) => panic!("moto_server exited before listening:\n{log}"),
            Err(_) => panic!("moto_server did not start listening within 120 s"),
        }
        S3Server { child, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// Options for this server (moto takes any credentials), without the
    /// environment's `RINGFEED_*` settings.
    pub fn options(endpoint: &str) -> ringfeed_object::ObjectOptionsBuilder {
        ringfeed_object::ObjectOptions::builder().ignore_env().endpoint(endpoint).credentials("test", "test")
    }

    /// Creates `bucket` (moto does not check signatures).
    pub fn create_bucket(&self, bucket: &str) {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"), "{resp}");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server() -> String {
    std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_string())
}

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it and return the answer.
    Pass,
    /// Answer 503 SlowDown without forwarding.
    Unavailable,
    /// Forward it, then return only the head and half of the body, and
    /// close the connection.
    Truncate,
    /// Read the request, then close the connection without an answer.
    Cut,
    /// Wait this many milliseconds, then forward it.
    Delay(u64),
    /// Never answer (the client's timeout must fire).
    Hang,
}

/// Which fault the proxy applies to the next requests.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Cycle through the list, one entry per GET; other requests pass.
    CycleGets(Vec<Fault>),
    /// Every request, of any method.
    All(Fault),
    /// The first this many requests pass, then every one is answered 503.
    FailAfter(u64),
}

/// A proxy on a loopback port in front of `upstream`, injecting faults.
pub struct FaultProxy {
    pub endpoint: String,
    plan: Arc<Mutex<Plan>>,
    /// Requests seen, faults injected, and of those the ones that left
    /// the request without a good answer.
    counters: Arc<[AtomicU64; 3]>,
}

impl FaultProxy {
    pub fn start(upstream: &str, plan: Plan) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_string();
        let plan = Arc::new(Mutex::new(plan));
        let counters = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        let (p, c) = (plan.clone(), counters.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (p, c, up) = (p.clone(), c.clone(), upstream.clone());
                std::thread::spawn(move || serve(conn, &up, &p, &c));
            }
        });
        FaultProxy { endpoint, plan, counters }
    }

    pub fn set(&self, plan: Plan) {
        *self.plan.lock().unwrap() = plan;
    }

    /// Requests seen, faults injected, and of those the ones that left the
    /// request without a good answer (all but delays).
    pub fn counts(&self) -> (u64, u64, u64) {
        let [r, f, x] = &*self.counters;
        (r.load(Ordering::SeqCst), f.load(Ordering::SeqCst), x.load(Ordering::SeqCst))
    }
}

/// Reads one HTTP/1.1 request (head and Content-Length body); `None` at
/// the end of the connection.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<String>, Vec<u8>)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let request_line = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end().to_string();
        if h.is_empty() {
            break;
        }
        headers.push(h);
    }
    let len = headers
        .iter()
        .find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some((request_line, headers, body))
}

fn serve(conn: TcpStream, upstream: &str, plan: &Mutex<Plan>, counters: &[AtomicU64; 3]) {
    let [requests, faults, failed] = counters;
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    while let Some((request_line, headers, body)) = read_request(&mut reader) {
        let n = requests.fetch_add(1, Ordering::SeqCst);
        let fault = match &*plan.lock().unwrap() {
            Plan::All(f) => *f,
            Plan::CycleGets(list) if request_line.starts_with("GET ") && !list.is_empty() => {
                list[(n as usize) % list.len()]
            }
            Plan::CycleGets(_) => Fault::Pass,
            Plan::FailAfter(k) if n >= *k => Fault::Unavailable,
            Plan::FailAfter(_) => Fault::Pass,
        };
        if fault != Fault::Pass {
            faults.fetch_add(1, Ordering::SeqCst);
        }
        if !matches!(fault, Fault::Pass | Fault::Delay(_)) {
            failed.fetch_add(1, Ordering::SeqCst);
        }
        match fault {
            Fault::Unavailable => {
                let body = "<Error><Code>SlowDown</Code><Message>injected</Message></Error>";
                let _ = write!(
                    conn,
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                continue;
            }
            Fault::Cut => {
                let _ = conn.shutdown(Shutdown::Both);
                return;
            }
            Fault::Hang => {
                // Holds the connection until the client gives up on it.
                let mut sink = [0u8; 1];
                let _ = reader.read(&mut sink);
                return;
            }
            Fault::Delay(ms) => std::thread::sleep(Duration::from_millis(ms)),
            Fault::Pass | Fault::Truncate => {}
        }
        let Some(response) = forward(upstream, &request_line, &headers, &body) else {
            let _ = conn.shutdown(Shutdown::Both);
            return;
        };
        if fault == Fault::Truncate {
            let head_end =
                response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |p| p + 4);
            let keep = head_end + (response.len() - head_end) / 2;
            let _ = conn.write_all(&response[..keep]);
            let _ = conn.shutdown(Shutdown::Both);
            return;
        }
        if conn.write_all(&response).is_err() {
            return;
        }
    }
}

/// Sends the request upstream on a new connection (closed after the
/// answer) and returns the whole answer.
fn forward(upstream: &str, request_line: &str, headers: &[String], body: &[u8]) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).ok()?;
    let mut req = format!("{request_line}\r\n");
    for h in headers {
        let name = h.split(':').next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case("connection") {
            req.push_str(h);
            req.push_str("\r\n");
        }
    }
    req.push_str("Connection: close\r\n\r\n");
    up.write_all(req.as_bytes()).ok()?;
    up.write_all(body).ok()?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).ok()?;
    // The client keeps its connection to the proxy: say so, whatever
    // upstream said about its own.
    Some(keep_alive(response))
}

fn keep_alive(response: Vec<u8>) -> Vec<u8> {
    let Some(head_end) = response.windows(4).position(|w| w == b"\r\n\r\n") else { return response };
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let mut out = String::new();
    let mut has_len = false;
    for (i, line) in head.split("\r\n").enumerate() {
        let name = line.split(':').next().unwrap_or("").trim();
        if i > 0 && name.eq_ignore_ascii_case("connection") {
            continue;
        }
        has_len |=
            name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding");
        out.push_str(line);
        out.push_str("\r\n");
    }
    let body = &response[head_end + 4..];
    if !has_len {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut v = out.into_bytes();
    v.extend_from_slice(body);
    v
}

/// Files under `dir`, recursively, sorted (a cache's chunk files).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}
