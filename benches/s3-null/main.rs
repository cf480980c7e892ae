//! `s3-null-server ROOT PORT`: a minimal read-only S3 endpoint for
//! benchmarks. GET (with `Range`) and HEAD of the files under ROOT
//! (`/bucket/key` is `ROOT/bucket/key`, the layout s3s-fs stores objects
//! in), on one thread, checking no signature: a benchmark on one machine
//! then measures the client's cost, not a server's (real stores run on
//! other machines). benches/s3_bench.py runs it next to s3s-fs, a real
//! S3 implementation.

use std::convert::Infallible;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(root), Some(port)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: s3-null-server ROOT PORT");
    };
    let root: &'static Path = Box::leak(PathBuf::from(root).canonicalize()?.into_boxed_path());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
        println!("listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(
                        move |req| async move { Ok::<_, Infallible>(answer(root, &req)) },
                    );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    })
}

fn answer(root: &Path, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let respond = |status: StatusCode, body: Vec<u8>, extra: &[(&str, String)]| {
        let mut r = Response::builder().status(status).header("Content-Length", body.len().to_string());
        for (k, v) in extra {
            r = r.header(*k, v);
        }
        r.body(Full::new(Bytes::from(body))).expect("valid response")
    };
    let path = root.join(req.uri().path().trim_start_matches('/'));
    let file = match path.canonicalize() {
        Ok(p) if p.starts_with(root) => std::fs::File::open(p),
        _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
    };
    let Ok(file) = file else {
        return respond(StatusCode::NOT_FOUND, b"<Error><Code>NoSuchKey</Code></Error>".to_vec(), &[]);
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let common =
        [("ETag", format!("\"{size:x}\"")), ("Last-Modified", "Sun, 29 Nov 2026 00:00:00 GMT".into())];
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok().unwrap_or(u64::MAX))));
    let (status, first, last) = match range {
        Some((a, b)) if a < size => (StatusCode::PARTIAL_CONTENT, a, b.min(size - 1)),
        Some(_) => return respond(StatusCode::RANGE_NOT_SATISFIABLE, Vec::new(), &[]),
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
    };
    let len = if size == 0 { 0 } else { last - first + 1 };
    if req.method() == hyper::Method::HEAD {
        let mut r = respond(StatusCode::OK, Vec::new(), &common);
        r.headers_mut().insert("Content-Length", size.into());
        return r;
    }
    let mut body = vec![0u8; len as usize];
    if file.read_exact_at(&mut body, first).is_err() {
        return respond(StatusCode::INTERNAL_SERVER_ERROR, Vec::new(), &[]);
    }
    let mut extra = common.to_vec();
    if status == StatusCode::PARTIAL_CONTENT {
        extra.push(("Content-Range", format!("bytes {first}-{last}/{size}")));
    }
    respond(status, body, &extra)
}
