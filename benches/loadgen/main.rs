//! `ringfeed-loadgen`: an HTTP/1.1 load generator for the inference
//! server benchmark, on hyper with keep-alive connections and a
//! single-threaded runtime (it shares the cores with the server it
//! measures, so it stays lean).
//!
//! Closed loop (`--concurrency N`): N connections, each sending its next
//! request as soon as the last is answered. Open loop (`--rate R`):
//! requests arrive at R per second (Poisson or uniform), each sent on any
//! idle connection or a new one up to `--max-connections`; latency counts
//! from the scheduled arrival, so a slow server is not hidden by a
//! waiting client (coordinated omission). Bounded by `--requests` and/or
//! `--duration-s`, after `--warmup` unrecorded requests.
//!
//! ```sh
//! cargo build --release -p ringfeed-benches --bin ringfeed-loadgen
//! target/release/ringfeed-loadgen --url http://127.0.0.1:8080/v1/classify \
//!     --body-dir images/ --concurrency 16 --duration-s 30 --warmup 100
//! ```
//!
//! Prints one JSON object: requests, 2xx, responses by status, transport
//! errors by kind, achieved rate, latency percentiles (all, 2xx, 503).

mod stats;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;

use crate::stats::{ErrorKind, Outcome, Stats};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "HTTP/1.1 load generator (closed or open loop) printing one JSON summary")]
struct Args {
    /// Target, `http://HOST:PORT/PATH`.
    #[arg(long)]
    url: Uri,
    /// HTTP method.
    #[arg(long, default_value = "POST")]
    method: Method,
    /// Send the files of this directory as bodies, in name order, cycling.
    #[arg(long, conflicts_with = "body")]
    body_dir: Option<PathBuf>,
    /// Send this file as every body.
    #[arg(long)]
    body: Option<PathBuf>,
    /// Closed loop: this many connections, each sending back to back.
    #[arg(long, conflicts_with = "rate")]
    concurrency: Option<usize>,
    /// Open loop: this many requests per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: inter-arrival times.
    #[arg(long, value_enum, default_value = "poisson")]
    arrivals: Arrivals,
    /// Open loop: connections at most (requests beyond wait for one).
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// Stop after this many recorded requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Stop after this many seconds of recording.
    #[arg(long)]
    duration_s: Option<f64>,
    /// Requests sent first and not recorded.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// A request unanswered for this long counts as a timeout.
    #[arg(long, default_value_t = 30.0)]
    timeout_s: f64,
    /// Open loop: seed of the Poisson arrivals.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Arrivals {
    /// Exponential inter-arrival times (a Poisson process).
    Poisson,
    /// Evenly spaced.
    Uniform,
}

/// What every request task shares.
struct Target {
    host: String,
    authority: String,
    path: String,
    method: Method,
    bodies: Vec<Bytes>,
    timeout: Duration,
}

impl Target {
    fn request(&self, n: u64) -> Request<Full<Bytes>> {
        let body = if self.bodies.is_empty() {
            Bytes::new()
        } else {
            self.bodies[(n % self.bodies.len() as u64) as usize].clone()
        };
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.path.parse().unwrap_or_else(|_| Uri::from_static("/"));
        if let Ok(host) = self.authority.parse() {
            req.headers_mut().insert(hyper::header::HOST, host);
        }
        req
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ErrorKind> {
        let stream = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(&self.host))
            .await
            .map_err(|_| ErrorKind::Connect)?
            .map_err(|_| ErrorKind::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|_| ErrorKind::Connect)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Sends request `n` on `conn`; its status, or what went wrong.
    async fn send(&self, conn: &mut SendRequest<Full<Bytes>>, n: u64) -> Outcome {
        let exchange = async {
            conn.ready().await?;
            let response = conn.send_request(self.request(n)).await?;
            let status = response.status().as_u16();
            // Read the body whole: the connection is reusable only then.
            response.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(status)) => Outcome::Status(status),
            Ok(Err(e)) => Outcome::Error(stats::classify(&e)),
            Err(_) => Outcome::Error(ErrorKind::Timeout),
        }
    }
}

/// When to stop, and which requests are warmup.
struct Budget {
    warmup: u64,
    requests: Option<u64>,
    duration: Option<Duration>,
    /// Set when the first recorded request is sent.
    started: Mutex<Option<Instant>>,
    next: std::sync::atomic::AtomicU64,
}

impl Budget {
    /// The next request's number and whether it is recorded, or `None`
    /// when the run is over.
    fn take(&self) -> Option<(u64, bool)> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n < self.warmup {
            return Some((n, false));
        }
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        let start = *started.get_or_insert_with(Instant::now);
        let over_count = self.requests.is_some_and(|r| n - self.warmup >= r);
        let over_time = self.duration.is_some_and(|d| start.elapsed() >= d);
        (!over_count && !over_time).then_some((n, true))
    }

    fn started(&self) -> Option<Instant> {
        *self.started.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Closed loop: one task per connection, back to back.
async fn closed_loop(target: Arc<Target>, budget: Arc<Budget>, stats: Arc<Mutex<Stats>>, connections: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (target, budget, stats) = (Arc::clone(&target), Arc::clone(&budget), Arc::clone(&stats));
        tasks.spawn(async move {
            let mut conn = None;
            while let Some((n, recorded)) = budget.take() {
                let sent = Instant::now();
                let outcome = match conn.as_mut() {
                    Some(c) => target.send(c, n).await,
                    None => match target.connect().await {
                        Ok(c) => {
                            stats.lock().unwrap_or_else(|e| e.into_inner()).connections += 1;
                            target.send(conn.insert(c), n).await
                        }
                        Err(kind) => Outcome::Error(kind),
                    },
                };
                // A failed or closed connection is replaced for the next one.
                if !matches!(outcome, Outcome::Status(_)) || conn.as_ref().is_some_and(|c| c.is_closed()) {
                    conn = None;
                }
                if recorded {
                    stats.lock().unwrap_or_else(|e| e.into_inner()).record(outcome, sent.elapsed());
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// A small xorshift generator: exponential inter-arrival times only.
fn uniform01(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    // 53 random bits in (0, 1].
    ((*state >> 11) + 1) as f64 / (1u64 << 53) as f64
}

/// Open loop: requests at `rate` per second on pooled connections.
async fn open_loop(
    target: Arc<Target>,
    budget: Arc<Budget>,
    stats: Arc<Mutex<Stats>>,
    rate: f64,
    arrivals: Arrivals,
    max_connections: usize,
    seed: u64,
) {
    let idle: Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>> = Arc::default();
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut tasks = tokio::task::JoinSet::new();
    let mut at = tokio::time::Instant::now();
    while let Some((n, recorded)) = budget.take() {
        let gap = match arrivals {
            Arrivals::Uniform => 1.0 / rate,
            Arrivals::Poisson => -uniform01(&mut rng).ln() / rate,
        };
        at += Duration::from_secs_f64(gap);
        tokio::time::sleep_until(at).await;
        let scheduled = Instant::now();
        let (target, stats, idle, slots) =
            (Arc::clone(&target), Arc::clone(&stats), Arc::clone(&idle), Arc::clone(&slots));
        tasks.spawn(async move {
            let Ok(_slot) = slots.acquire().await else { return };
            let pooled = idle.lock().unwrap_or_else(|e| e.into_inner()).pop().filter(|c| !c.is_closed());
            let conn = match pooled {
                Some(c) => Ok(c),
                None => {
                    let c = target.connect().await;
                    if c.is_ok() {
                        stats.lock().unwrap_or_else(|e| e.into_inner()).connections += 1;
                    }
                    c
                }
            };
            let outcome = match conn {
                Ok(mut c) => {
                    let outcome = target.send(&mut c, n).await;
                    if matches!(outcome, Outcome::Status(_)) && !c.is_closed() {
                        idle.lock().unwrap_or_else(|e| e.into_inner()).push(c);
                    }
                    outcome
                }
                Err(kind) => Outcome::Error(kind),
            };
            if recorded {
                stats.lock().unwrap_or_else(|e| e.into_inner()).record(outcome, scheduled.elapsed());
            }
        });
        // Reap finished tasks so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// The bodies: the files of `--body-dir` in name order, or `--body`, or none.
fn bodies(args: &Args) -> anyhow::Result<Vec<Bytes>> {
    if let Some(dir) = &args.body_dir {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        paths.retain(|p| p.is_file());
        paths.sort();
        if paths.is_empty() {
            bail!("--body-dir {}: no files", dir.display());
        }
        return paths
            .iter()
            .map(|p| std::fs::read(p).map(Bytes::from).with_context(|| format!("reading {}", p.display())))
            .collect();
    }
    if let Some(file) = &args.body {
        return Ok(vec![Bytes::from(
            std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
        )]);
    }
    Ok(Vec::new())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.url.scheme_str() != Some("http") {
        bail!("--url must be http://HOST:PORT/PATH (no TLS)");
    }
    let Some(authority) = args.url.authority() else { bail!("--url has no host") };
    let host = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
    if args.requests.is_none() && args.duration_s.is_none() {
        bail!("give --requests N and/or --duration-s S");
    }
    let duration = match args.duration_s {
        Some(s) if !(s.is_finite() && s > 0.0) => bail!("--duration-s must be a positive number of seconds"),
        d => d.map(Duration::from_secs_f64),
    };
    if !(args.timeout_s.is_finite() && args.timeout_s > 0.0) {
        bail!("--timeout-s must be a positive number of seconds");
    }
    let target = Arc::new(Target {
        host,
        authority: authority.to_string(),
        path: args.url.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        method: args.method.clone(),
        bodies: bodies(&args)?,
        timeout: Duration::from_secs_f64(args.timeout_s),
    });
    let budget = Arc::new(Budget {
        warmup: args.warmup,
        requests: args.requests,
        duration,
        started: Mutex::new(None),
        next: Default::default(),
    });
    let stats = Arc::new(Mutex::new(Stats::default()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mode = match (args.concurrency, args.rate) {
        (Some(c), None) if c > 0 => {
            runtime.block_on(closed_loop(target, Arc::clone(&budget), Arc::clone(&stats), c));
            serde_json::json!({ "mode": "closed", "concurrency": c })
        }
        (None, Some(r)) if r.is_finite() && r > 0.0 => {
            if args.max_connections == 0 {
                bail!("--max-connections must be positive");
            }
            let run = open_loop(
                target,
                Arc::clone(&budget),
                Arc::clone(&stats),
                r,
                args.arrivals,
                args.max_connections,
                args.seed,
            );
            runtime.block_on(run);
            serde_json::json!({ "mode": "open", "rate": r, "arrivals": format!("{:?}", args.arrivals).to_lowercase() })
        }
        _ => bail!("give either --concurrency N (N > 0) or --rate R (R > 0)"),
    };
    let elapsed = budget.started().map_or(Duration::ZERO, |s| s.elapsed());
    let stats = stats.lock().unwrap_or_else(|e| e.into_inner());
    let mut summary = stats.summary(elapsed);
    if let (Some(obj), serde_json::Value::Object(m)) = (summary.as_object_mut(), mode) {
        obj.extend(m);
    }
    println!("{summary}");
    Ok(())
}
