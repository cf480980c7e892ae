#!/usr/bin/env python3
"""The Python peer of examples/serve.rs: the same HTTP endpoints, the same
preprocessing, the same dynamic batching and the same TorchScript model,
done the usual Python way, for benches/serve_load.py to compare against.

usage: benches/serve_peer.py [--listen 127.0.0.1:8081] [--model PATH] [--max-batch 32]
       [--max-delay-ms 5] [--queue 256] [--in-flight 2] [--threads 2] [--torch-threads 1]
       [--resize 256] [--crop 224] [--no-uvloop] [--memory-format channels-last|contiguous]

Endpoints and JSON, as the Rust example's:
  POST /v1/classify    JPEG/PNG body -> {"classes": [5 ids], "scores": [5 softmax scores], "timings": {...}}
  POST /v1/preprocess  JPEG/PNG body -> {"shape": [1, 3, 224, 224], "dtype": "f32", "crc32c": CRC32C of the
                       row's little-endian f32 bytes, "timings": {...}}
  GET  /healthz        "ok"
  GET  /metrics        Prometheus text: responses by route and status, completed requests, queue depth
503 + Retry-After: 1 when an endpoint's queue is full; 400 for a body that
does not decode; 413 over 16 MiB (the Rust batcher's default limit);
501 for /v1/classify without --model. Prints "listening on HOST:PORT" once
bound (port 0: any free port). SIGTERM or SIGINT: stop accepting, answer
every admitted request, exit 0.

Pipeline (torchvision's documented fast path for inference, which is also
what benches/harness.py's best DataLoader configuration uses):
torchvision.io.decode_jpeg (decode_image for PNG), mode RGB, on the body's
bytes; transforms.v2 Resize(256, antialias=True) + CenterCrop(224) on the
uint8 tensor (resizing uint8 before converting is several times cheaper
than resizing float), ToDtype(float32, scale=True), Normalize(ImageNet mean
and std), written into its row of a preallocated [N, 3, 224, 224] batch.

Choices, and why (the aim is the best this design does on the same 2
cores, not a straw man):
- aiohttp on uvloop (when installed; --no-uvloop otherwise), access log
  off: the fastest mainstream asyncio HTTP stack; the event loop only
  parses requests, queues them and answers.
- Dynamic batching as in ringfeed-serve: a bounded asyncio queue per
  endpoint (--queue, refused at once with 503 when full), a collector
  that takes up to --max-batch requests within --max-delay-ms of the
  first, and up to --in-flight batches being decoded or in the model at
  once (the next batch is collected and decoded while the model runs the
  last), like the Rust batcher's in_flight.
- Decode + transforms in a ThreadPoolExecutor of --threads workers, one
  task per image: decode_jpeg and the resize kernels release the GIL,
  so two workers use both cores. Threads, not processes: a process pool
  would pickle every decoded image back to the parent (600 KB each).
- The model forward in its own single-thread executor under
  torch.inference_mode, softmax + top-5 in the same call: the event loop
  never blocks on it, and batches reach the model one at a time.
- torch.set_num_threads(--torch-threads, default 1) and
  set_num_interop_threads(1). Under load the two decode threads and the
  model thread already keep both cores busy, so intra-op threads add no
  throughput; they only add contention: OpenMP's spinning workers on a
  busy 2-core VM made a MobileNetV3 batch of 16 3-7x slower with 2 threads
  than with 1 (1,471-2,875 ms against 416-450 ms, measured while the
  machine was shared), and OMP_WAIT_POLICY=PASSIVE only brought 2 threads
  back to 1 thread's speed. benches/serve_load.py gives the Rust server
  the same single libtorch thread (OMP_NUM_THREADS=1). The per-image
  transforms then also run single-threaded on their decode thread.
- The same TorchScript file as the Rust server (torch.jit.load, eval;
  frozen by scripts/export-models.py).
- --memory-format channels-last (default, as the Rust server's): the
  classify batch is allocated channels-last, so each row's copy_ writes
  it in that order and the model gets it without a conversion, as
  PyTorch's "Channels Last Memory Format" tutorial and performance tuning
  guide recommend for CNNs on CPU (MobileNetV3 on one thread: 2.4x the
  images/s at batch 16). /v1/preprocess keeps contiguous rows.
- Warm-up forwards at start (batches of 1, 2 and --max-batch, three
  times), so the first requests do not pay TorchScript's profiling runs; the Rust side gets
  the same requests as warm-up from the load driver anyway.
"""
import argparse, asyncio, os, signal, sys, time, warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

ap = argparse.ArgumentParser(description="Python peer of examples/serve.rs (aiohttp + torchvision + TorchScript)")
ap.add_argument("--listen", default="127.0.0.1:8081")
ap.add_argument("--model")
ap.add_argument("--max-batch", type=int, default=32)
ap.add_argument("--max-delay-ms", type=float, default=5)
ap.add_argument("--queue", type=int, default=256)
ap.add_argument("--in-flight", type=int, default=2)
ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="decode threads per endpoint")
ap.add_argument("--torch-threads", type=int, default=1, help="intra-op threads (see the docstring)")
ap.add_argument("--resize", type=int, default=256)
ap.add_argument("--crop", type=int, default=224)
ap.add_argument("--no-uvloop", action="store_true")
ap.add_argument("--memory-format", choices=["channels-last", "contiguous"], default="channels-last",
                help="memory format of the model's input batch (see the docstring)")
a = ap.parse_args()

import crc32c  # pip install crc32c: hardware CRC32C, as the Rust side's crc32c crate
import torch, torchvision
from aiohttp import web
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms import v2

torch.set_num_threads(a.torch_threads)
torch.set_num_interop_threads(1)
warnings.filterwarnings("ignore", message="The given buffer is not writable")
MAX_BODY = 16 << 20
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
transform = v2.Compose([v2.Resize(a.resize, antialias=True), v2.CenterCrop(a.crop),
                        v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])


class BadImage(Exception):
    pass


def preprocess_into(body: bytes, out: torch.Tensor):
    """Decodes `body` (JPEG or PNG) and writes its normalized [3, crop, crop] row into `out`."""
    try:
        data = torch.frombuffer(body, dtype=torch.uint8)
        if body[:3] == b"\xff\xd8\xff":
            img = decode_jpeg(data, mode=ImageReadMode.RGB)
        else:
            img = decode_image(data, mode=ImageReadMode.RGB)
    except Exception as e:  # torchvision raises RuntimeError for corrupt or unsupported input
        raise BadImage(str(e).splitlines()[0] if str(e) else type(e).__name__)
    out.copy_(transform(img))


class Batcher:
    """Bounded queue -> batches of up to max_batch within max_delay -> decode on
    the pool -> `finish(batch, n)` (the model, or the checksums) -> one result
    per request."""

    def __init__(self, name, finish, pool, model_pool, memory_format=torch.contiguous_format):
        self.name, self.finish, self.pool, self.model_pool = name, finish, pool, model_pool
        self.memory_format = memory_format
        self.queue = asyncio.Queue(maxsize=a.queue)
        self.in_flight = asyncio.Semaphore(a.in_flight)
        self.completed = 0
        self.tasks = set()

    def submit(self, body):
        """A future for the request's result; raises asyncio.QueueFull when the queue is full."""
        fut = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((body, fut, time.perf_counter()))
        return fut

    async def run(self):
        loop = asyncio.get_running_loop()
        while True:
            await self.in_flight.acquire()
            first = await self.queue.get()
            items = [first]
            deadline = loop.time() + a.max_delay_ms / 1e3
            while len(items) < a.max_batch:
                try:
                    items.append(self.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            t = asyncio.create_task(self.process(items))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)

    async def process(self, items):
        loop = asyncio.get_running_loop()
        try:
            started = time.perf_counter()
            batch = torch.empty(len(items), 3, a.crop, a.crop, memory_format=self.memory_format)
            results = await asyncio.gather(*(loop.run_in_executor(self.pool, preprocess_into, body, batch[i])
                                             for i, (body, _, _) in enumerate(items)), return_exceptions=True)
            decoded = time.perf_counter()
            good = [i for i, r in enumerate(results) if r is None]
            outputs = []
            if good:
                rows = batch if len(good) == len(items) else batch[good]
                outputs = await loop.run_in_executor(self.model_pool, self.finish, rows)
            done = time.perf_counter()
            timings = lambda queued: {"queue_ms": (started - queued) * 1e3, "decode_ms": (decoded - started) * 1e3,
                                      "model_ms": (done - decoded) * 1e3, "batch_size": len(items)}
            out = iter(outputs)
            for (_, fut, queued), r in zip(items, results):
                if fut.done():  # the client went away
                    continue
                if r is None:
                    fut.set_result((next(out), timings(queued)))
                else:
                    fut.set_exception(r)
            self.completed += len(items)
        except Exception as e:  # a server fault fails the batch's requests, not the server
            for _, fut, _ in items:
                if not fut.done():
                    fut.set_exception(e)
        finally:
            self.in_flight.release()

    async def drain(self):
        while not self.queue.empty() or self.tasks:
            await asyncio.sleep(0.005)


def checksums(rows: torch.Tensor):
    """/v1/preprocess: shape, dtype and CRC32C of each row."""
    return [{"shape": [1, *rows.shape[1:]], "dtype": "f32", "crc32c": crc32c.crc32c(r.numpy().tobytes())} for r in rows]


def fmt_of(name):
    return torch.channels_last if name == "channels-last" else torch.contiguous_format


def make_classifier(model):
    def classify(rows: torch.Tensor):
        with torch.inference_mode():
            scores, ids = model(rows).softmax(-1).topk(5, -1)
        return [{"classes": i, "scores": s} for i, s in zip(ids.tolist(), scores.tolist())]
    return classify


def error(status, fault, message, headers=None):
    return web.json_response({"error": message, "fault": fault}, status=status, headers=headers)


async def main():
    host, port = a.listen.rsplit(":", 1)
    model = None
    if a.model:
        model = torch.jit.load(a.model).eval()
        with torch.inference_mode():
            for n in (1, 2, a.max_batch) * 3:  # TorchScript's profiling runs happen here
                model(torch.zeros(n, 3, a.crop, a.crop).contiguous(memory_format=fmt_of(a.memory_format)))
    pool = ThreadPoolExecutor(a.threads, thread_name_prefix="decode")
    model_pool = ThreadPoolExecutor(1, thread_name_prefix="model")
    batchers = {"preprocess": Batcher("preprocess", checksums, pool, model_pool)}
    if model is not None:
        fmt = fmt_of(a.memory_format)
        batchers["classify"] = Batcher("classify", make_classifier(model), pool, model_pool, fmt)
    responses = Counter()

    @web.middleware
    async def count(request, handler):
        try:
            resp = await handler(request)
        except web.HTTPException as e:
            resp = e
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unknown"
        responses[(route, resp.status)] += 1
        if isinstance(resp, web.HTTPException):
            raise resp
        return resp

    async def run_batcher(name, request):
        if (request.content_length or 0) > MAX_BODY:
            return error(413, "client", f"body over {MAX_BODY} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error(413, "client", f"body over {MAX_BODY} bytes")
        try:
            fut = batchers[name].submit(body)
        except asyncio.QueueFull:
            return error(503, "overloaded", f"queue full ({a.queue} requests waiting)", {"Retry-After": "1"})
        try:
            out, timings = await fut
        except BadImage as e:
            return error(400, "client", f"undecodable image: {e}")
        except Exception as e:
            return error(500, "server", f"{type(e).__name__}: {e}")
        return web.json_response({**out, "timings": timings})

    async def classify(request):
        if "classify" not in batchers:
            return error(501, "server", "no model loaded: start the server with --model PATH")
        return await run_batcher("classify", request)

    async def preprocess(request):
        return await run_batcher("preprocess", request)

    async def healthz(request):
        return web.Response(text="ok\n")

    async def metrics(request):
        lines = ["# TYPE peer_http_responses_total counter"]
        lines += [f'peer_http_responses_total{{route="{r}",status="{s}"}} {n}' for (r, s), n in sorted(responses.items())]
        lines += ["# TYPE peer_completed_total counter"]
        lines += [f'peer_completed_total{{batcher="{b}"}} {x.completed}' for b, x in batchers.items()]
        lines += ["# TYPE peer_queue_depth gauge"]
        lines += [f'peer_queue_depth{{batcher="{b}"}} {x.queue.qsize()}' for b, x in batchers.items()]
        return web.Response(text="\n".join(lines) + "\n")

    app = web.Application(client_max_size=MAX_BODY, middlewares=[count])
    app.add_routes([web.post("/v1/classify", classify), web.post("/v1/preprocess", preprocess),
                    web.get("/healthz", healthz), web.get("/metrics", metrics)])
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=60)
    await runner.setup()
    loops = [asyncio.create_task(b.run()) for b in batchers.values()]
    site = web.TCPSite(runner, host, int(port), backlog=1024, reuse_address=True)
    await site.start()
    addr = runner.addresses[0]
    print(f"listening on {addr[0]}:{addr[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    print("shutting down: finishing the requests in flight", file=sys.stderr, flush=True)
    # Stop listening, let the handlers of admitted requests finish (the
    # batchers keep running meanwhile), then stop the batchers.
    await runner.cleanup()
    for b in batchers.values():
        await b.drain()
    for t in loops:
        t.cancel()
    pool.shutdown()
    model_pool.shutdown()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        uvloop = None
    if uvloop is not None and not a.no_uvloop:
        uvloop.run(main())
    else:
        asyncio.run(main())
    sys.exit(0)
