//! Uploading a packed dataset: every shard as a multipart upload (parts
//! in flight together), the manifest last. A manifest already at the
//! destination is deleted first, so an upload killed part-way leaves no
//! manifest there, and nothing that opens.

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use ringfeed_pack::{MANIFEST_FILE, Manifest};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::options::ObjectOptions;

/// Parts of one shard in flight at once.
const PARTS_IN_FLIGHT: usize = 8;

/// What an upload did.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct UploadReport {
    /// Shard objects written.
    pub shards: usize,
    /// Bytes uploaded (shards and manifest).
    pub bytes: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Uploads the pack dataset in local directory `dir` (checked first:
/// its manifest must load) to `url` (`s3://bucket/prefix`).
pub fn upload(dir: &Path, url: &str, opts: &ObjectOptions) -> Result<UploadReport> {
    let manifest = Manifest::load(dir)?;
    let (client, _runtime) = Client::new(url, opts)?;
    let started = Instant::now();
    client.block_on(async {
        let store = &client.writes;
        let manifest_key = client.path(MANIFEST_FILE);
        match store.delete(&manifest_key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err("delete", &client, MANIFEST_FILE, e)),
        }
        let mut bytes = 0;
        for shard in &manifest.shards {
            bytes += upload_file(&client, &dir.join(&shard.file), &shard.file).await?;
        }
        let text = std::fs::read(dir.join(MANIFEST_FILE))
            .map_err(|e| Error::io("read", dir.join(MANIFEST_FILE), e))?;
        bytes += text.len() as u64;
        store
            .put(&manifest_key, PutPayload::from(text))
            .await
            .map_err(|e| store_err("upload", &client, MANIFEST_FILE, e))?;
        Ok(UploadReport { shards: manifest.shards.len(), bytes, seconds: started.elapsed().as_secs_f64() })
    })
}

/// One file as a multipart upload; aborted on failure.
async fn upload_file(client: &Client, path: &Path, name: &str) -> Result<u64> {
    let store = &client.writes;
    let upload = store
        .put_multipart(&client.path(name))
        .await
        .map_err(|e| store_err("start upload of", client, name, e))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, client.opts.part_size);
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut buf = vec![0u8; client.opts.part_size];
    let mut total = 0u64;
    loop {
        // Local reads of one part at a time: the parts in flight bound the
        // memory (PARTS_IN_FLIGHT × part size).
        let n = match read_full(&mut file, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(Error::io("read", path, e));
            }
        };
        if n == 0 {
            break;
        }
        if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
            let _ = writer.abort().await;
            return Err(store_err("upload", client, name, e));
        }
        writer.write(&buf[..n]);
        total += n as u64;
    }
    writer.finish().await.map_err(|e| store_err("finish upload of", client, name, e))?;
    Ok(total)
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn store_err(op: &'static str, client: &Client, name: &str, e: object_store::Error) -> Error {
    Error::Store { op, location: client.describe(name), message: e.to_string() }
}
