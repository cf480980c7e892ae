//! An HTTP inference server: axum in front, ringfeed-serve's dynamic
//! batcher in the middle, a TorchScript model behind.
//!
//! Request bodies (JPEG or PNG) are admitted into a bounded queue or
//! refused at once (503 + `Retry-After`), decoded on the batcher's own CPU
//! pool straight into a libtorch tensor, and the model runs once per batch
//! on that tensor, off tokio's worker threads.
//!
//! ```sh
//! cargo run --release -p ringfeed-examples --features tch --example serve -- \
//!     --model resnet18.pt --dataset /fast/imagenet-val --listen 127.0.0.1:8080
//! curl --data-binary @cat.jpg http://127.0.0.1:8080/v1/classify
//! ```
//!
//! Endpoints: `POST /v1/classify` (top-5 class ids and softmax scores),
//! `POST /v1/preprocess` (the same preprocessing and batching, no model:
//! the row's shape and CRC32C), `GET /v1/records/{key}` (a record of the
//! `--dataset` pack), `GET /healthz`, `GET /metrics` (Prometheus text).
//! SIGTERM or Ctrl-C stops accepting, answers every request in flight,
//! and exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use clap::Parser;
use ringfeed_serve::tch::{CModule, Kind, TchError};
use ringfeed_serve::{Batch, BatchData, Batcher, Error, Fault, Layout, Records, Spec, Timings};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

#[path = "serve/metrics.rs"]
mod metrics;

/// Command-line options.
#[derive(Debug, Clone, Parser)]
#[command(about = "HTTP inference server with dynamic batching (ringfeed-serve + tch)")]
pub(crate) struct Args {
    /// Address to listen on (port 0: any free port; the line "listening
    /// on ADDR" on stdout gives it).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// TorchScript model taking `[N, 3, crop, crop]` f32 and returning
    /// `[N, classes]` logits; without it `/v1/classify` answers 501.
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// A pack dataset whose records `/v1/records/{key}` serves.
    #[arg(long)]
    pub(crate) dataset: Option<PathBuf>,
    /// Rows per batch at most.
    #[arg(long, default_value_t = 32)]
    pub(crate) max_batch: usize,
    /// How long a batch waits for more requests after its first, in ms.
    #[arg(long, default_value_t = 5)]
    pub(crate) max_delay_ms: u64,
    /// Requests waiting for a batch at most (per endpoint); beyond, 503.
    #[arg(long, default_value_t = 256)]
    pub(crate) queue: usize,
    /// Batches decoding or in the model at once (per endpoint).
    #[arg(long, default_value_t = 2)]
    pub(crate) in_flight: usize,
    /// Decode threads per endpoint (default: the available cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Resize the shorter side to this (torchvision `Resize`).
    #[arg(long, default_value_t = 256)]
    pub(crate) resize: u32,
    /// Then center-crop to this square (`CenterCrop`): the model's input side.
    #[arg(long, default_value_t = 224)]
    pub(crate) crop: u32,
    /// Refuse requests (503) while the oldest waiting one has waited this
    /// long (latency-targeted admission; default: only `--queue` limits).
    #[arg(long)]
    pub(crate) max_queue_wait_ms: Option<u64>,
    /// libtorch's intra-op threads for the model (default: libtorch's
    /// own choice, all cores); fewer leaves cores to the decode threads.
    #[arg(long)]
    pub(crate) torch_threads: Option<i32>,
    /// Memory format of the batch the model gets. `channels-last`: rows
    /// are decoded as `[H, W, C]` and the model gets an `[N, 3, H, W]`
    /// view with channels-last strides, without a copy (what PyTorch's
    /// docs recommend for convolutional networks on CPU: MobileNetV3 ran
    /// 2.4x faster per image at batch 16 here). `contiguous`: `[N, 3, H, W]`.
    #[arg(long, value_enum, default_value_t = MemoryFormat::ChannelsLast)]
    pub(crate) memory_format: MemoryFormat,
}

/// How the model's input batch is laid out in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum MemoryFormat {
    /// `[N, 3, H, W]` in that order.
    Contiguous,
    /// `[N, 3, H, W]` indexed, `[N, H, W, 3]` in memory.
    ChannelsLast,
}

/// One request's answer from the model: its top classes, best first.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TopK {
    ids: Vec<i64>,
    scores: Vec<f32>,
}

/// One request's row, for `/v1/preprocess`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RowInfo {
    shape: [usize; 4],
    dtype: &'static str,
    crc32c: u32,
}

/// What the handlers share.
struct App {
    classify: Option<Batcher<TopK>>,
    preprocess: Batcher<RowInfo>,
    records: Option<Records>,
    http: metrics::HttpCounts,
}

/// CRC32C of a row's bytes (`f32` in native, i.e. little-endian, order):
/// what `/v1/preprocess` reports, so a client can compare rows.
pub(crate) fn row_crc32c(row: BatchData<'_>) -> u32 {
    match row {
        BatchData::U8(d) => crc32c::crc32c(d),
        BatchData::F32(d) => crc32c::crc32c(bytemuck::cast_slice(d)),
        _ => 0,
    }
}

/// The model on one batch: softmax over its logits, top 5 per row.
fn classify_batch(model: &CModule, batch: &Batch, format: MemoryFormat) -> Result<Vec<TopK>, TchError> {
    let _no_grad = ringfeed_serve::tch::no_grad_guard();
    let input = match format {
        // Rows are [H, W, C]: the same memory seen as [N, C, H, W].
        MemoryFormat::ChannelsLast => batch.tensor().f_permute([0, 3, 1, 2])?,
        MemoryFormat::Contiguous => batch.tensor().shallow_clone(),
    };
    let logits = model.forward_ts(&[input])?;
    let n = batch.len() as i64;
    let size = logits.size();
    if size.len() != 2 || size[0] != n || size[1] < 1 {
        return Err(TchError::Shape(format!(
            "the model returned {size:?} for a batch of {n}: want [{n}, classes]"
        )));
    }
    let k = size[1].min(5);
    let (scores, ids) = logits.f_softmax(-1, Kind::Float)?.f_topk(k, -1, true, true)?;
    let scores = Vec::<f32>::try_from(scores.flatten(0, -1))?;
    let ids = Vec::<i64>::try_from(ids.flatten(0, -1))?;
    let k = k as usize;
    Ok(scores
        .chunks(k)
        .zip(ids.chunks(k))
        .map(|(s, i)| TopK { ids: i.to_vec(), scores: s.to_vec() })
        .collect())
}

/// Runs the model once on blank batches of 1 and `max_batch` rows, so
/// that the first requests do not pay for libtorch's lazy set-up (and a
/// model that cannot take the input fails at start, not per request).
fn warm_up(model: &CModule, crop: u32, max_batch: usize, format: MemoryFormat) -> Result<(), TchError> {
    let _no_grad = ringfeed_serve::tch::no_grad_guard();
    let side = i64::from(crop);
    for n in [1, max_batch as i64] {
        let blank = match format {
            MemoryFormat::ChannelsLast => ringfeed_serve::tch::Tensor::f_zeros(
                [n, side, side, 3],
                (Kind::Float, ringfeed_serve::tch::Device::Cpu),
            )?
            .f_permute([0, 3, 1, 2])?,
            MemoryFormat::Contiguous => ringfeed_serve::tch::Tensor::f_zeros(
                [n, 3, side, side],
                (Kind::Float, ringfeed_serve::tch::Device::Cpu),
            )?,
        };
        let _logits = model.forward_ts(&[blank])?;
    }
    Ok(())
}

/// Starts the batchers (on the current runtime) and loads the model.
fn app(args: &Args) -> anyhow::Result<App> {
    let builder = |layout: Layout| -> anyhow::Result<ringfeed_serve::BatcherBuilder> {
        let spec = Spec::builder().center_crop(args.resize, args.crop).layout(layout).build()?;
        let builder = Batcher::builder(spec)
            .max_batch(args.max_batch)
            .max_delay(Duration::from_millis(args.max_delay_ms))
            .queue(args.queue)
            .in_flight(args.in_flight)
            .threads(
                args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            );
        Ok(match args.max_queue_wait_ms {
            Some(ms) => builder.max_queue_wait(Duration::from_millis(ms)),
            None => builder,
        })
    };
    if let Some(n) = args.torch_threads {
        anyhow::ensure!(n > 0, "--torch-threads must be positive");
        ringfeed_serve::tch::set_num_threads(n);
    }
    let classify = match &args.model {
        Some(path) => {
            let model =
                CModule::load(path).with_context(|| format!("loading the model {}", path.display()))?;
            let format = args.memory_format;
            warm_up(&model, args.crop, args.max_batch, format)
                .with_context(|| format!("running the model {} on a blank batch", path.display()))?;
            let model = Arc::new(model);
            let layout = match format {
                MemoryFormat::ChannelsLast => Layout::Nhwc,
                MemoryFormat::Contiguous => Layout::Nchw,
            };
            let batcher = builder(layout)?.tensor_storage(true).build(move |batch: Batch| {
                let model = Arc::clone(&model);
                // The forward pass is blocking CPU work: not on tokio's
                // workers. With `--in-flight 2` two batches' passes may run
                // at once, each on its own libtorch threads, which keeps
                // both cores busy (one pass at a time measured 52.0 req/s
                // against 56.7-58.5 with MobileNetV3 at 16 connections,
                // docs/BENCHMARKS.md "Serving under load").
                async move {
                    let top =
                        tokio::task::spawn_blocking(move || classify_batch(&model, &batch, format)).await??;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(top)
                }
            })?;
            Some(batcher)
        }
        None => None,
    };
    // No model reads these rows: plain (recycled) batch memory, which
    // `row()` reads in place.
    let preprocess = builder(Layout::Nchw)?.build(|batch: Batch| async move {
        let info = (0..batch.len())
            .filter_map(|i| batch.row(i))
            .map(|row| {
                let [_, c, h, w] = batch.shape();
                let dtype = if matches!(row, BatchData::U8(_)) { "u8" } else { "f32" };
                RowInfo { shape: [1, c, h, w], dtype, crc32c: row_crc32c(row) }
            })
            .collect();
        Ok::<_, std::convert::Infallible>(info)
    })?;
    let records = match &args.dataset {
        Some(dir) => {
            Some(Records::open(dir).with_context(|| format!("opening the dataset {}", dir.display()))?)
        }
        None => None,
    };
    Ok(App { classify, preprocess, records, http: metrics::HttpCounts::default() })
}

/// A JSON error body naming who is at fault.
fn error_json(status: StatusCode, fault: &str, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string(), "fault": fault }))).into_response()
}

/// A batcher error as HTTP: 503 + `Retry-After` when overloaded, the
/// error's own 4xx for the client's faults, 5xx for the server's.
fn error_response(e: &Error) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match e.fault() {
        Fault::Overloaded => {
            let mut r = error_json(StatusCode::SERVICE_UNAVAILABLE, "overloaded", e);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Fault::Client => error_json(status, "client", e),
        // Shutting down is a 503; everything else the server's is a 500.
        _ if status == StatusCode::SERVICE_UNAVAILABLE => error_json(status, "server", e),
        _ => error_json(StatusCode::INTERNAL_SERVER_ERROR, "server", e),
    }
}

/// A body the extractor refused (too large, unreadable).
fn body_error(r: &BytesRejection) -> Response {
    error_json(r.status(), "client", r.body_text())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn timings_json(t: &Timings) -> serde_json::Value {
    json!({
        "queue_ms": millis(t.queue),
        "decode_ms": millis(t.decode),
        "model_ms": millis(t.model),
        "batch_size": t.batch_size,
    })
}

async fn classify(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let Some(batcher) = &app.classify else {
        return error_json(
            StatusCode::NOT_IMPLEMENTED,
            "server",
            "no model loaded: start the server with --model PATH",
        );
    };
    let body = match body {
        Ok(b) => b,
        Err(r) => return body_error(&r),
    };
    match batcher.submit(body).await {
        Ok(r) => Json(json!({
            "classes": r.output.ids,
            "scores": r.output.scores,
            "timings": timings_json(&r.timings),
        }))
        .into_response(),
        Err(e) => error_response(&e),
    }
}

async fn preprocess(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return body_error(&r),
    };
    match app.preprocess.submit(body).await {
        Ok(r) => Json(json!({
            "shape": r.output.shape,
            "dtype": r.output.dtype,
            "crc32c": r.output.crc32c,
            "timings": timings_json(&r.timings),
        }))
        .into_response(),
        Err(e) => error_response(&e),
    }
}

/// The record whose key is `key`: its payload as the body, its index and
/// label as headers.
async fn record(State(app): State<Arc<App>>, UrlPath(key): UrlPath<String>) -> Response {
    let Some(records) = &app.records else {
        return error_json(
            StatusCode::NOT_FOUND,
            "client",
            "no dataset: start the server with --dataset DIR",
        );
    };
    match records.get_by_key(&key).await {
        Ok(r) => {
            let mut response = Response::new(axum::body::Body::from(r.payload().clone()));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            headers.insert("x-record-index", HeaderValue::from(r.index()));
            if let Some(label) = r.label() {
                headers.insert("x-record-label", HeaderValue::from(label));
            }
            response
        }
        Err(e) => error_response(&e),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn prometheus(State(app): State<Arc<App>>) -> Response {
    let mut batchers = vec![("preprocess", app.preprocess.metrics())];
    if let Some(b) = &app.classify {
        batchers.push(("classify", b.metrics()));
    }
    let text = metrics::render(&batchers, &app.http);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Counts every routed response by route and status.
async fn count_responses(
    State(app): State<Arc<App>>,
    route: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = route.map_or_else(|| "unknown".to_owned(), |r| r.as_str().to_owned());
    let response = next.run(request).await;
    app.http.record(route, response.status().as_u16());
    response
}

fn router(app: Arc<App>, max_body: usize) -> Router {
    Router::new()
        .route("/v1/classify", post(classify))
        .route("/v1/preprocess", post(preprocess))
        .route("/v1/records/{key}", get(record))
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&app), count_responses))
        // The batcher refuses larger bodies too, but only once read.
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

/// Runs the server until SIGTERM or Ctrl-C, then finishes every request in
/// flight and returns.
pub(crate) async fn serve(args: Args) -> anyhow::Result<()> {
    // Before "listening on": a SIGTERM right after it must find the handler.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let app = Arc::new(app(&args)?);
    let max_body = app.preprocess.config().max_request_bytes;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!("listening on {}", listener.local_addr()?);
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("shutting down: finishing the requests in flight");
    };
    axum::serve(listener, router(Arc::clone(&app), max_body)).with_graceful_shutdown(stop).await?;
    Ok(())
}

/// Parses `args` and serves on a new multi-threaded runtime.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

fn main() -> anyhow::Result<()> {
    run(Args::parse())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_is_a_503_with_retry_after_and_bad_images_are_the_clients() {
        let r = error_response(&Error::Overloaded { queued: 4 });
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = error_response(&Error::TooLarge { len: 10, max: 5 });
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let r = error_response(&Error::Internal("bug".into()));
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn the_row_checksum_is_over_little_endian_bytes() {
        let row = [1.0f32, -2.5];
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(row_crc32c(BatchData::F32(&row)), crc32c::crc32c(&bytes));
    }
}
