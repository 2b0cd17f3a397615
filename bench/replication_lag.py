#!/usr/bin/env python3
"""Replication lag under a steady admin write load (loopback only).

A writer thread adds users on the primary through the REST API at RATE per
second; for every PROBE-th one, a prober polls the replica (every 2 ms, at
most 10 s) until the user is there and records the time from the primary's
201 to the replica's 200. Prints p50/p95/p99/max in ms.

usage: replication_lag.py PRIMARY_URL REPLICA_URL API_KEY [RATE] [SECONDS]
"""
import http.client
import json
import ssl
import sys
import threading
import time
import urllib.parse

primary, replica, key = sys.argv[1], sys.argv[2], sys.argv[3]
rate = float(sys.argv[4]) if len(sys.argv) > 4 else 50.0
seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 20.0
ctx = ssl._create_unverified_context()  # loopback benchmark against self-signed certificates


def conn(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=10)


def request(c, method, path, body=None):
    headers = {"Authorization": f"Bearer {key}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    r.read()
    return r.status


lags, errors = [], []
lock = threading.Lock()
stamp = f"{int(time.time())}"


def probe(name, t0):
    c = conn(replica)
    end = t0 + 10
    while time.monotonic() < end:
        if request(c, "GET", f"/api/v1/users/{name}") == 200:
            with lock:
                lags.append((time.monotonic() - t0) * 1000)
            return
        time.sleep(0.002)
    with lock:
        errors.append(name)


def writer():
    c = conn(primary)
    n, start = 0, time.monotonic()
    threads = []
    while time.monotonic() - start < seconds:
        name = f"lag-{stamp}-{n}"
        status = request(c, "POST", "/api/v1/users", {"username": name})
        t0 = time.monotonic()
        if status != 201:
            errors.append(f"{name}: {status}")
        elif n % 5 == 0:
            t = threading.Thread(target=probe, args=(name, t0))
            t.start()
            threads.append(t)
        n += 1
        next_at = start + n / rate
        time.sleep(max(0.0, next_at - time.monotonic()))
    for t in threads:
        t.join()
    return n


n = writer()
lags.sort()
q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))] if lags else float("nan")
print(
    f"replication lag: {n} users added at {rate:.0f}/s, {len(lags)} probed: "
    f"p50 {q(0.50):.1f} ms, p95 {q(0.95):.1f} ms, p99 {q(0.99):.1f} ms, max {lags[-1] if lags else float('nan'):.1f} ms; "
    f"{len(errors)} errors"
)
sys.exit(1 if errors else 0)
