//! The CLI on `s3://` URLs against a real S3-compatible server (moto) on
//! loopback: `pack` uploads, `inspect`, `verify`, `order` and `bench` read
//! the uploaded dataset and agree with the local one; with a cache the
//! second `bench` sends one request (the manifest).

#[path = "../../object/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::S3Server;

fn run(server: &S3Server, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringfeed"))
        .args(args)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("RINGFEED_CACHE_DIR")
        .env("AWS_ENDPOINT_URL", &server.endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn json(o: Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).unwrap()
}

#[test]
fn pack_inspect_verify_order_and_bench_on_s3_urls() {
    let server = S3Server::start();
    server.create_bucket("data");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..300u32 {
        let body: Vec<u8> = (0..(100 + i * 37 % 4000)).map(|b| (b ^ i) as u8).collect();
        std::fs::write(src.join(format!("{i:04}.bin")), body).unwrap();
    }
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let local = s(&dir.path().join("local"));
    let url = "s3://data/sets/small";
    let staging = s(dir.path());
    ok(run(&server, &["pack", "-q", "--shard-size", "200K", &s(&src), &local], &[]));
    ok(run(&server, &["pack", "-q", "--shard-size", "200K", "--staging", &staging, &s(&src), url], &[]));
    assert!(
        !dir.path().read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("staging"))
    );

    let (li, ri) = (
        json(run(&server, &["inspect", "--json", &local], &[])),
        json(run(&server, &["inspect", "--json", url], &[])),
    );
    assert_eq!(li["records"], 300);
    assert_eq!(li["shard_list"], ri["shard_list"]);
    let v = json(run(&server, &["verify", "--json", url], &[]));
    assert_eq!(v["clean"], true, "{v}");
    assert_eq!(v["records"], 300);
    let order = ["order", "--batch", "16", "--seed", "3"];
    let lo = ok(run(&server, &[&order[..], &[local.as_str()]].concat(), &[]));
    assert_eq!(lo, ok(run(&server, &[&order[..], &[url]].concat(), &[])));

    let bench = |path: &str, env: &[(&str, &str)]| {
        json(run(
            &server,
            &["bench", path, "--json", "--cores", "2", "--epochs", "2", "--shuffle", "block"],
            env,
        ))
    };
    let want = bench(&local, &[]);
    assert!(want["object_store"].is_null());
    let plain = bench(url, &[]);
    assert_eq!(plain["digest"], want["digest"]);
    assert!(plain["object_store"]["requests"].as_u64().unwrap() > 1, "{}", plain["object_store"]);
    let cache = s(&dir.path().join("cache"));
    let cold = bench(url, &[("RINGFEED_CACHE_DIR", &cache)]);
    assert_eq!(cold["digest"], want["digest"]);
    let warm = bench(url, &[("RINGFEED_CACHE_DIR", &cache)]);
    assert_eq!(warm["digest"], want["digest"]);
    assert_eq!(warm["object_store"]["requests"], 1, "{}", warm["object_store"]);
    // A damaged object store URL is a clear error, not a panic.
    let o = run(&server, &["inspect", "s3://data/sets/missing"], &[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a ringfeed dataset"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
