#!/usr/bin/env python3
"""Datasets in S3-compatible storage against the same dataset on local
disk, in one run, on loopback: epoch throughput with no cache, with the
local chunk cache cold (first epoch after emptying it) and warm (the next
run), and the requests each epoch sent.

usage: benches/s3_bench.py [--rounds 3] [--out FILE.json]

  images  the shared 5,000 photos, `ringfeed bench --pipeline train`
          (RandomResizedCrop 224 + flip, f32), global shuffle, 1 epoch
  texts   the shared 50,000 texts (~5 KB), `--pipeline raw`, block
          shuffle (runs of 64 records, windows of 1,024), 10 epochs

Two servers, both on this machine's two cores (there is no other machine):
  s3s-fs  a real S3 implementation (crates.io s3s-fs 0.14.1, objects as
          files, signatures checked); it reads files in 4 KiB pieces
          through tokio::fs, ~150 MB/s here, and its CPU competes with
          the loader's decoding
  null    benches/s3-null: ranged GETs of the same files, one thread, no
          signature check: what the client costs when the store is cheap,
          as a remote store is to the machine reading it
The datasets are uploaded once with `ringfeed pack SRC s3://bench/...`
(to s3s-fs, whose root the null server serves). Page cache warm for the
local files and the servers' files alike; medians of alternating rounds.
Goals (issue #19): images >= 0.8x local, texts block >= 0.5x local, warm
cache >= 0.95x local.
"""
import argparse, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
bench = Path(os.environ.get("BENCH_DATA", os.path.expanduser("~/.cache/ringfeed-bench")))
work = bench / "s3-bench"
ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--out", default=str(bench / "s3_bench.json"))
a = ap.parse_args()

target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
cli = target / "release" / "ringfeed"
null_server = target / "release" / "s3-null-server"
s3s = work / "s3s" / "bin" / "s3s-fs"


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc):
    """Until the port accepts a connection (the server is up), or the
    server exits."""
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def main():
    sh(["cargo", "build", "--release", "-q", "--locked", "-p", "ringfeed-cli", "-p", "ringfeed-benches",
        "--bin", "ringfeed", "--bin", "s3-null-server"], cwd=root)
    if not s3s.exists():
        sh(["cargo", "install", "-q", "--locked", "s3s-fs@0.14.1", "--features", "binary", "--root", str(s3s.parent.parent)])
    photos, texts = bench / "imagefolder" / "train", bench / "text"
    if not photos.is_dir() or not texts.is_dir():
        sys.exit(f"no benchmark data in {bench}: run ../shared/datasets/make.sh")
    fsroot = work / "fsroot"
    (fsroot / "bench").mkdir(parents=True, exist_ok=True)
    s3s_port, null_port = free_port(), free_port()
    servers = [
        subprocess.Popen([str(s3s), "--host", "127.0.0.1", "--port", str(s3s_port), "--access-key", "bench",
                          "--secret-key", "bench", str(fsroot)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([str(null_server), str(fsroot), str(null_port)], stdout=subprocess.DEVNULL),
    ]
    try:
        wait_listening(s3s_port, servers[0])
        wait_listening(null_port, servers[1])
        run(photos, texts, {"s3s-fs": s3s_port, "null": null_port})
    finally:
        for p in servers:
            p.kill()
            p.wait()


def env_for(port, cache=None):
    env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench",
               AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1")
    env.pop("RINGFEED_CACHE_DIR", None)
    if cache:
        env["RINGFEED_CACHE_DIR"] = str(cache)
    return env


def run(photos, texts, ports):
    sets = {
        "images": dict(src=photos, args=["--pipeline", "train", "--epochs", "1"]),
        "texts": dict(src=texts, args=["--pipeline", "raw", "--shuffle", "block", "--epochs", "10"]),
    }
    for name, s in sets.items():
        local = work / f"{name}.rf"
        if not (local / "manifest.json").exists():
            sh([str(cli), "pack", "-q", str(s["src"]), str(local)])
        if not (work / "fsroot" / "bench" / name / "manifest.json").exists():
            sh([str(cli), "pack", "-q", "--staging", str(work), str(s["src"]), f"s3://bench/{name}"],
               env=env_for(ports["s3s-fs"]))
    cases = ["local"] + [f"{srv} {mode}" for srv in ports for mode in ("no cache", "cache cold", "cache warm")]
    results = {n: {c: [] for c in cases} for n in sets}
    digests = {}
    for r in range(a.rounds + 1):
        for name, s in sets.items():
            for case in cases:
                if r == 0 and "warm" in case:
                    continue
                # Round 0 checks the batches (digests) and is not timed.
                check = r == 0
                args = [str(cli), "bench", "--json", *s["args"], *([] if check else ["--no-digest"])]
                if case == "local":
                    out = bench_json(args + [str(work / f"{name}.rf")], os.environ)
                else:
                    srv, mode = case.split(" ", 1)
                    cache = work / f"cache-{srv}-{name}"
                    if mode == "cache cold":
                        shutil.rmtree(cache, ignore_errors=True)
                    env = env_for(ports[srv], None if mode == "no cache" else cache)
                    out = bench_json(args + [f"s3://bench/{name}"], env)
                if check:
                    digests.setdefault(name, {})[case] = out["digest"]
                    continue
                results[name][case].append(out)
                store = out.get("object_store") or {}
                print(f"round {r} {name:6} {case:18} {out['samples_per_sec']:9.0f}/s  requests {store.get('requests', 0):6}",
                      flush=True)
    for name, d in digests.items():
        if len(set(d.values())) != 1:
            sys.exit(f"{name}: batches differ between local and S3: {d}")
    report(results)


def bench_json(args, env):
    p = subprocess.run(args, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{p.stderr}")
    return json.loads(p.stdout)


def report(results):
    summary = {}
    lines = ["| dataset | case | samples/s | × local | requests / epoch | MB received / epoch | first batch ms |",
             "|---|---|---|---|---|---|---|"]
    for name, cases in results.items():
        local = statistics.median(o["samples_per_sec"] for o in cases["local"])
        epochs = 1 if name == "images" else 10
        for case, outs in cases.items():
            sps = statistics.median(o["samples_per_sec"] for o in outs)
            first = statistics.median(o["first_batch_ms"] for o in outs)
            store = [o.get("object_store") or {} for o in outs]
            reqs = statistics.median(s.get("requests", 0) for s in store) / epochs
            mb = statistics.median(s.get("bytes", 0) for s in store) / 1e6 / epochs
            summary.setdefault(name, {})[case] = dict(samples_per_sec=sps, ratio=sps / local, requests_per_epoch=reqs,
                                                      mb_per_epoch=mb, first_batch_ms=first,
                                                      runs=[o["samples_per_sec"] for o in outs])
            lines.append(f"| {name} | {case} | {sps:,.0f} | {sps / local:.2f} | {reqs:,.0f} | {mb:,.0f} | {first:,.0f} |")
    print("\n".join(lines))
    goals = [("images, null server, no cache", summary["images"]["null no cache"]["ratio"], 0.8),
             ("texts block, null server, no cache", summary["texts"]["null no cache"]["ratio"], 0.5),
             ("images, s3s-fs, no cache", summary["images"]["s3s-fs no cache"]["ratio"], 0.8),
             ("texts block, s3s-fs, no cache", summary["texts"]["s3s-fs no cache"]["ratio"], 0.5)]
    for srv in ("null", "s3s-fs"):
        for name in ("images", "texts"):
            goals.append((f"{name}, {srv}, warm cache", summary[name][f"{srv} cache warm"]["ratio"], 0.95))
    for what, got, want in goals:
        print(f"goal {what}: {got:.2f}x local (goal >= {want}): {'met' if got >= want else 'NOT met'}")
    Path(a.out).write_text(json.dumps(dict(summary=summary, table="\n".join(lines)), indent=1))
    print(f"wrote {a.out}")


main()
