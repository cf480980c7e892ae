//! The inference server example as a process, over real HTTP: classify,
//! preprocess (its row checksum against the library's own
//! `Preprocessor`), bad input, health, metrics, overload (503 +
//! `Retry-After` and nothing else) and SIGTERM with requests in flight
//! (each answered, exit 0).
//!
//! The server runs in a child process, this test binary started again on
//! its ignored `server_process` test, which runs the example's code
//! (included below, as `train_resnet.rs`'s test does): `cargo test --test
//! serve` builds no example binary, and SIGTERM needs a process of its own.
#![cfg(feature = "tch")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use clap::Parser;
use ringfeed_serve::tch::{CModule, Device, Kind, Tensor};
use ringfeed_serve::{OutputMut, Preprocessor, Spec};

#[path = "../serve.rs"]
#[allow(dead_code)]
mod example;

/// Where the child finds its command line (fields separated by `\x1f`).
const ARGS_VAR: &str = "RINGFEED_SERVE_TEST_ARGS";

#[test]
#[ignore = "the server process of the other tests, which start it themselves"]
fn server_process() {
    let Ok(args) = std::env::var(ARGS_VAR) else { return };
    let argv = std::iter::once("serve").chain(args.split('\u{1f}'));
    example::run(example::Args::try_parse_from(argv).unwrap()).unwrap();
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../decode/tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A tiny classifier traced in Rust: global average pool, then a linear
/// layer to 10 classes.
fn tiny_model(path: &Path) {
    let w = Tensor::randn([3, 10], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([10], (Kind::Float, Device::Cpu));
    let mut forward =
        |x: &[Tensor]| vec![x[0].mean_dim([2i64, 3].as_slice(), false, Kind::Float).matmul(&w) + &b];
    let example = Tensor::zeros([2, 3, 224, 224], (Kind::Float, Device::Cpu));
    let model = CModule::create_by_tracing("Tiny", "forward", &[example], &mut forward).unwrap();
    model.save(path).unwrap();
}

/// A running server; killed if a test fails before it exits.
struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let model = dir.path().join("tiny.pt");
        tiny_model(&model);
        let mut args = vec!["--listen", "127.0.0.1:0", "--threads", "2", "--model", model.to_str().unwrap()];
        args.extend(extra);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["server_process", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(ARGS_VAR, args.join("\u{1f}"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("the server exited before listening").unwrap();
            // The harness prints "test server_process ... " before it.
            if let Some((_, addr)) = line.split_once("listening on ") {
                break addr.parse().unwrap();
            }
        };
        // Keep reading so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server { child, addr, _dir: dir }
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        request(self.addr, method, path, body).unwrap()
    }

    /// SIGTERM; the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`, so
/// the body ends where the stream does).
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Reply { status, headers, body: raw[split + 4..].to_vec() })
}

/// The value of a metric line `name{labels} value` in an exposition.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn classify_preprocess_errors_health_and_metrics() {
    let server = Server::start(&[]);
    let image = fixture("rgb.jpg");

    let r = server.request("POST", "/v1/classify", &image);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let classes = v["classes"].as_array().unwrap();
    let scores: Vec<f64> = v["scores"].as_array().unwrap().iter().map(|s| s.as_f64().unwrap()).collect();
    assert_eq!((classes.len(), scores.len()), (5, 5), "{v}");
    assert!(classes.iter().all(|c| (0..10).contains(&c.as_i64().unwrap())), "{v}");
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "scores in descending order: {scores:?}");
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)) && scores.iter().sum::<f64>() <= 1.0 + 1e-5);
    // The server hands the model a channels-last view of [H, W, C] rows
    // (its default): the answer must be the model's on the library's
    // contiguous [C, H, W] row.
    let spec = Spec::builder().center_crop(256, 224).build().unwrap();
    let mut row = vec![0f32; spec.row_len()];
    Preprocessor::new(&spec).unwrap().run(&image, OutputMut::F32(&mut row)).unwrap();
    let model = CModule::load(server._dir.path().join("tiny.pt")).unwrap();
    let logits = model.forward_ts(&[Tensor::from_slice(&row).view([1, 3, 224, 224])]).unwrap();
    let (want_scores, want_ids) = logits.softmax(-1, Kind::Float).topk(5, -1, true, true);
    let want_ids = Vec::<i64>::try_from(want_ids.flatten(0, -1)).unwrap();
    let want_scores = Vec::<f32>::try_from(want_scores.flatten(0, -1)).unwrap();
    let got_ids: Vec<i64> = classes.iter().map(|c| c.as_i64().unwrap()).collect();
    assert_eq!(got_ids, want_ids, "{v}");
    for (got, want) in scores.iter().zip(&want_scores) {
        assert!((got - f64::from(*want)).abs() < 1e-5, "{scores:?} against {want_scores:?}");
    }

    let r = server.request("POST", "/v1/preprocess", &image);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["shape"], serde_json::json!([1, 3, 224, 224]));
    assert_eq!(v["dtype"], "f32");
    let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(
        v["crc32c"].as_u64(),
        Some(u64::from(crc32c::crc32c(&bytes))),
        "the server's row is the library's"
    );

    for path in ["/v1/classify", "/v1/preprocess"] {
        let r = server.request("POST", path, b"GIF89a, not a JPEG");
        assert!((400..500).contains(&r.status), "{path}: {} {}", r.status, r.text());
        assert_eq!(r.json()["fault"], "client", "{path}");
        assert!(r.json()["error"].as_str().is_some_and(|e| !e.is_empty()));
    }

    let r = server.request("GET", "/healthz", b"");
    assert_eq!(r.status, 200);

    let r = server.request("GET", "/metrics", b"");
    assert_eq!(r.status, 200);
    let text = r.text();
    for (series, want) in [
        ("ringfeed_requests_total{batcher=\"classify\",outcome=\"completed\"}", 1.0),
        ("ringfeed_requests_total{batcher=\"classify\",outcome=\"failed_client\"}", 1.0),
        ("ringfeed_requests_total{batcher=\"preprocess\",outcome=\"completed\"}", 1.0),
        ("ringfeed_requests_total{batcher=\"classify\",outcome=\"rejected\"}", 0.0),
        ("ringfeed_queue_depth{batcher=\"classify\"}", 0.0),
        ("ringfeed_batch_size_count{batcher=\"classify\"}", 1.0),
        ("ringfeed_stage_duration_seconds_count{batcher=\"classify\",stage=\"model\"}", 1.0),
        ("ringfeed_http_responses_total{route=\"/v1/classify\",status=\"200\"}", 1.0),
        ("ringfeed_http_responses_total{route=\"/healthz\",status=\"200\"}", 1.0),
    ] {
        assert_eq!(metric(&text, series), Some(want), "{series} in\n{text}");
    }
    assert!(server.terminate().success());
}

#[test]
fn overload_answers_503_with_retry_after_at_once_and_nothing_else() {
    let server = Server::start(&["--queue", "1", "--max-batch", "1", "--in-flight", "1"]);
    let image = Arc::new(fixture("big.jpg"));
    let n = 24;
    let start = Arc::new(Barrier::new(n));
    let replies: Vec<_> = (0..n)
        .map(|_| {
            let (image, start, addr) = (Arc::clone(&image), Arc::clone(&start), server.addr);
            std::thread::spawn(move || {
                start.wait();
                request(addr, "POST", "/v1/classify", &image).unwrap()
            })
        })
        .collect();
    let replies: Vec<Reply> = replies.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(
        ok + refused.len(),
        n,
        "only 200s and 503s: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(ok >= 1 && !refused.is_empty(), "{ok} served, {} refused", refused.len());
    for r in refused {
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.json()["fault"], "overloaded");
    }
    let text = server.request("GET", "/metrics", b"").text();
    let rejected = metric(&text, "ringfeed_requests_total{batcher=\"classify\",outcome=\"rejected\"}");
    assert_eq!(rejected, Some((n - ok) as f64));
    assert!(server.terminate().success());
}

#[test]
fn sigterm_answers_every_request_in_flight_then_exits_zero() {
    // A batch that only closes when full or after 3 s: the requests are
    // surely in flight when the signal comes.
    let server = Server::start(&["--max-batch", "64", "--max-delay-ms", "3000"]);
    let image = Arc::new(fixture("rgb.jpg"));
    let n = 6;
    let replies: Vec<_> = (0..n)
        .map(|_| {
            let (image, addr) = (Arc::clone(&image), server.addr);
            std::thread::spawn(move || request(addr, "POST", "/v1/classify", &image).unwrap())
        })
        .collect();
    // Wait (polling the server, not the clock) until all are admitted.
    let series = "ringfeed_requests_total{batcher=\"classify\",outcome=\"submitted\"}";
    while metric(&server.request("GET", "/metrics", b"").text(), series) != Some(n as f64) {
        std::thread::yield_now();
    }
    let status = server.terminate();
    for t in replies {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["timings"]["batch_size"], n, "all in the one batch");
    }
    assert!(status.success(), "{status:?}");
}

#[test]
fn records_are_served_by_key_and_unknown_keys_are_404() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = dir.path().join("data");
    let schema = ringfeed::Schema { payload: ringfeed::Payload::Bytes, labels: true, keys: true };
    let mut w = ringfeed::PackWriter::builder(&data).schema(schema).build().unwrap();
    for i in 0..5u8 {
        w.push(&[i; 100], i64::from(i) * 10, Some(&format!("doc-{i}"))).unwrap();
    }
    w.finish().unwrap();
    let server = Server::start(&["--dataset", data.to_str().unwrap()]);

    let r = server.request("GET", "/v1/records/doc-3", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, [3u8; 100]);
    assert_eq!(r.header("x-record-index"), Some("3"));
    assert_eq!(r.header("x-record-label"), Some("30"));

    let r = server.request("GET", "/v1/records/no-such-doc", b"");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["fault"], "client");
    assert!(server.terminate().success());
}
