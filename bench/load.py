"""Load: the production shape (nginx, gunicorn, PostgreSQL, Redis) under a CI fleet's mix.

Everything runs on loopback: a fresh PostgreSQL database (created on the server named by
--database-url, dropped afterwards), a private Redis, gunicorn (2 workers x 8 threads,
as `make run`), and nginx in front. For each level of concurrent keep-alive clients the
fleet runs for a fixed time through nginx and straight to gunicorn (the baseline), the
two taking turns at going first. The mix: ls-remote (info/refs) and shallow fetches
(upload-pack with `deepen 1`) with a deploy token, `/jwt/auth`, generic package
downloads and uploads, the deploy-token API with a personal access token,
`/ci/variables` with a runner token, and a few wrong passwords from 127.0.0.2. Every
upload answered 201 is then checked byte for byte on disk. Last, 16 slow-body clients
hold connections to nginx while the health check is timed.

    .venv/bin/python -m bench.load [--seconds 20] [--levels 50,100,200]

Prints, per target, level and endpoint: requests, errors by status, dropped connections
(closed or reset without an answer), p50/p95/p99 server time and requests per second,
and the CPU time gunicorn (with the git processes it runs) and nginx spent per request.
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from contextlib import ExitStack
from pathlib import Path

from bench.common import basic, jwt_ratio, postgres_database
from tests.conftest import ENCRYPTION_KEY, gunicorn
from tests.e2e.front import nginx
from tests.support import ROOT, VENV_BIN, free_port, redis_server

DOWNLOAD_SIZE = 256 * 1024
UPLOAD_SIZE = 64 * 1024
# Endpoint → (weight, statuses that are a correct answer).
MIX = {
    "git ls-remote": (15, {200}),
    "git shallow fetch": (8, {200}),
    "/jwt/auth": (20, {200}),
    "package download": (15, {200}),
    "package upload": (5, {201}),
    "API list tokens": (10, {200}),
    "/ci/variables": (15, {200}),
    "wrong password": (2, {401, 403}),  # 403 once 127.0.0.2 is banned, as it should be
}
DROPPED = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
           ConnectionAbortedError, http.client.IncompleteRead, http.client.BadStatusLine)


def flask(env, *args) -> str:
    return subprocess.run([str(VENV_BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True, timeout=300).stdout


def pkt(line: str) -> bytes:
    return f"{len(line) + 4:04x}{line}".encode()


class Fixture:
    """What the fleet uses: a project with a commit, its tokens, a file to download."""

    def __init__(self, env: dict, data_dir: Path, tmp: Path):
        flask(env, "db", "upgrade")
        flask(env, "users", "create", "ci-admin", "--email", "ci@example.com",
              "--password", "load-test-password-1", "--admin")
        flask(env, "groups", "create", "fleet")
        out = flask(env, "projects", "create", "fleet/app")
        self.project_id = int(re.search(r"id (\d+)", out).group(1))
        token = json.loads(flask(env, "deploy-tokens", "create", "fleet/app", "--name", "ci",
                                 "--scopes", "read_repository,read_registry,"
                                 "read_package_registry,write_package_registry"))
        self.user, self.secret = token["username"], token["token"]
        self.pat = flask(env, "users", "token", "ci-admin", "--name", "load",
                         "--scopes", "api").strip().splitlines()[-1]
        self.runner = json.loads(flask(env, "runners", "create", "fleet/app",
                                       "--description", "load"))["token"]
        self.basic = basic(self.user, self.secret)
        self.head = self._seed_repository(data_dir / "repositories" / "fleet" / "app.git", tmp)
        self.download = os.urandom(DOWNLOAD_SIZE)
        self.generic = f"/api/v4/projects/{self.project_id}/packages/generic"

    @staticmethod
    def _seed_repository(bare: Path, tmp: Path) -> str:
        git_env = dict(os.environ, GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1",
                       GIT_AUTHOR_NAME="l", GIT_AUTHOR_EMAIL="l@x", GIT_COMMITTER_NAME="l",
                       GIT_COMMITTER_EMAIL="l@x")
        work = tmp / "work"
        subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=git_env)
        for n in range(20):
            (work / f"file{n}.txt").write_bytes(os.urandom(4096).hex().encode())
        subprocess.run(["git", "add", "-A"], cwd=work, check=True, env=git_env)
        subprocess.run(["git", "commit", "-qm", "seed"], cwd=work, check=True, env=git_env)
        subprocess.run(["git", "push", "-q", str(bare), "main"], cwd=work, check=True, env=git_env)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, check=True, env=git_env,
                              capture_output=True, text=True).stdout.strip()

    def request(self, endpoint: str, rng: random.Random):
        """(method, path, body, headers, source address) for one request of `endpoint`."""
        repo = "/fleet/app.git"
        if endpoint == "git ls-remote":
            return ("GET", f"{repo}/info/refs?service=git-upload-pack", None,
                    {"Authorization": self.basic}, None)
        if endpoint == "git shallow fetch":
            body = (pkt(f"want {self.head} side-band-64k thin-pack ofs-delta no-progress\n")
                    + pkt("deepen 1\n") + b"0000" + pkt("done\n"))
            return ("POST", f"{repo}/git-upload-pack", body,
                    {"Authorization": self.basic,
                     "Content-Type": "application/x-git-upload-pack-request"}, None)
        if endpoint == "/jwt/auth":
            return ("GET", "/jwt/auth?service=container_registry&scope=repository:fleet/app:pull",
                    None, {"Authorization": self.basic}, None)
        if endpoint == "package download":
            return ("GET", f"{self.generic}/seed/1.0.0/seed.bin", None,
                    {"Deploy-Token": self.secret}, None)
        if endpoint == "package upload":
            data = rng.randbytes(UPLOAD_SIZE)
            name = f"u-{uuid.uuid4().hex}.bin"
            return ("PUT", f"{self.generic}/uploads/1.0.0/{name}", data,
                    {"Deploy-Token": self.secret}, None)
        if endpoint == "API list tokens":
            return ("GET", f"/api/v4/projects/{self.project_id}/deploy_tokens", None,
                    {"PRIVATE-TOKEN": self.pat}, None)
        if endpoint == "/ci/variables":
            return ("GET", "/ci/variables", None, {"Authorization": f"Bearer {self.runner}"}, None)
        wrong = basic(self.user, f"gldt-wrong{rng.random()}")
        return ("GET", "/jwt/auth?service=container_registry", None,
                {"Authorization": wrong}, ("127.0.0.2", 0))


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.times = defaultdict(list)
        self.errors = defaultdict(Counter)
        self.dropped = Counter()
        self.uploads: list[tuple[str, str]] = []  # (sha256, path) answered 201

    def add(self, endpoint, status, seconds, expected):
        with self.lock:
            self.times[endpoint].append(seconds)
            if status not in expected:
                self.errors[endpoint][status] += 1


def client(port: int, fixture: Fixture, results: Results, stop: float, seed: int):
    rng = random.Random(seed)
    endpoints = list(MIX)
    weights = [MIX[e][0] for e in endpoints]
    conns: dict = {}
    while time.monotonic() < stop:
        endpoint = rng.choices(endpoints, weights)[0]
        method, path, body, headers, source = fixture.request(endpoint, rng)
        conn = conns.get(source)
        if conn is None:
            conn = conns[source] = http.client.HTTPConnection("127.0.0.1", port, timeout=120,
                                                              source_address=source)
        start = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
        except DROPPED:
            with results.lock:
                results.dropped[endpoint] += 1
            conn.close()
            conns.pop(source, None)
            continue
        except (TimeoutError, socket.timeout):
            results.add(endpoint, "timeout", time.perf_counter() - start, MIX[endpoint][1])
            conn.close()
            conns.pop(source, None)
            continue
        results.add(endpoint, response.status, time.perf_counter() - start, MIX[endpoint][1])
        if endpoint == "package upload" and response.status == 201:
            with results.lock:
                results.uploads.append((hashlib.sha256(body).hexdigest(), path))
    for conn in conns.values():
        conn.close()


def drive(port: int, fixture: Fixture, clients: int, seconds: float) -> tuple[Results, float]:
    results = Results()
    stop = time.monotonic() + seconds
    threads = [threading.Thread(target=client, args=(port, fixture, results, stop, n),
                                daemon=True) for n in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.monotonic() - start


def percentile(values, q):
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def report(label: str, results: Results, elapsed: float) -> dict:
    total = sum(len(v) for v in results.times.values())
    dropped = sum(results.dropped.values())
    errors = sum(sum(c.values()) for c in results.errors.values())
    fives = sum(n for c in results.errors.values() for s, n in c.items()
                if isinstance(s, int) and s >= 500)
    print(f"\n{label}: {total} answered, {dropped} dropped, {errors} wrong answers "
          f"({fives} 5xx), {total / elapsed:.0f} requests/s")
    print(f"  {'endpoint':<20} {'requests':>8} {'errors':<14} {'dropped':>7} "
          f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'req/s':>6}")
    for endpoint in MIX:
        times = results.times.get(endpoint, [])
        if not times:
            continue
        errs = ",".join(f"{s}:{n}" for s, n in sorted(results.errors[endpoint].items(),
                                                     key=str)) or "-"
        print(f"  {endpoint:<20} {len(times):>8} {errs:<14} {results.dropped[endpoint]:>7} "
              f"{percentile(times, 50) * 1000:>7.0f} {percentile(times, 95) * 1000:>7.0f} "
              f"{percentile(times, 99) * 1000:>7.0f} {len(times) / elapsed:>6.1f}")
    return {"answered": total, "dropped": dropped, "errors": errors, "5xx": fives,
            "rps": total / elapsed}


def tree_cpu(root: int) -> float:
    """CPU seconds used by a process and all its descendants, live or reaped (Linux)."""
    parents, used = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            # ppid; utime, stime, and the children's it has waited for.
            parents[int(entry)] = int(fields[1])
            used[int(entry)] = sum(int(f) for f in fields[11:15])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(used.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def check_uploads(results: Results, data_dir: Path) -> int:
    """Every upload answered 201 is on disk with the bytes that were sent."""
    bad = 0
    for sha, _ in results.uploads:
        stored = data_dir / "packages" / "sha256" / sha[:2] / sha[2:4] / sha
        if not stored.is_file() or hashlib.sha256(stored.read_bytes()).hexdigest() != sha:
            bad += 1
    return bad


def slow_body_health(port: int, health_port: int, seconds: float = 5) -> list[float]:
    """Time the health check while 16 slow-body clients hold connections to `port`."""
    socks = []
    for _ in range(16):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST /users/sign_in HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n\r\nu")
        socks.append(sock)
    times = []
    conn = http.client.HTTPConnection("127.0.0.1", health_port, timeout=30)
    stop = time.monotonic() + seconds
    try:
        while time.monotonic() < stop:
            for sock in socks:
                sock.sendall(b"x")
            start = time.perf_counter()
            conn.request("GET", "/-/readiness")
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            times.append(time.perf_counter() - start)
            time.sleep(0.1)
    finally:
        conn.close()
        for sock in socks:
            sock.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--levels", default="50,100,200")
    parser.add_argument("--database-url", default=os.environ.get(
        "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    summary = {}
    with tempfile.TemporaryDirectory(prefix="gatehouse-load-") as tmpdir, ExitStack() as stack:
        database = stack.enter_context(postgres_database(args.database_url, "gatehouse_load"))
        tmp = Path(tmpdir)
        data_dir = tmp / "data"
        redis_url = stack.enter_context(redis_server(tmp))
        front_port = free_port()
        env = dict(os.environ, DATABASE_URL=database, GATEHOUSE_DATA_DIR=str(data_dir),
                   GATEHOUSE_SECRET_KEY="load", GATEHOUSE_REDIS_URL=redis_url,
                   GATEHOUSE_PASSWORD_HASH_METHOD="scrypt",
                   GATEHOUSE_ENCRYPTION_KEY=ENCRYPTION_KEY)
        fixture = Fixture(env, data_dir, tmp)
        settings = dict(REDIS_URL=redis_url, TRUSTED_PROXIES=1, ACCEL_REDIRECT="true",
                        EXTERNAL_URL=f"http://127.0.0.1:{front_port}", THREADS=8)
        app = stack.enter_context(gunicorn(database, data_dir, tmp, workers=2, **settings))
        front = stack.enter_context(nginx(data_dir, tmp / "nginx",
                                          [f"127.0.0.1:{app.port}"], port=front_port))
        seed = http.client.HTTPConnection("127.0.0.1", app.port, timeout=60)
        seed.request("PUT", f"{fixture.generic}/seed/1.0.0/seed.bin", body=fixture.download,
                     headers={"Deploy-Token": fixture.secret})
        assert seed.getresponse().status == 201
        # Throughput drifts with the machine; what each server spends per request does not.
        servers = {"gunicorn (and its git processes)": app.proc.pid, "nginx": front.proc.pid}
        print(f"{os.cpu_count()} CPUs; gunicorn 2 workers x 8 threads; PostgreSQL, Redis; "
              f"{args.seconds:.0f} s per run; keep-alive clients on loopback")
        targets = [("nginx -> gunicorn", front.port), ("gunicorn alone", app.port)]
        for level, clients in enumerate(levels):
            # Taking turns at going first, so a drift of the machine favours neither.
            for label, port in targets if level % 2 == 0 else targets[::-1]:
                before = {name: tree_cpu(pid) for name, pid in servers.items()}
                results, elapsed = drive(port, fixture, clients, args.seconds)
                line = report(f"{label}, {clients} clients", results, elapsed)
                answered = line["answered"] or 1
                print("  server CPU per answered request: " + ", ".join(
                    f"{name} {(tree_cpu(pid) - before[name]) / answered * 1000:.2f} ms"
                    for name, pid in servers.items()))
                line["uploads_bad"] = check_uploads(results, data_dir)
                line["uploads"] = len(results.uploads)
                print(f"  uploads answered 201: {line['uploads']}, stored intact: "
                      f"{line['uploads'] - line['uploads_bad']}")
                summary[f"{label} {clients}"] = line

        slow = slow_body_health(front.port, front.port)
        print(f"\n/-/readiness through nginx with 16 slow-body clients on it: "
              f"{len(slow)} checks, median {statistics.median(slow) * 1000:.1f} ms, "
              f"max {max(slow) * 1000:.1f} ms")
        ratio = jwt_ratio(front.port, fixture.basic, "repository:fleet/app:pull")
        print(f"through nginx (target >= 0.5): {ratio.describe()}")
    failed = [k for k, v in summary.items() if v["dropped"] or v["5xx"] or v["uploads_bad"]]
    print("\nzero dropped, zero 5xx, every upload intact:",
          "yes" if not failed else f"NO ({', '.join(failed)})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
