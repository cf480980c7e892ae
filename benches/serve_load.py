#!/usr/bin/env python3
"""Load test of the inference server example (examples/serve.rs) against its
Python peer (benches/serve_peer.py), in one run, on the same cores.

usage: benches/serve_load.py [--quick] [--models mobilenet_v3_large,resnet18] [--concurrency 1,4,16,64]
       [--duration-s 15] [--bodies 500] [--plot docs/serve_load.png] [--rust-server PATH] [--loadgen PATH]
       [--skip sweep,overload,rss,sigterm] [--plot-only]

Builds (unless --rust-server/--loadgen are given) with
  cargo build --release -p ringfeed-benches --bin ringfeed-loadgen
  cargo build --release -p ringfeed-examples --features tch --example serve
and exports the TorchScript models with scripts/export-models.py when they
are missing (~/.cache/ringfeed-bench/models).

Every server is started on 127.0.0.1 port 0 and used once "listening on
ADDR" appears on its stdout. Both servers: --max-batch 32 --max-delay-ms 5
--queue 256 --threads 2 (decode threads), 2 batches in flight, one
libtorch intra-op thread (OMP_NUM_THREADS=1 for both, --torch-threads 1
for the peer: see benches/serve_peer.py for why), the same TorchScript
file; the client is target/release/ringfeed-loadgen (one
thread, keep-alive connections) on the same 2 cores.

1. Sweep: for each side (per endpoint; Rust first in odd rounds, Python
   first in even ones; --rounds 2, medians reported), POST
   /v1/preprocess and /v1/classify (each model) at each client concurrency
   (closed loop), bounded by --duration-s and --requests per point after a
   warm-up of 2*concurrency + 20 requests. Bodies: --bodies photos of the
   shared set (evenly spaced over the sorted 5,000: the set's own mix of
   sizes, median 500x375, 2% large up to ~4,500 px), sent in name order.
   Server RSS (VmRSS, every 0.2 s) and PSS (smaps_rollup, every 1 s) are
   sampled from /proc during each point: peak and mean.
2. Overload (Rust, /v1/classify, the first model, on its own server
   configuration: see overload()): the sustainable rate R is its
   closed-loop req/s at concurrency 16; then --overload-repeats (3) times:
   "unloaded", an open-loop run (Poisson arrivals) at R/2, then open loop
   at 4R, once with the sweep's --queue 256 and once with a queue sized
   for latency (--overload-queue, default 32), each on a fresh server.
   Reports the accepted (2xx) p99 against the same repeat's unloaded p99
   (goal: median over the repeats <= 2x), the 503s' p99 and every other
   outcome.
3. RSS flatness (Rust, /v1/preprocess): after --rss-warmup (5,000)
   unmeasured requests, --rss-requests (100,000) requests, closed loop at
   concurrency 16, every body the same small photo
   (serve/tests/fixtures/golden/04_252x211.jpg, 21 KB, a real photo that
   is upscaled: ~2,000+ req/s); RSS sampled every second; the average of
   the first 10% of samples against the last 10% (goal within +-5%).
4. SIGTERM under load (Rust, /v1/classify): this script's own closed-loop
   client (asyncio, 32 keep-alive connections, every request's send time
   and outcome recorded) runs for --sigterm-s seconds, SIGTERM at the
   middle. A request whose bytes were written before SIGTERM was sent
   (minus 20 ms for safety) was admitted by the server (its queue, 256, is
   never full at 32 connections, so none is refused): each of those must
   be a 200, and the server must exit 0. Requests sent after SIGTERM may
   be refused (connection refused/reset: the listener is closed and idle
   connections are shut) or answered; both are counted. The server's own
   /metrics counters, scraped just before SIGTERM, are recorded alongside.

Writes ~/.cache/ringfeed-bench/serve_load.json (everything, including each
loadgen summary), serve_load.md next to it (the tables, also printed) and
the plot (--plot). Prints the goal checks: preprocess >= 3x Python req/s at
<= its p99; classify (MobileNetV3) >= 1.5x req/s (both judged on each
side's best req/s over the concurrencies, with the per-concurrency ratios
alongside); overload accepted p99 <=
2x unloaded; RSS within +-5%; SIGTERM loses 0 admitted requests.
--quick: a smoke run (~3-4 minutes: one round, 60 bodies, concurrency 1
and 16, 4 s per point, 5,000 RSS requests, MobileNetV3 only).
"""
import argparse, asyncio, json, os, platform, re, signal, statistics, subprocess, sys, threading, time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
data = Path(os.environ.get("BENCH_DATA", os.path.expanduser("~/.cache/ringfeed-bench")))
ap = argparse.ArgumentParser()
ap.add_argument("--quick", action="store_true")
ap.add_argument("--plot-only", action="store_true", help="redo the tables and plots from --out's JSON")
ap.add_argument("--rust-server", help="examples/serve binary (default: build target/release/examples/serve)")
ap.add_argument("--loadgen", help="ringfeed-loadgen binary (default: build target/release/ringfeed-loadgen)")
ap.add_argument("--models", default="mobilenet_v3_large,mobilenet_v3_small,resnet18")
ap.add_argument("--models-dir", default=str(data / "models"))
ap.add_argument("--concurrency", default="1,4,16,64")
ap.add_argument("--duration-s", type=float, default=15.0, help="per sweep point")
ap.add_argument("--requests", type=int, default=20000, help="per sweep point at most")
ap.add_argument("--bodies", type=int, default=500)
ap.add_argument("--src", default=str(data / "imagefolder/train"))
ap.add_argument("--max-batch", type=int, default=32)
ap.add_argument("--max-delay-ms", type=int, default=5)
ap.add_argument("--queue", type=int, default=256)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--torch-threads", type=int, default=1, help="libtorch intra-op threads of both servers (OMP_NUM_THREADS)")
ap.add_argument("--rounds", type=int, default=2, help="sweep rounds; the side that goes first alternates; medians reported")
ap.add_argument("--overload-queue", type=int, default=32)
ap.add_argument("--overload-max-batch", type=int, default=2,
                help="the overload test's server: batches this small keep a full batch's model time short")
ap.add_argument("--overload-max-wait-ms", type=int, default=5,
                help="the overload test's server: --max-queue-wait-ms (latency-targeted admission)")
ap.add_argument("--overload-in-flight", type=int, default=2, help="the overload test's server: --in-flight")
ap.add_argument("--overload-s", type=float, default=20.0)
ap.add_argument("--overload-repeats", type=int, default=3,
                help="unloaded + overloaded runs, repeated; the goal is judged on the median ratio")
ap.add_argument("--rss-requests", type=int, default=100_000)
ap.add_argument("--rss-warmup", type=int, default=5_000, help="requests before the RSS flatness run is measured")
ap.add_argument("--sigterm-s", type=float, default=10.0)
ap.add_argument("--skip", default="", help="comma-separated: sweep,overload,rss,sigterm")
ap.add_argument("--out", default=str(data / "serve_load.json"))
ap.add_argument("--plot", default=str(root / "docs/serve_load.png"))
a = ap.parse_args()
if a.quick:
    a.bodies, a.concurrency, a.duration_s, a.requests = 60, "1,16", 4.0, 3000
    a.rss_requests, a.rss_warmup, a.overload_s, a.sigterm_s, a.rounds, a.overload_repeats = 5000, 1000, 6.0, 6.0, 1, 1
    a.models = a.models.split(",")[0]
concurrencies = [int(c) for c in a.concurrency.split(",")]
models = [m for m in a.models.split(",") if m]
skip = set(filter(None, a.skip.split(",")))
small_body = root / "serve/tests/fixtures/golden/04_252x211.jpg"
log_dir = data / "serve-load-logs"
log_dir.mkdir(parents=True, exist_ok=True)


def say(*args):
    print(*args, file=sys.stderr, flush=True)


# --- binaries, models, bodies -------------------------------------------------

def build():
    if not a.loadgen:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "ringfeed-benches", "--bin", "ringfeed-loadgen"], cwd=root, check=True)
        a.loadgen = str(root / "target/release/ringfeed-loadgen")
    if not a.rust_server:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "ringfeed-examples", "--features", "tch", "--example", "serve"], cwd=root, check=True)
        a.rust_server = str(root / "target/release/examples/serve")
    missing = [m for m in models if not (Path(a.models_dir) / f"{m}.pt").exists()]
    if missing:
        subprocess.run([sys.executable, str(root / "scripts/export-models.py"), "--out", a.models_dir, "--models", ",".join(missing)], check=True)


def body_dir(n):
    """n photos evenly spaced over the sorted shared set, as symlinks (loadgen sends them in name order)."""
    photos = sorted(Path(a.src).rglob("*.jpg"))
    if not photos:
        sys.exit(f"no photos under {a.src}: run ../shared/datasets/make.sh")
    picked = [photos[i * len(photos) // n] for i in range(min(n, len(photos)))]
    d = data / f"serve-bodies-{len(picked)}"
    d.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(picked):
        link = d / f"{i:05}.jpg"
        if not link.is_symlink():
            link.symlink_to(p)
    return d, sum(p.stat().st_size for p in picked) / len(picked)


# --- servers --------------------------------------------------------------------

def proc_kb(pid, path, field):
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


class Server:
    """A server process, its address and a /proc sampler (RSS every `rss_every` s, PSS every second)."""

    def __init__(self, side, model=None, queue=None, tag="", max_batch=None, extra=()):
        self.side = side
        q = str(queue or a.queue)
        common = ["--listen", "127.0.0.1:0", "--max-batch", str(max_batch or a.max_batch), "--max-delay-ms",
                  str(a.max_delay_ms), "--queue", q, "--threads", str(a.threads)]
        if model:
            common += ["--model", str(Path(a.models_dir) / f"{model}.pt")]
        cmd = [a.rust_server] + common + list(extra) if side == "rust" else \
            [sys.executable, str(root / "benches/serve_peer.py"), "--torch-threads", str(a.torch_threads)] + common
        env = dict(os.environ, OMP_NUM_THREADS=str(a.torch_threads), MKL_NUM_THREADS=str(a.torch_threads))
        self.log = open(log_dir / f"{side}{tag}.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        started = time.monotonic()
        line = ""
        while "listening on" not in line:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                sys.exit(f"{cmd}: exited {self.proc.returncode} before listening; see {self.log.name}")
        self.addr = line.split("listening on", 1)[1].strip()
        self.startup_s = time.monotonic() - started
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        self.samples = []  # (t, rss_kb, pss_kb or None)
        self.sampling = False
        self.stop_sampler = False
        self.rss_every = 0.2
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        next_pss = 0.0
        while not self.stop_sampler and self.proc.poll() is None:
            if self.sampling:
                now = time.monotonic()
                rss = proc_kb(self.proc.pid, "status", "VmRSS:")
                pss = None
                if now >= next_pss:
                    pss = proc_kb(self.proc.pid, "smaps_rollup", "Pss:")
                    next_pss = now + 1.0
                if rss is not None:
                    self.samples.append((now, rss, pss))
            time.sleep(self.rss_every)

    def measure(self):
        self.samples, self.sampling = [], True

    def memory(self):
        self.sampling = False
        rss = [s[1] / 1024 for s in self.samples]
        pss = [s[2] / 1024 for s in self.samples if s[2] is not None]
        if not rss:
            rss = [proc_kb(self.proc.pid, "status", "VmRSS:") / 1024]
        return {"rss_peak_mb": max(rss), "rss_mean_mb": statistics.mean(rss),
                "pss_peak_mb": max(pss) if pss else None, "pss_mean_mb": statistics.mean(pss) if pss else None,
                "samples": len(rss)}

    def url(self, path):
        return f"http://{self.addr}{path}"

    def stop(self, timeout=60):
        self.stop_sampler = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        return rc


def loadgen(url, *, concurrency=None, rate=None, requests=None, duration=None, warmup=0, body=None, bodies=None,
            max_connections=None):
    cmd = [a.loadgen, "--url", url, "--warmup", str(warmup)]
    cmd += ["--concurrency", str(concurrency)] if concurrency else ["--rate", str(rate)]
    if requests:
        cmd += ["--requests", str(requests)]
    if duration:
        cmd += ["--duration-s", str(duration)]
    cmd += ["--body", str(body)] if body else ["--body-dir", str(bodies)]
    if max_connections:
        cmd += ["--max-connections", str(max_connections)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: {out.stderr}")
    return json.loads(out.stdout)


def scrape(server):
    import urllib.request
    try:
        with urllib.request.urlopen(server.url("/metrics"), timeout=5) as r:
            return r.read().decode()
    except Exception as e:
        return f"# scrape failed: {e}"


def p99(summary, which="ok"):
    return summary["latency_ms"][which]["p99"]


def p50(summary, which="ok"):
    return summary["latency_ms"][which]["p50"]


def non_2xx(summary):
    """Responses that are not 2xx by status, and transport errors by kind (non-zero only)."""
    st = {k: v for k, v in summary["status"].items() if not k.startswith("2")}
    er = {k: v for k, v in summary["errors"].items() if v}
    return st, er


# --- 1. sweep -------------------------------------------------------------------

def sweep(bodies):
    rows = []
    endpoints = [("preprocess", None)] + [("classify", m) for m in models]
    plan = [(rnd, endpoint, model, side) for rnd in range(a.rounds) for endpoint, model in endpoints
            for side in (("rust", "python") if rnd % 2 == 0 else ("python", "rust"))]
    for rnd, endpoint, model, side in plan:
        srv = Server(side, model, tag=f"-{endpoint}-{model or 'none'}")
        say(f"round {rnd + 1}: {side} {endpoint} {model or ''}: listening on {srv.addr} after {srv.startup_s:.1f} s")
        for c in concurrencies:
            srv.measure()
            s = loadgen(srv.url(f"/v1/{endpoint}"), concurrency=c, requests=a.requests, duration=a.duration_s,
                        warmup=2 * c + 20, bodies=bodies)
            mem = srv.memory()
            st, er = non_2xx(s)
            rows.append({"round": rnd, "side": side, "endpoint": endpoint, "model": model, "concurrency": c, "loadgen": s, **mem})
            say(f"  c={c}: {s['ok_rps']:.1f} req/s ok, p50 {p50(s)} p99 {p99(s)} ms, non-2xx {st} errors {er}, "
                f"RSS peak {mem['rss_peak_mb']:.0f} MB, PSS peak {mem['pss_peak_mb'] or 0:.0f} MB")
        rc = srv.stop()
        if rc != 0:
            say(f"  {side} exited {rc}")
    return rows


# --- 2. overload ----------------------------------------------------------------

def overload(bodies, sweep_rows):
    """The overload test runs its own server configuration, built for
    latency: small batches (--overload-max-batch 2; on CPU a batch of 2
    runs nearly as many images per second as one of 32) and
    latency-targeted admission (--overload-max-wait-ms 5: refuse while the
    oldest waiting request has waited longer). Its sustainable rate R is
    measured on that configuration without the admission (closed loop, 16
    connections), then each repeat measures the unloaded p99 at R/2 (open
    loop) and offers 4R (open loop). Settings tried (two repeats of 10 s
    each, MobileNetV3-L): max-wait 5 ms gave 1.39x; 10 ms 1.93-2.10x;
    20 ms with one batch in flight 2.48-2.55x; batches of 1 one at a time
    2.01-2.07x."""
    model = models[0]
    mb, wait = a.overload_max_batch, a.overload_max_wait_ms
    extra = ["--max-queue-wait-ms", str(wait), "--in-flight", str(a.overload_in_flight)]
    out = {"model": model, "max_batch": mb, "max_queue_wait_ms": wait, "in_flight": a.overload_in_flight}
    # Capacity without the latency-targeted admission: with it, closed-loop clients retry each
    # 503 at once, and the refused requests' HTTP work would be counted against the capacity
    # (the accepted rate under overload came out 1.5x the "sustainable" one measured that way).
    srv = Server("rust", model, tag="-overload-capacity", max_batch=mb, extra=["--in-flight", str(a.overload_in_flight)])
    cap = loadgen(srv.url("/v1/classify"), concurrency=16, duration=a.duration_s, requests=a.requests, warmup=52,
                  bodies=bodies)
    rate = cap["ok_rps"]
    out["sustainable"] = {"concurrency": 16, "ok_rps": rate, "p99_ms": p99(cap), "non_2xx": non_2xx(cap)}
    srv.stop()
    say(f"overload (max-batch {mb}, max-queue-wait {wait} ms): sustainable {rate:.1f} req/s (c=16, p99 {p99(cap)} ms)")
    # The accepted p99 of one 20 s run swings up to 2x between runs on this VM, and so does
    # the unloaded one: each repeat measures both, on fresh servers, and the goal is judged
    # on the median of the repeats' ratios.
    out["runs"], out["unloaded_runs"] = [], []
    for rep in range(a.overload_repeats):
        srv = Server("rust", model, tag=f"-overload-unloaded-{rep}", max_batch=mb, extra=extra)
        u = loadgen(srv.url("/v1/classify"), rate=rate / 2, duration=a.overload_s, warmup=20, bodies=bodies,
                    max_connections=2048)
        srv.stop()
        out["unloaded_runs"].append({"repeat": rep, "rate": rate / 2, "loadgen": u})
        say(f"  repeat {rep + 1}: at R/2 p99 {p99(u)} ms, non-2xx {non_2xx(u)}")
        for q in (a.queue, a.overload_queue):
            srv = Server("rust", model, queue=q, tag=f"-overload-q{q}-{rep}", max_batch=mb, extra=extra)
            srv.measure()
            s = loadgen(srv.url("/v1/classify"), rate=4 * rate, duration=a.overload_s, warmup=0, bodies=bodies,
                        max_connections=2048)
            mem = srv.memory()
            metrics = scrape(srv)
            rc = srv.stop()
            st, er = non_2xx(s)
            other = {k: v for k, v in st.items() if k != "503"}
            run = {"repeat": rep, "queue": q, "rate": 4 * rate, "loadgen": s, "exit": rc, **mem,
                   "accepted_p99_ms": p99(s), "unloaded_p99_ms": p99(u),
                   "ratio": (p99(s) or 0) / p99(u),
                   "rejected_503": st.get("503", 0), "rejected_p99_ms": s["latency_ms"]["503"]["p99"],
                   "other_statuses": other, "errors": er, "metrics": metrics}
            run["clean"] = not other and not er and rc == 0
            out["runs"].append(run)
            say(f"    4R={4 * rate:.0f} req/s, queue {q}: {s['ok']} accepted at {s['ok_rps']:.1f}/s, p99 {p99(s)} ms "
                f"({run['ratio']:.2f}x unloaded); {run['rejected_503']} x 503, p99 {run['rejected_p99_ms']} ms; "
                f"other {other} errors {er}; RSS peak {mem['rss_peak_mb']:.0f} MB")
    out["per_queue"] = {}
    for q in (a.queue, a.overload_queue):
        runs = [r for r in out["runs"] if r["queue"] == q]
        ratio = statistics.median(r["ratio"] for r in runs)
        out["per_queue"][str(q)] = {"median_ratio": ratio, "ratios": [r["ratio"] for r in runs],
                                    "goal_met": ratio <= 2.0 and all(r["clean"] for r in runs)}
    return out


# --- 3. RSS flatness ----------------------------------------------------------------

def rss_flat():
    srv = Server("rust", None, tag="-rss")
    srv.rss_every = 1.0
    rss_start = proc_kb(srv.proc.pid, "status", "VmRSS:") / 1024
    # Warm-up (allocator arenas, pools, connections) before the measured requests.
    loadgen(srv.url("/v1/preprocess"), concurrency=16, requests=a.rss_warmup, warmup=0, body=small_body)
    rss_warm = proc_kb(srv.proc.pid, "status", "VmRSS:") / 1024
    srv.measure()
    started = time.monotonic()
    s = loadgen(srv.url("/v1/preprocess"), concurrency=16, requests=a.rss_requests, warmup=0, body=small_body)
    secs = time.monotonic() - started
    samples = [(t - started, kb / 1024) for t, kb, _ in srv.samples]
    srv.memory()
    rc = srv.stop()
    n = max(1, len(samples) // 10)
    first = statistics.mean(v for _, v in samples[:n])
    last = statistics.mean(v for _, v in samples[-n:])
    out = {"endpoint": "/v1/preprocess", "body": str(small_body.relative_to(root)), "body_bytes": small_body.stat().st_size,
           "requests": a.rss_requests, "concurrency": 16, "seconds": secs, "loadgen": s, "exit": rc,
           "warmup_requests": a.rss_warmup, "rss_at_start_mb": rss_start, "rss_after_warmup_mb": rss_warm,
           "samples": samples, "first10_mb": first, "last10_mb": last, "change": last / first - 1,
           "min_mb": min(v for _, v in samples), "max_mb": max(v for _, v in samples)}
    out["goal_met"] = abs(out["change"]) <= 0.05 and s["ok"] == a.rss_requests
    say(f"RSS flatness: {s['ok']}/{a.rss_requests} ok in {secs:.0f} s ({s['ok_rps']:.0f} req/s), {len(samples)} samples, "
        f"first 10% {first:.1f} MB, last 10% {last:.1f} MB ({100 * out['change']:+.2f}%), min {out['min_mb']:.1f} max {out['max_mb']:.1f}")
    return out


# --- 4. SIGTERM under load ------------------------------------------------------------

async def http_client(host, port, path, bodies, duration, conns, sigterm_at, on_sigterm):
    """Closed loop over `conns` keep-alive connections; every request: (sent, done, outcome)."""
    records, t0 = [], time.monotonic()
    stop = t0 + duration

    async def one_conn(k):
        reader = writer = None
        i = k
        while time.monotonic() < stop:
            body = bodies[i % len(bodies)]
            i += conns
            sent = time.monotonic()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: image/jpeg\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
                status_line = await asyncio.wait_for(reader.readline(), 60)
                if not status_line:
                    raise ConnectionResetError("closed before a response")
                status = int(status_line.split()[1])
                length, close = 0, False
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    if name.lower() == "connection" and "close" in value.lower():
                        close = True
                await reader.readexactly(length)
                records.append((sent, time.monotonic(), status))
                if close:
                    writer.close()
                    reader = writer = None
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError) as e:
                kind = "refused" if isinstance(e, ConnectionRefusedError) else type(e).__name__
                records.append((sent, time.monotonic(), kind))
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.01)

    async def killer():
        await asyncio.sleep(sigterm_at)
        on_sigterm()

    await asyncio.gather(killer(), *(one_conn(k) for k in range(conns)))
    return records


def sigterm_test(bodies_dir):
    model = models[0]
    bodies = [p.read_bytes() for p in sorted(Path(bodies_dir).iterdir())][:200]
    srv = Server("rust", model, tag="-sigterm")
    host, port = srv.addr.rsplit(":", 1)
    when = {}

    def on_sigterm():
        when["metrics"] = scrape(srv)
        when["t"] = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)

    records = asyncio.run(http_client(host, int(port), "/v1/classify", bodies, a.sigterm_s, 32, a.sigterm_s / 2, on_sigterm))
    try:
        rc = srv.proc.wait(60)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        rc = "killed after 60 s"
    srv.stop_sampler = True
    srv.log.close()
    t = when["t"]
    margin = 0.020
    before = [r for r in records if r[0] < t - margin]
    around = [r for r in records if t - margin <= r[0] < t]
    after = [r for r in records if r[0] >= t]
    lost = [r for r in before if r[2] != 200]
    in_flight = [r for r in before if r[1] >= t]
    count = lambda rs: dict(sorted(((str(k), sum(1 for r in rs if r[2] == k)) for k in {r[2] for r in rs})))
    m = when["metrics"]
    ok_200 = sum(int(float(x)) for x in re.findall(r'route="/v1/classify",status="200"\}\s+(\S+)', m))
    # The Rust server's batcher counts every admitted request ("submitted").
    submitted = [int(float(x)) for x in re.findall(r'batcher="classify",outcome="submitted"\}\s+(\S+)', m)]
    client_200 = sum(1 for r in records if r[2] == 200)
    out = {"model": model, "connections": 32, "sigterm_after_s": a.sigterm_s / 2, "exit": rc,
           "sent_before": len(before), "sent_before_outcomes": count(before),
           "in_flight_at_sigterm": len(in_flight), "in_flight_outcomes": count(in_flight),
           "sent_within_20ms_before": count(around), "sent_after": count(after),
           "lost_admitted": len(lost), "drain_s": max((r[1] for r in records if r[2] == 200), default=t) - t,
           "server_200_at_sigterm": ok_200,
           "client_200_by_sigterm": sum(1 for r in records if r[2] == 200 and r[1] < t),
           "server_submitted_at_sigterm": submitted[0] if submitted else None, "client_200_total": client_200}
    # Every request admitted before SIGTERM (the server's own count) was answered 200.
    out["submitted_answered"] = None if not submitted else client_200 >= submitted[0]
    out["goal_met"] = rc == 0 and not lost and len(before) > 0 and out["submitted_answered"] is not False
    say(f"SIGTERM: exit {rc}; sent before: {out['sent_before_outcomes']}, in flight at SIGTERM {len(in_flight)} -> "
        f"{out['in_flight_outcomes']}; within 20 ms before: {out['sent_within_20ms_before']}; after: {out['sent_after']}; "
        f"lost {len(lost)}; drained in {out['drain_s']:.2f} s")
    return out


# --- report -------------------------------------------------------------------------

def agg(sw, endpoint, model, c, side):
    """The sweep rounds of one point merged: medians of req/s and latency
    percentiles, the highest memory peaks, every non-2xx outcome summed."""
    rs = [r for r in sw if (r["endpoint"], r["model"], r["concurrency"], r["side"]) == (endpoint, model, c, side)]
    if not rs:
        return None
    med = lambda f: statistics.median(v for v in (f(r) for r in rs) if v is not None) if any(f(r) is not None for r in rs) else None
    st, er = {}, {}
    for r in rs:
        x, y = non_2xx(r["loadgen"])
        for k, v in x.items():
            st[k] = st.get(k, 0) + v
        for k, v in y.items():
            er[k] = er.get(k, 0) + v
    return {"rounds": len(rs), "ok_rps": med(lambda r: r["loadgen"]["ok_rps"]), "p50": med(lambda r: p50(r["loadgen"])),
            "p99": med(lambda r: p99(r["loadgen"])), "ok_rps_each": [r["loadgen"]["ok_rps"] for r in rs],
            "rss_peak_mb": max(r["rss_peak_mb"] for r in rs), "pss_peak_mb": max((r["pss_peak_mb"] or 0) for r in rs),
            "non_2xx": st, "errors": er}


def fmt(v, d=1):
    return "–" if v is None else f"{v:,.{d}f}"


def report(res):
    lines = []
    sw = res.get("sweep", [])
    goals = {}
    if sw:
        lines += [f"Sweep: closed loop, {res['config']['bodies']} photos of the shared set as bodies (mean {res['config']['body_mean_kb']:.0f} KB), "
                  f"{res['config']['duration_s']:.0f} s or {res['config']['requests']:,} requests per point; both servers --max-batch "
                  f"{res['config']['max_batch']} --max-delay-ms {res['config']['max_delay_ms']} --queue {res['config']['queue']} "
                  f"--threads {res['config']['threads']}, one libtorch thread.\n",
                  f"Medians of {len({r.get('round', 0) for r in sw})} rounds (the side that goes first alternates); memory: the highest peak of the rounds.\n",
                  "| endpoint | concurrency | Rust req/s | Python req/s | ratio | Rust p50 / p99 ms | Python p50 / p99 ms | Rust RSS / PSS peak MB | Python RSS / PSS peak MB | non-2xx or errors |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        keys = []
        for r in sw:
            k = (r["endpoint"], r["model"])
            if k not in keys:
                keys.append(k)
        for endpoint, model in keys:
            name = f"/v1/{endpoint}" + (f" ({model})" if model else "")
            each, peak = [], {}
            for c in concurrencies:
                rr, pr = agg(sw, endpoint, model, c, "rust"), agg(sw, endpoint, model, c, "python")
                if not rr or not pr:
                    continue
                ratio = rr["ok_rps"] / pr["ok_rps"] if pr["ok_rps"] else None
                bad = [f"{side}: {x['non_2xx']} {x['errors']}" for side, x in (("Rust", rr), ("Python", pr)) if x["non_2xx"] or x["errors"]]
                each.append((c, ratio, rr["p99"], pr["p99"]))
                for side, x in (("rust", rr), ("python", pr)):
                    if side not in peak or x["ok_rps"] > peak[side]["ok_rps"]:
                        peak[side] = {"concurrency": c, "ok_rps": x["ok_rps"], "p99_ms": x["p99"]}
                res.setdefault("sweep_medians", []).append({"endpoint": endpoint, "model": model, "concurrency": c, "rust": rr, "python": pr, "ratio": ratio})
                lines.append(f"| {name} | {c} | {fmt(rr['ok_rps'])} | {fmt(pr['ok_rps'])} | {fmt(ratio, 2)}× | {fmt(rr['p50'])} / {fmt(rr['p99'])} | "
                             f"{fmt(pr['p50'])} / {fmt(pr['p99'])} | {rr['rss_peak_mb']:.0f} / {fmt(rr['pss_peak_mb'], 0)} | "
                             f"{pr['rss_peak_mb']:.0f} / {fmt(pr['pss_peak_mb'], 0)} | {'; '.join(bad) or 'none'} |")
            if not each:
                continue
            res.setdefault("peaks", {})[name] = peak
            want = 3.0 if endpoint == "preprocess" else 1.5 if model.startswith("mobilenet") else None
            if want:
                # Judged on capacity: each side's best req/s over the concurrencies (preprocess: with
                # Rust's p99 there no higher than Python's at its best). Per concurrency for reference.
                peak_ratio = peak["rust"]["ok_rps"] / peak["python"]["ok_rps"]
                p99_ok = want < 3 or (peak["rust"]["p99_ms"] or 1e9) <= (peak["python"]["p99_ms"] or 0)
                met = [c for c, r, rp, pp in each if r is not None and r >= want and (want < 3 or (rp or 1e9) <= (pp or 0))]
                goals[f"{name}: >= {want}x Python req/s" + (" at <= its p99" if want == 3 else "") + " (best of each side)"] = {
                    "met": peak_ratio >= want and p99_ok, "peak_ratio": peak_ratio,
                    "rust_peak": peak["rust"], "python_peak": peak["python"], "also_met_at_equal_concurrency": met,
                    "per_concurrency": {c: {"ratio": r, "rust_p99": rp, "python_p99": pp} for c, r, rp, pp in each}}
        lines.append("")
        lines.append("Peak of each side (any concurrency): " + "; ".join(
            f"{n}: Rust {v['rust']['ok_rps']:,.1f} req/s (c={v['rust']['concurrency']}, p99 {fmt(v['rust']['p99_ms'])} ms), "
            f"Python {v['python']['ok_rps']:,.1f} (c={v['python']['concurrency']}, p99 {fmt(v['python']['p99_ms'])} ms), "
            f"{v['rust']['ok_rps'] / v['python']['ok_rps']:.2f}×" for n, v in res["peaks"].items()))
        lines.append("")
    if "overload" in res:
        o = res["overload"]
        lines += [f"Overload (Rust, /v1/classify, {o['model']}, --max-batch {o['max_batch']}, --max-queue-wait-ms {o['max_queue_wait_ms']}): "
                  f"sustainable R = {o['sustainable']['ok_rps']:.1f} req/s "
                  f"(closed loop, c={o['sustainable']['concurrency']}, p99 {fmt(o['sustainable']['p99_ms'])} ms); each repeat: unloaded = open loop "
                  f"at R/2 on a fresh server, then 4R on a fresh server per queue length.\n",
                  "| repeat | queue | offered req/s | accepted 2xx | accepted req/s | accepted p50 / p99 ms | unloaded p50 / p99 ms | p99 / unloaded p99 | 503s | 503 p50 / p99 ms | other statuses / errors | RSS peak MB | exit |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        unloaded = {u["repeat"]: u["loadgen"] for u in o["unloaded_runs"]}
        for r in o["runs"]:
            s, u = r["loadgen"], unloaded[r["repeat"]]
            lines.append(f"| {r['repeat'] + 1} | {r['queue']} | {r['rate']:.0f} | {s['ok']:,} | {s['ok_rps']:.1f} | {fmt(p50(s))} / {fmt(p99(s))} | "
                         f"{fmt(p50(u))} / {fmt(p99(u))} | {r['ratio']:.2f}× | "
                         f"{r['rejected_503']:,} | {fmt(s['latency_ms']['503']['p50'], 2)} / {fmt(r['rejected_p99_ms'], 2)} | "
                         f"{r['other_statuses'] or 'none'} / {r['errors'] or 'none'} | {r['rss_peak_mb']:.0f} | {r['exit']} |")
        lines.append("")
        for q, v in o["per_queue"].items():
            lines.append(f"Queue {q}: median p99 / unloaded p99 {v['median_ratio']:.2f}× (repeats: "
                         + ", ".join(f"{x:.2f}×" for x in v["ratios"]) + ").")
            goals[f"overload queue {q}: accepted p99 <= 2x unloaded (median of repeats), only 503s"] = {
                "met": v["goal_met"], "median_ratio": v["median_ratio"], "ratios": v["ratios"]}
        lines.append("")
    if "rss" in res:
        r = res["rss"]
        s = r["loadgen"]
        lines += [f"RSS flatness (Rust, {r['endpoint']}, every body {r['body']} ({r['body_bytes'] / 1024:.0f} KB), closed loop c={r['concurrency']}; "
                  f"RSS {r['rss_at_start_mb']:.1f} MB at start, {r['rss_after_warmup_mb']:.1f} MB after {r['warmup_requests']:,} warm-up requests, then measured): "
                  f"{s['ok']:,} of {r['requests']:,} requests 2xx in {r['seconds']:.0f} s ({s['ok_rps']:,.0f} req/s, p99 {fmt(p99(s))} ms), "
                  f"non-2xx {non_2xx(s)}; RSS sampled every second ({len(r['samples'])} samples): first 10% {r['first10_mb']:.1f} MB, "
                  f"last 10% {r['last10_mb']:.1f} MB, change {100 * r['change']:+.2f}% (min {r['min_mb']:.1f}, max {r['max_mb']:.1f}); exit {r['exit']}.\n"]
        goals["RSS within ±5% over the run"] = {"met": r["goal_met"], "change": r["change"]}
    if "sigterm" in res:
        r = res["sigterm"]
        lines += [f"SIGTERM under load (Rust, /v1/classify, {r['model']}, {r['connections']} connections, SIGTERM after {r['sigterm_after_s']:.0f} s): "
                  f"exit {r['exit']}; requests sent before SIGTERM (-20 ms): {r['sent_before']:,} -> {r['sent_before_outcomes']}; of them in flight "
                  f"at SIGTERM: {r['in_flight_at_sigterm']} -> {r['in_flight_outcomes']}; sent in the 20 ms before: {r['sent_within_20ms_before']}; "
                  f"sent after: {r['sent_after']}; admitted but not answered 200: {r['lost_admitted']}; last 200 {r['drain_s']:.2f} s after SIGTERM. "
                  f"Server's 200 count at SIGTERM (/metrics) {r['server_200_at_sigterm']:,}, client's 200s received by then {r['client_200_by_sigterm']:,}; "
                  f"server's admitted (batcher 'submitted') count at SIGTERM {r['server_submitted_at_sigterm']}, client's 200s in all {r['client_200_total']:,}.\n"]
        goals["SIGTERM: 0 admitted requests lost, exit 0"] = {"met": r["goal_met"], "lost": r["lost_admitted"], "exit": r["exit"]}
    res["goals"] = goals
    lines.append("Goals:")
    for k, v in goals.items():
        met = v.get("met", v.get("all"))
        detail = {kk: vv for kk, vv in v.items() if kk not in ("met", "all")}
        lines.append(f"- {'MET' if met else 'MISSED'}: {k} — {json.dumps(detail, default=str)}")
    return "\n".join(lines)


def plot(res):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sw = res.get("sweep", [])
    keys = []
    for r in sw:
        if (r["endpoint"], r["model"]) not in keys:
            keys.append((r["endpoint"], r["model"]))
    if keys:
        main_plot(plt, sw, keys, res)
    if "rss" in res:
        fig2, ax = plt.subplots(figsize=(6, 3))
        ax.plot([s[0] for s in res["rss"]["samples"]], [s[1] for s in res["rss"]["samples"]])
        ax.set_xlabel("s")
        ax.set_ylabel("RSS MB")
        ax.set_title(f"Rust server RSS over {res['rss']['requests']:,} /v1/preprocess requests", fontsize=10)
        ax.grid(alpha=0.3)
        fig2.tight_layout()
        fig2.savefig(Path(a.out).with_name("serve_load_rss.png"), dpi=100)


def main_plot(plt, sw, keys, res):
    """req/s and p99 against concurrency, one column per endpoint, the medians of the rounds."""
    fig, axes = plt.subplots(2, len(keys), figsize=(4.2 * len(keys), 7), squeeze=False)
    for i, (endpoint, model) in enumerate(keys):
        for side, color in (("rust", "tab:orange"), ("python", "tab:blue")):
            pts = [(c, m["ok_rps"], m["p99"] or 0) for c in concurrencies
                   if (m := agg(sw, endpoint, model, c, side)) is not None]
            label = "ringfeed-serve (Rust)" if side == "rust" else "aiohttp + torchvision (Python)"
            axes[0][i].plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=color, label=label)
            axes[1][i].plot([p[0] for p in pts], [p[2] for p in pts], "o-", color=color, label=label)
        axes[0][i].set_title(f"/v1/{endpoint}" + (f"\n{model}" if model else ""), fontsize=10)
        for ax, yl in ((axes[0][i], "req/s (2xx)"), (axes[1][i], "p99 latency, ms")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
            ax.set_xlabel("client concurrency (closed loop)")
            ax.set_ylabel(yl)
            ax.grid(alpha=0.3)
        axes[0][i].set_ylim(bottom=0)
        axes[1][i].set_yscale("log")
    if keys:
        axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Inference server, 2 cores: Rust example vs Python peer ({res['config']['when']})", fontsize=11)
    fig.tight_layout()
    Path(a.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.plot, dpi=110)


def main():
    global concurrencies
    if a.plot_only:
        res = json.loads(Path(a.out).read_text())
        concurrencies = res["config"]["concurrency"]
        text = report(res)
        Path(a.out).with_suffix(".md").write_text(text + "\n")
        plot(res)
        print(text)
        return
    build()
    bodies, mean_bytes = body_dir(a.bodies)
    res = {"config": {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": a.quick, "bodies": a.bodies,
                      "body_mean_kb": mean_bytes / 1024, "duration_s": a.duration_s, "requests": a.requests,
                      "concurrency": concurrencies, "models": models, "max_batch": a.max_batch, "max_delay_ms": a.max_delay_ms,
                      "queue": a.queue, "threads": a.threads, "cpus": os.cpu_count(), "kernel": platform.release(),
                      "rust_server": a.rust_server, "loadgen": a.loadgen}}
    started = time.monotonic()
    if "sweep" not in skip:
        res["sweep"] = sweep(bodies)
    if "overload" not in skip:
        res["overload"] = overload(bodies, res.get("sweep", []))
    if "rss" not in skip:
        res["rss"] = rss_flat()
    if "sigterm" not in skip:
        res["sigterm"] = sigterm_test(bodies)
    res["config"]["seconds"] = time.monotonic() - started
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1, default=str))  # the measurements, before anything can fail
    text = report(res)
    Path(a.out).write_text(json.dumps(res, indent=1, default=str))
    Path(a.out).with_suffix(".md").write_text(text + "\n")
    plot(res)
    print(text)
    say(f"\n{a.out}, {Path(a.out).with_suffix('.md')}, {a.plot}; {res['config']['seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
