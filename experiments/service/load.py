"""Bounded load test of `autopeft serve` on loopback: 20 clients polling a search's status and one events stream
for 60 s while two searches run (real trials: MiniLM on a slice of SST-2, the local executor in each driver).
Writes results.json and prints requests per second and latency percentiles.

    python experiments/service/load.py --data-dir ../shared/data/glue [--seconds 60] [--clients 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from autopeft.client import Client
from autopeft.service.local import LocalService


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder in GLUE layout holding SST-2")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.0, help="seconds each client waits between requests "
                        "(default 0: back to back, the most load)")
    parser.add_argument("--out", help="JSON file to write (default: results-interval-<interval>.json here)")
    args = parser.parse_args()
    data = Path(args.data_dir).resolve()
    folder = Path(tempfile.mkdtemp(prefix="autopeft-load-"))
    service = LocalService(folder / "runs", f"sqlite:///{folder / 'service.db'}", (data,),
                           extra=("--max-running", "2", "--max-running-per-user", "2"))
    token = service.token("load")
    service.start()
    client = Client(service.url, token)
    searches = []
    for i in range(2):  # enough trials to outlast the measurement
        searches.append(client.submit(id=f"load-{i}", task="sst2", data_dir=".", trials=50, max_steps=20,
                                      train_subset=500, eval_subset=100, executor="local", sampler="random",
                                      seed=i, cpus_per_trial=1)["id"])
    while any(client.status(s)["state"] != "running" for s in searches):
        time.sleep(0.5)
    time.sleep(60)  # measured once both drivers have read the data and train (start-up takes about 50 s here)
    latencies: list[float] = []
    errors = [0]
    events = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds

    def poll(k: int) -> None:
        target = f"{service.url}/v1/searches/{searches[k % 2]}"
        request = urllib.request.Request(target, headers={"Authorization": f"Bearer {token}"})
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    answer.read()
                took = time.perf_counter() - started
                with lock:
                    latencies.append(took)
            except OSError:
                with lock:
                    errors[0] += 1
            time.sleep(args.interval)

    def follow() -> None:
        request = urllib.request.Request(f"{service.url}/v1/searches/{searches[0]}/events",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as stream:
            for line in stream:
                if line.startswith(b"event:"):
                    events[0] += 1
                if time.monotonic() > stop_at:
                    return

    threads = [threading.Thread(target=poll, args=(k,)) for k in range(args.clients)]
    threads.append(threading.Thread(target=follow, daemon=True))
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads[:-1]:
        t.join()
    elapsed = time.monotonic() - began
    done = [client.status(s)["trials_done"] for s in searches]
    for s in searches:
        client.stop(s)
    for s in searches:
        client.wait(s, timeout=300)
    service.stop()
    ordered = sorted(latencies)
    result = {
        "clients": args.clients, "interval_seconds": args.interval, "seconds": round(elapsed, 1),
        "requests": len(latencies), "errors": errors[0],
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "latency_ms": {"median": round(1000 * statistics.median(ordered), 1),
                       "p95": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1),
                       "p99": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1),
                       "max": round(1000 * ordered[-1], 1)},
        "events_received": events[0], "trials_done_at_end": done,
        "load_average_after": [round(x, 2) for x in os.getloadavg()], "cores": os.cpu_count(),
    }
    out = Path(args.out or Path(__file__).with_name(f"results-interval-{args.interval:g}.json"))
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
