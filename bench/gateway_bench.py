"""Gateway overhead, in one run: direct to a mock upstream, through tallybook, nginx and LiteLLM.

    .venv/bin/python bench/gateway_bench.py [--seconds 10] [--rounds 3] [--rates 100,500] [--skip-litellm] [--skip-nginx]
    make bench-gateway

Processes on loopback: a mock OpenAI upstream (uvloop + httptools, a fixed chat completion with usage
and its streamed variant; bench/gateway_load.py), then in front of it
  (b) `tallybook gateway` (one worker, SQLite ledger; metering, pricing, a budget, a rate limit and
      the spool ON: the real production path),
  (c) nginx `proxy_pass` (Debian package, installed with apt-get when missing; one worker, keep-alive
      to the upstream, its own config in a temp dir),
  (r) py-relay: the floor of any Python relay (bench/gateway_load.py relay: uvloop + httptools, whole
      requests forwarded on a keep-alive upstream connection, answers written back unparsed; nothing
      else), so the run shows what tallybook adds beyond what Python itself costs,
  (d) the LiteLLM proxy (`litellm[proxy]` in bench/.venv-litellm, installed on first use; skipped with
      a loud line when it will not install or start),
and a load generator in its own process: open loop at a fixed arrival rate (20, 100 and 500 req/s), then
flat out for the maximum (wrk with 32 connections when installed). The fast paths (direct, nginx,
py-relay, tallybook) are measured in `--rounds` interleaved rounds (default 3: each sees the same
minutes of a drifting machine) and their latencies pooled; each round's added p50 is shown beside the
goals. LiteLLM runs last, once (a saturated proxy works off its backlog after its run: it must not
steal the CPU from the next one). Added latency = the path's percentile minus the direct percentile; a
request still unanswered `--seconds` after the last was sent counts as an error and as answered then (a
floor). The goals of issue 4 are checked at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LOAD = [sys.executable, str(ROOT / "bench" / "gateway_load.py")]
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
# The newest litellm whose `proxy` extra resolves from PyPI here (1.110 wants `litellm-proxy`, 1.108.14
# `litellm-proxy-extras==0.4.110.post1`, neither published).
LITELLM_VERSION = "1.108.7"
# LiteLLM refuses to start without a master key (no key: no authentication); it checks it on each request,
# as tallybook checks its virtual key. No database: no spend logs (tallybook's spool and ledger stay on).
MASTER_KEY = "sk-bench-master-0123456789abcdef"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the ledger."}], "max_tokens": 64}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(url: str, seconds: float = 30, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


def loud(message: str) -> None:
    print(f"\n!!! {message}\n", flush=True)


@dataclass
class Path_:
    name: str
    url: str
    key: str = "sk-bench"
    results: dict[str, dict] = field(default_factory=dict)


# --- the contenders ---------------------------------------------------------------------------------

def start_tallybook(tmp: Path, upstream: str, procs: list) -> Path_:
    env = {**os.environ, "TALLYBOOK_DATABASE_URL": f"sqlite:///{tmp / 'ledger.db'}",
           "TALLYBOOK_MASTER_KEY_FILE": str(tmp / "master.key"), "TALLYBOOK_GATEWAY_SPOOL_DIR": str(tmp / "spool"),
           "OPENAI_API_KEY": "sk-bench"}
    cli = [sys.executable, "-m", "tallybook.cli"]
    subprocess.run([*cli, "providers", "add", "openai", "--base-url", upstream], env=env, check=True,
                   capture_output=True)
    created = subprocess.run([*cli, "keys", "create", "--name", "bench", "--customer", "bench", "--budget", "1000000",
                              "--period", "day", "--rpm", "100000000", "--format", "json"], env=env, check=True,
                             capture_output=True, text=True)
    port = free_port()
    log = (tmp / "tallybook.log").open("wb")
    proc = subprocess.Popen([*cli, "gateway", "--port", str(port), "--workers", "1"], env=env, stderr=log,
                            stdout=log)
    procs.append(("tallybook", proc))
    url = f"http://127.0.0.1:{port}"
    if not wait_up(url + "/readyz", 60, proc):
        raise SystemExit(f"tallybook gateway did not start: {(tmp / 'tallybook.log').read_text()[-2000:]}")
    return Path_("tallybook", url, json.loads(created.stdout)["secret"])


NGINX_CONF = """
worker_processes 1;
{user}
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fastcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  upstream mock {{ server 127.0.0.1:{upstream}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""


def start_nginx(tmp: Path, upstream_port: int, procs: list) -> Path_ | None:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None and shutil.which("apt-get"):
        print("nginx is missing: apt-get install nginx ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "nginx"], capture_output=True, check=False)
        binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        loud("SKIPPING nginx: not installed and apt-get could not install it")
        return None
    port = free_port()
    conf = tmp / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(tmp=tmp, upstream=upstream_port, port=port, user=user))
    proc = subprocess.Popen([binary, "-p", str(tmp), "-c", str(conf)], stderr=subprocess.DEVNULL)
    procs.append(("nginx", proc))
    url = f"http://127.0.0.1:{port}"
    if not wait_up(url + "/v1/models", 15, proc):
        loud("SKIPPING nginx: it did not start")
        return None
    return Path_("nginx", url)


def start_relay(up_url: str, procs: list) -> Path_ | None:
    port = free_port()
    proc = subprocess.Popen([*LOAD, "relay", "--port", str(port), "--url", up_url], stdout=subprocess.PIPE)
    procs.append(("py-relay", proc))
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        loud("SKIPPING py-relay: it did not start")
        return None
    return Path_("py-relay", f"http://127.0.0.1:{port}")


def litellm_binary() -> Path | None:
    binary = LITELLM_VENV / "bin" / "litellm"
    if binary.exists():
        return binary
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} (once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    done = subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0 or not binary.exists():
        loud(f"SKIPPING LiteLLM: litellm[proxy] did not install: {done.stderr.strip()[-500:]}")
        return None
    return binary


def start_litellm(tmp: Path, upstream: str, procs: list) -> Path_ | None:
    binary = litellm_binary()
    if binary is None:
        return None
    conf = tmp / "litellm.yaml"
    conf.write_text(f"""model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {upstream}/v1
      api_key: sk-bench
general_settings:
  master_key: {MASTER_KEY}
litellm_settings:
  telemetry: false
""")
    port = free_port()
    # LiteLLM fetches its model cost map from GitHub at start unless told to use its bundled copy: without
    # the internet that fetch hangs its requests (seen here: every request timed out).
    env = {**os.environ, "LITELLM_LOG": "ERROR", "DISABLE_SCHEMA_UPDATE": "true", "LITELLM_TELEMETRY": "False",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    log = (tmp / "litellm.log").open("wb")
    proc = subprocess.Popen([str(binary), "--config", str(conf), "--host", "127.0.0.1", "--port", str(port),
                             "--num_workers", "1"], env=env, stdout=log, stderr=log)
    procs.append(("litellm", proc))
    url = f"http://127.0.0.1:{port}"
    if not wait_up(url + "/health/liveliness", 180, proc):
        loud(f"SKIPPING LiteLLM: the proxy did not start: {(tmp / 'litellm.log').read_text()[-1500:]}")
        return None
    return Path_("litellm", url, MASTER_KEY)


# --- load ---------------------------------------------------------------------------------------------

def open_loop(path: Path_, rate: int, seconds: float, stream: bool) -> dict:
    """One measurement: the raw latencies (seconds) and the error count, or {"error": ...}."""
    args = [*LOAD, "load", "--url", path.url, "--key", path.key, "--rate", str(rate), "--seconds", str(seconds)]
    done = subprocess.run([*args, "--stream"] if stream else args, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-300:]}
    result = json.loads(done.stdout)
    if len(result["latencies"]) < 20:
        return {"error": f"only {len(result['latencies'])} answers; errors {result['errors'][:5]}"}
    return {"latencies": result["latencies"], "errors": len(result["errors"]), "rate": result["rate"]}


def summary(rounds: list[dict]) -> dict:
    """Percentiles (ms) over the latencies of every round pooled, and each round's own p50."""
    failed = [r for r in rounds if "error" in r]
    if failed:
        return {"error": failed[0]["error"]}
    lat = sorted(x for r in rounds for x in r["latencies"])
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"p50": statistics.median(lat) * 1000, "p95": q[94] * 1000, "p99": q[98] * 1000,
            "errors": sum(r["errors"] for r in rounds), "n": len(lat),
            "round_p50": [statistics.median(r["latencies"]) * 1000 for r in rounds]}


def max_throughput(path: Path_, seconds: float) -> dict:
    if shutil.which("wrk"):
        script = Path(tempfile.mkdtemp()) / "post.lua"
        script.write_text(f"wrk.method = 'POST'\nwrk.body = '{json.dumps(BODY)}'\n"
                          f"wrk.headers['Content-Type'] = 'application/json'\n"
                          f"wrk.headers['Authorization'] = 'Bearer {path.key}'\n")
        done = subprocess.run(["wrk", "-t1", "-c32", f"-d{int(seconds)}s", "-s", str(script),
                               path.url + "/v1/chat/completions"], capture_output=True, text=True, timeout=600, check=False)
        rps = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
        errs = re.search(r"Socket errors: (.*)", done.stdout)
        return {"rps": float(rps.group(1)) if rps else 0.0, "errors": int(bad.group(1)) if bad else 0,
                "tool": "wrk", "socket_errors": errs.group(1) if errs else ""}
    done = subprocess.run([*LOAD, "max", "--url", path.url, "--key", path.key, "--seconds", str(seconds)],
                          capture_output=True, text=True, timeout=600, check=False)
    return {**json.loads(done.stdout), "tool": "asyncio"}


# --- report -------------------------------------------------------------------------------------------

def machine() -> str:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu} x {os.cpu_count()} vCPU, Linux {platform.release()}, Python {platform.python_version()}, "
            f"load average {os.getloadavg()[0]:.1f} at start")


def report(paths: list[Path_], scenarios: list[str]) -> None:
    direct = paths[0]
    print(f"\n{'scenario':<16} {'path':<10} {'p50 ms':>8} {'p95':>8} {'p99':>8} {'added p50':>10} {'added p95':>10} "
          f"{'added p99':>10} {'errors':>6}")
    for scenario in scenarios:
        base = direct.results.get(scenario, {})
        for path in paths:
            r = path.results.get(scenario)
            if r is None:
                continue
            if "error" in r:
                print(f"{scenario:<16} {path.name:<10} failed: {r['error']}")
                continue
            added = ["" if path is direct or "p50" not in base else f"{r[q] - base[q]:+.3f}" for q in ("p50", "p95", "p99")]
            print(f"{scenario:<16} {path.name:<10} {r['p50']:>7.3f}  {r['p95']:>7.3f}  {r['p99']:>7.3f}  "
                  f"{added[0]:>10} {added[1]:>10} {added[2]:>10} {r['errors']:>6}")
    print(f"\n{'path':<10} {'max req/s':>10} {'errors':>7}")
    for path in paths:
        r = path.results.get("max", {})
        print(f"{path.name:<10} {r.get('rps', 0):>10.0f} {r.get('errors', 0):>7}  ({r.get('tool', '-')})")


def added(path: Path_ | None, direct: Path_, scenario: str, q: str) -> float | None:
    if path is None or scenario not in path.results or "p50" not in path.results[scenario]:
        return None
    return path.results[scenario][q] - direct.results[scenario][q]


def per_round(path: Path_, direct: Path_, scenario: str = "json@500") -> str:
    """Each round's added p50, to show the spread behind the pooled figure."""
    mine, base = path.results.get(scenario, {}).get("round_p50"), direct.results.get(scenario, {}).get("round_p50")
    if not mine or not base or len(mine) < 2:
        return ""
    return " (rounds: " + ", ".join(f"{a - b:.3f}" for a, b in zip(mine, base, strict=True)) + ")"


def goals(paths: dict[str, Path_]) -> None:
    direct, tally = paths["direct"], paths["tallybook"]
    p50, p99 = added(tally, direct, "json@500", "p50"), added(tally, direct, "json@500", "p99")
    print("\nGoals (issue 4), JSON at 500 req/s:")

    def line(ok: bool | None, text: str) -> None:
        print(f"  [{'met' if ok else 'NOT MET' if ok is not None else 'n/a'}] {text}")

    line(p50 is not None and p50 <= 0.5, f"tallybook added p50 <= 0.5 ms: {p50:.3f} ms{per_round(tally, direct)}"
         if p50 is not None else "p50")
    line(p99 is not None and p99 <= 2.0, f"tallybook added p99 <= 2 ms: {p99:.3f} ms" if p99 is not None else "p99")
    lite = paths.get("litellm")
    l50, l99 = added(lite, direct, "json@500", "p50"), added(lite, direct, "json@500", "p99")
    if l50 is None or p50 is None:
        line(None, "10x lower added latency than LiteLLM: LiteLLM was not measured")
    else:
        ratio50 = l50 / max(p50, 1e-3)
        ratio99 = (l99 or 0) / max(p99 or 0, 1e-3)
        line(ratio50 >= 10, f"10x lower added latency than LiteLLM: p50 {l50:.3f} vs {p50:.3f} ms = {ratio50:.1f}x, "
                            f"p99 {l99:.3f} vs {p99:.3f} ms = {ratio99:.1f}x")
    ngx = paths.get("nginx")
    n50 = added(ngx, direct, "json@500", "p50")
    if n50 is None or p50 is None:
        line(None, "within 3x of nginx: nginx was not measured")
    else:
        ratio = p50 / max(n50, 1e-3)
        line(ratio <= 3, f"within 3x of nginx (added p50): {p50:.3f} vs {n50:.3f} ms = {ratio:.1f}x"
                         f"{per_round(ngx, direct)}")
        t_rps, n_rps = tally.results.get("max", {}).get("rps", 0), ngx.results.get("max", {}).get("rps", 0)
        if t_rps and n_rps:
            print(f"         max throughput: tallybook {t_rps:.0f} vs nginx {n_rps:.0f} req/s = "
                  f"{n_rps / t_rps:.1f}x fewer")
    relay = paths.get("py-relay")
    r50 = added(relay, direct, "json@500", "p50")
    if r50 is not None and p50 is not None:
        versus = f" = {r50 / n50:.1f}x nginx's" if n50 else ""
        print(f"  floor of any Python relay (py-relay, forwarding bytes and nothing else): adds {r50:.3f} ms at p50"
              f"{versus}{per_round(relay, direct)}; tallybook adds {p50 - r50:+.3f} ms on top of it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="measuring time per path and rate")
    parser.add_argument("--rates", default="20,100,500")
    parser.add_argument("--max-seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the fast paths, interleaved; their latencies are pooled")
    parser.add_argument("--no-stream", action="store_true", help="leave out the streamed scenario")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-nginx", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tallybook-gw-bench-"))
    procs: list[tuple[str, subprocess.Popen]] = []
    print(f"Machine: {machine()}", flush=True)
    try:
        up_port = free_port()
        upstream = subprocess.Popen([*LOAD, "upstream", "--port", str(up_port)], stdout=subprocess.PIPE)
        procs.append(("upstream", upstream))
        assert upstream.stdout is not None and upstream.stdout.readline().strip() == b"ready"
        up_url = f"http://127.0.0.1:{up_port}"
        found: dict[str, Path_ | None] = {"direct": Path_("direct", up_url)}
        found["tallybook"] = start_tallybook(tmp, up_url, procs)
        found["nginx"] = None if args.skip_nginx else start_nginx(tmp, up_port, procs)
        found["py-relay"] = start_relay(up_url, procs)
        found["litellm"] = None if args.skip_litellm else start_litellm(tmp, up_url, procs)
        paths = [p for p in found.values() if p is not None]
        print("Paths: " + ", ".join(f"{p.name} {p.url}" for p in paths), flush=True)
        scenarios = [f"json@{rate}" for rate in args.rates.split(",")]
        if not args.no_stream:
            scenarios.append(f"stream@{args.rates.split(',')[-1]}")
        # Fast paths interleaved, round by round (the machine drifts over minutes: each path sees the same
        # minutes), latencies pooled over the rounds; LiteLLM last, on its own: a path that cannot keep up
        # goes on working off its backlog after its run and must not steal the CPU from the next path's
        # measurement (2 vCPUs shared by all).
        order = ("direct", "nginx", "py-relay", "tallybook", "litellm")
        fast = sorted((p for p in paths if p.name != "litellm"), key=lambda p: order.index(p.name))
        slow = [p for p in paths if p.name == "litellm"]
        for group, rounds in ((fast, args.rounds), (slow, 1)):
            for scenario in scenarios:
                kind, rate = scenario.split("@")
                measured: dict[str, list[dict]] = {p.name: [] for p in group}
                for round_no in range(rounds):
                    for path in group:
                        print(f"  {scenario:<12} {path.name} (round {round_no + 1} of {rounds}) ...", flush=True)
                        measured[path.name].append(open_loop(path, int(rate), args.seconds, kind == "stream"))
                        time.sleep(2)
                for path in group:
                    path.results[scenario] = summary(measured[path.name])
            for path in group:
                print(f"  max          {path.name} ...", flush=True)
                path.results["max"] = max_throughput(path, args.max_seconds)
                time.sleep(2)
        report(paths, scenarios)
        goals({name: p for name, p in found.items() if p is not None})
        (tmp / "results.json").write_text(json.dumps({p.name: p.results for p in paths}, indent=1))
        print(f"\nraw results: {tmp / 'results.json'}")
    finally:
        for name, proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT if name == "nginx" else signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
