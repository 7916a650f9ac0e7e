"""(g) `tl-keras serve` under load: N concurrent clients on 127.0.0.1 for a bounded time, batching on vs off.

A classifier on the Hub MobileNetV2 1.0 backbone gets a quick head on real photos and is exported; then
for each arm a `tl-keras serve` process serves it and `--clients` client threads send
`serving_bytes` requests (one real val JPEG each, base64) for `--seconds`, every `--invalid-every`-th
request an invalid one (a payload that is not an image, or a body that is not JSON). Counted: valid
requests that failed (must be 0), invalid requests not answered 400 (must be 0), p50 / p99 latency of
the valid ones, and valid images per second. Bounded: each arm stops after `--seconds`, and no client
sends another request after that.

Run:  python benchmarks/serve_load.py [--clients 8] [--seconds 20] [--image-size 224]
Prints a table, then throughput with batching / without last.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import DATASETS, HUB_100, require, table  # noqa: E402


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            json.loads(response.read())
            return response.status
    except urllib.error.HTTPError as err:
        json.loads(err.read())  # every error is TF Serving's JSON
        return err.code


def _load(url: str, valid: list[bytes], invalid: list[bytes], clients: int, seconds: float, invalid_every: int) -> dict:
    latencies, failed_valid, wrong_invalid, invalid_sent = [], [0], [0], [0]
    lock, stop_at = threading.Lock(), time.perf_counter() + seconds

    def client(index: int) -> None:
        n = 0
        while time.perf_counter() < stop_at:
            n += 1
            bad = n % invalid_every == 0
            body = invalid[n % len(invalid)] if bad else valid[(index + n) % len(valid)]
            start = time.perf_counter()
            try:
                status = _post(url, body)
            except Exception:  # connection errors count as failures
                status = -1
            elapsed = time.perf_counter() - start
            with lock:
                if bad:
                    invalid_sent[0] += 1
                    wrong_invalid[0] += status != 400
                elif status == 200:
                    latencies.append(elapsed)
                else:
                    failed_valid[0] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")  # noqa: E731
    return {"valid ok": len(latencies), "valid failed": failed_valid[0], "invalid sent": invalid_sent[0],
            "invalid not 400": wrong_invalid[0], "p50 ms": f"{pick(0.5):.0f}", "p99 ms": f"{pick(0.99):.0f}",
            "images/s": f"{len(latencies) / wall:.1f}"}


def _serve(model: str, port: int, batch_size: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tl_keras.cli", "serve", model, "--port", str(port),
                             "--max-batch-size", str(batch_size)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if not proc.stdout.readline().startswith("serving "):
        proc.kill()
        sys.exit("the server did not start")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="hymenoptera", choices=sorted(DATASETS))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--invalid-every", type=int, default=5)
    args = parser.parse_args()

    import tl_keras

    with tempfile.TemporaryDirectory() as tmp:
        result = tl_keras.train(require(DATASETS[args.dataset]), backbone=require(HUB_100), image_size=args.image_size,
                                head_epochs=2, fine_tune_epochs=0, output=os.path.join(tmp, "model"), evaluate=False, verbose=0)
        name = os.path.basename(os.path.dirname(result.export_dir))
        photos = [p for p in result.data.val.paths if p.lower().endswith((".jpg", ".jpeg"))][:32]
        valid = [json.dumps({"signature_name": "serving_bytes", "instances": [
            {"image_bytes": {"b64": base64.b64encode(open(p, "rb").read()).decode()}}]}).encode() for p in photos]
        invalid = [json.dumps({"signature_name": "serving_bytes", "instances": [
            {"image_bytes": {"b64": base64.b64encode(b"not an image at all").decode()}}]}).encode(), b"{not json"]
        rows = []
        for arm, batch_size in (("batching on (max 32, 5 ms)", 32), ("batching off", 1)):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            proc = _serve(os.path.dirname(result.export_dir), port, batch_size)
            url = f"http://127.0.0.1:{port}/v1/models/{name}:predict"
            try:
                _post(url, valid[0])  # warm-up: the first call traces
                rows.append({"arm": arm, "clients": args.clients, "seconds": args.seconds,
                             **_load(url, valid, invalid, args.clients, args.seconds, args.invalid_every)})
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    print(table(rows, ["arm", "clients", "seconds", "valid ok", "valid failed", "invalid sent", "invalid not 400",
                       "p50 ms", "p99 ms", "images/s"]))
    on, off = (float(r["images/s"]) for r in rows)
    print(f"throughput with batching / without: {on / off:.2f}x")


if __name__ == "__main__":
    main()
