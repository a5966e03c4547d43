#!/usr/bin/env python3
"""The figures behind the requests and limits in k8s/base: runs every role as its own process
(as the cluster does) against PostgreSQL, Redis and an S3 server, puts load on each through the
gateway and the Redis stream, and reports per process its RSS (idle, per load, peak) and CPU
(mean and peak cores over 1-second samples) per load.

    python3 tools/kube-check/measure.py --binary target/release/outpost \\
        --postgres postgres://postgres@127.0.0.1:5432/test --redis redis://127.0.0.1:6379 \\
        --s3 http://127.0.0.1:9200

Measure a release build. Needs wrk and redis-cli. Runs under a fresh OUTPOST_NAMESPACE
(t<8 hex>_, which .ci/run clears) and takes about two and a half minutes."""

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request

ROLES = ("media", "telemetry", "plotting", "ingest", "gateway")
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def memory_mib(pid: int, key: str) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default="target/release/outpost")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--s3", default="http://127.0.0.1:9200")
    parser.add_argument("--out", default="target/measure")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    namespace = "t%08x_" % random.getrandbits(32)
    ports = {role: free_port() for role in ROLES}
    env = dict(os.environ)
    env.update({
        "OUTPOST_DATABASE_URL": args.postgres, "OUTPOST_REDIS_URL": args.redis, "OUTPOST_S3_ENDPOINT": args.s3,
        "OUTPOST_S3_ACCESS_KEY": "outpost", "OUTPOST_S3_SECRET_KEY": "outpost-secret",
        "OUTPOST_NAMESPACE": namespace, "OUTPOST_LOG": "warn",
        # Loads never reach out of the machine.
        "OUTPOST_OPENSENSEMAP_URL": "http://127.0.0.1:9",
    })
    for role in ROLES:
        env[f"OUTPOST_{role.upper()}_ADDR"] = f"127.0.0.1:{ports[role]}"
        if role != "gateway":
            env[f"OUTPOST_{role.upper()}_URL"] = f"http://127.0.0.1:{ports[role]}"
    procs = {}
    for role in ROLES:
        log = open(os.path.join(args.out, f"{role}.log"), "w")
        procs[role] = subprocess.Popen([args.binary, role], env=env, stderr=log, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{ports['gateway']}"
    for _ in range(300):
        try:
            if urllib.request.urlopen(base + "/readyz", timeout=2).status == 200:
                break
        except OSError:
            pass
        time.sleep(0.2)
    else:
        sys.exit("the mesh did not become ready")

    results = {role: {} for role in procs}
    time.sleep(3)
    for role, p in procs.items():
        results[role]["idle_rss_mib"] = round(memory_mib(p.pid, "VmRSS"), 1)

    def sample(name, load):
        start = {r: cpu_seconds(p.pid) for r, p in procs.items()}
        last, last_at = dict(start), time.time()
        peak = {r: 0.0 for r in procs}
        rss = {r: 0.0 for r in procs}
        done, out = threading.Event(), {}
        began = time.time()
        threading.Thread(target=lambda: (out.setdefault("text", load()), done.set())).start()
        while not done.wait(1.0):
            now = time.time()
            for r, p in procs.items():
                used = cpu_seconds(p.pid)
                peak[r] = max(peak[r], (used - last[r]) / (now - last_at))
                last[r] = used
                rss[r] = max(rss[r], memory_mib(p.pid, "VmRSS"))
            last_at = now
        wall = time.time() - began
        for r, p in procs.items():
            results[r][name] = {
                "cpu_mean": round((cpu_seconds(p.pid) - start[r]) / wall, 2),
                "cpu_peak": round(peak[r], 2),
                "rss_mib": round(max(rss[r], memory_mib(p.pid, "VmRSS")), 1),
            }
        lines = [l.strip() for l in out.get("text", "").splitlines()
                 if l.strip().startswith(("Requests/sec", "Non-2xx", "50%", "99%", "Socket"))]
        print(f"{name} ({wall:.0f} s): {' | '.join(lines) or out.get('text', '').strip()}", flush=True)

    def wrk(path, script=None, connections=32, seconds=20):
        cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
        if script:
            cmd += ["-s", script]
        return subprocess.run(cmd + [base + path], capture_output=True, text=True).stdout

    add = os.path.join(args.out, "add_rawdata.lua")
    with open(add, "w") as f:
        f.write("""
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
counter = 0
request = function()
  counter = counter + 1
  local ts = os.date("!%Y-%m-%d %H:%M:%S", 1700000000 + counter * 8 + tid)
  local body = '{"sensor": "temperature", "value": ' .. (counter % 40) .. ', "timestamp": "' .. ts .. '", "device": "bench-' .. (counter % 50) .. '"}'
  return wrk.format("POST", "/add_rawdata/", {["Content-Type"] = "application/json"}, body)
end
""")
    objects = os.path.join(args.out, "objects.lua")
    with open(objects, "w") as f:
        blob = "QUFB" * (64 * 1024 // 3 - 4)
        f.write("""
counter = 0
request = function()
  counter = counter + 1
  local body = '{"object": {"kind": "bench", "contentType": "text/plain"}, "content": "%s' .. string.format("%%08d", counter) .. '"}'
  return wrk.format("POST", "/api/v1/objects", {["Content-Type"] = "application/json"}, body)
end
""" % blob)

    def stream(count=200_000):
        commands = []
        for i in range(count):
            ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(1600000000 + i))
            payload = json.dumps({"sensor": "humidity", "value": i % 100, "timestamp": ts, "device": f"s{i % 100}"})
            commands.append(f"XADD {namespace}sensor_readings * payload {json.dumps(payload)}\n")
        began = time.time()
        subprocess.run(["redis-cli", "-u", args.redis, "--pipe"], input="".join(commands), capture_output=True, text=True)
        while time.time() - began < 120:
            info = subprocess.run(["redis-cli", "-u", args.redis, "XINFO", "GROUPS", f"{namespace}sensor_readings"],
                                  capture_output=True, text=True).stdout.split()
            if "lag" in info and info[info.index("lag") + 1] == "0" and info[info.index("pending") + 1] == "0":
                return f"{count} stream entries written and consumed in {time.time() - began:.1f} s"
            time.sleep(0.2)
        return f"{count} stream entries NOT consumed within 120 s (see {args.out}/ingest.log)"

    sample("redis stream 200k → ingest → telemetry", stream)
    sample("GET /api/v1/devices (c32)", lambda: wrk("/api/v1/devices"))
    sample("POST /add_rawdata/ (c32)", lambda: wrk("/", add))
    sample("POST /api/v1/objects 64 KiB (c16)", lambda: wrk("/", objects, connections=16))
    sample("GET /api/v1/plotJobs (c32)", lambda: wrk("/api/v1/plotJobs"))
    sample("GET /readyz (c8)", lambda: wrk("/readyz", connections=8, seconds=10))
    for role, p in procs.items():
        results[role]["peak_rss_mib"] = round(memory_mib(p.pid, "VmHWM"), 1)
        p.terminate()
    for p in procs.values():
        p.wait(60)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print()
    for role, figures in results.items():
        loads = {k: v for k, v in figures.items() if isinstance(v, dict)}
        busiest = max(loads, key=lambda k: loads[k]["cpu_peak"])
        print(f"{role:10} RSS idle {figures['idle_rss_mib']} MiB, peak {figures['peak_rss_mib']} MiB; "
              f"CPU peak {loads[busiest]['cpu_peak']} (mean {loads[busiest]['cpu_mean']}) cores under {busiest}")
    print(f"namespace {namespace}; details in {args.out}/results.json")


if __name__ == "__main__":
    main()
