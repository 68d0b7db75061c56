"""Package throughput: Gatehouse (alone, and behind its nginx) vs. nginx and a plain copy.

    .venv/bin/python bench/packages.py [--size-mb 500] [--runs 5]

Downloads: the same 500 MB file through Gatehouse's generic package endpoint, straight
from gunicorn (sendfile) and through the front (`nginx config`: the app authorizes, nginx
sends the file via X-Accel-Redirect), and from a bare nginx serving it from disk, all warm
in the page cache, fetched with curl into /dev/null. Uploads: curl PUT to Gatehouse,
alone (streamed, hashed, fsynced, renamed, row committed) and through the front (nginx
writes the body to its spool beside the store; the app hashes, fsyncs and renames it) vs.
copying the file and fsyncing the copy. Prints the medians and the ratios (targets:
downloads through the front ≤ 1× nginx, uploads through the front ≤ 2× a copy). The same
file also goes through the Maven endpoint (a jar: MD5 and SHA-1 are computed as well, for
the checksum files Maven asks for).

A spooled upload is nginx taking the body and then the app hashing it, one after the
other, so the script also prints that design's floor on this machine, in the same runs:
a bare nginx taking the same PUT into a file (WebDAV: no hash, no fsync, no app) plus the
SHA-256 of the file alone, timed in this process.
"""
import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import pair_ratios  # noqa: E402
from tests.e2e.front import nginx as gatehouse_front  # noqa: E402
from tests.support import VENV_BIN, free_port, running  # noqa: E402

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        # The floor of a spooled upload: nginx takes the body into a file, nothing more.
        location /put/ {{
            dav_methods PUT;
            client_max_body_size 0;
            client_body_buffer_size 1m;
        }}
    }}
}}
"""


def curl_seconds(*args: str) -> float:
    out = subprocess.run(["curl", "--fail", "--silent", "--show-error", "--output", "/dev/null",
                          "--write-out", "%{time_total}", *args],
                         check=True, capture_output=True, text=True)
    return float(out.stdout)


def copy_seconds(source: Path, target: Path) -> float:
    start = time.perf_counter()
    with open(source, "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
        dst.flush()
        os.fsync(dst.fileno())
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def hash_seconds(source: Path) -> float:
    """The SHA-256 of a file in the page cache, as the app computes it when adopting."""
    start = time.perf_counter()
    with open(source, "rb") as f:
        hashlib.file_digest(f, "sha256")
    return time.perf_counter() - start


def setup_database(env: dict) -> tuple[int, str]:
    """Migrate a fresh SQLite database and create a project with a write token."""
    script = (
        "from flask_migrate import upgrade\n"
        "from wsgi import app\n"
        "from webapp.services import accounts, deploy_tokens\n"
        "with app.app_context():\n"
        "    upgrade()\n"
        "    accounts.create_group('bench')\n"
        "    p = accounts.create_project('bench/files')\n"
        "    t, s = deploy_tokens.create(p, name='bench', scopes=['write_package_registry'])\n"
        "    print(p.id, s)\n")
    out = subprocess.run([str(VENV_BIN / "python"), "-c", script], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True)
    project_id, secret = out.stdout.split()[-2:]
    return int(project_id), secret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not shutil.which("nginx") or not shutil.which("curl"):
        sys.exit("needs nginx and curl")

    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-") as tmpdir:
        tmp = Path(tmpdir)
        payload = tmp / "payload.bin"
        with open(payload, "wb") as f:
            for _ in range(args.size_mb):
                f.write(os.urandom(1024 * 1024))
        size = payload.stat().st_size

        port = free_port()
        env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp / 'bench.db'}",
                   GATEHOUSE_SECRET_KEY="bench", GATEHOUSE_DATA_DIR=str(tmp / "data"),
                   GATEHOUSE_EXTERNAL_URL=f"http://127.0.0.1:{port}", GATEHOUSE_WORKERS="2",
                   GATEHOUSE_TRUSTED_PROXIES="1", GATEHOUSE_ACCEL_REDIRECT="true")
        project_id, secret = setup_database(env)
        base = f"http://127.0.0.1:{port}/api/v4/projects/{project_id}/packages/generic/bench"
        maven = f"http://127.0.0.1:{port}/api/v4/projects/{project_id}/packages/maven/org/bench/payload"
        gunicorn = [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}",
                    "--config", str(ROOT / "gunicorn.conf.py"), "--access-logfile", "/dev/null",
                    "wsgi:app"]
        www = tmp / "www"
        (www / "put").mkdir(parents=True)
        nginx_port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=nginx_port, root=www))
        # The front is given the app's SECRET_KEY, from which both derive the front secret.
        with running(gunicorn, port=port, env=env, log=tmp / "gunicorn.log"), \
                gatehouse_front(tmp / "data", tmp / "front", [f"127.0.0.1:{port}"],
                                SECRET_KEY="bench") as front, \
                running(["nginx", "-c", str(conf), "-p", str(tmp)], port=nginx_port, env=env,
                        log=tmp / "nginx.log"):  # the bare nginx: downloads and bare PUTs
            front_base = base.replace(f"127.0.0.1:{port}", f"127.0.0.1:{front.port}")
            header = ["--header", f"Deploy-Token: {secret}"]
            uploads, maven_uploads, front_uploads, copies = [], [], [], []
            nginx_puts, hashes = [], []
            put = www / "put" / "payload.bin"
            for run in range(args.runs):
                uploads.append(curl_seconds(*header, "--upload-file", str(payload),
                                            f"{base}/1.0.{run}/payload.bin"))
                maven_uploads.append(curl_seconds(
                    *header, "--upload-file", str(payload),
                    f"{maven}/1.0.{run}/payload-1.0.{run}.jar"))
                front_uploads.append(curl_seconds(*header, "--upload-file", str(payload),
                                                  f"{front_base}/2.0.{run}/payload.bin"))
                nginx_puts.append(curl_seconds("--upload-file", str(payload),
                                               f"http://127.0.0.1:{nginx_port}/put/payload.bin"))
                put.unlink()  # never written back: its pages are dropped
                hashes.append(hash_seconds(payload))
                copies.append(copy_seconds(payload, tmp / "copy.bin"))

            # nginx serves the very file Gatehouse stored, from its content address.
            stored = next(p for p in (tmp / "data" / "packages" / "sha256").rglob("*")
                          if p.is_file())
            os.link(stored, www / "payload.bin")
            nginx_url = f"http://127.0.0.1:{nginx_port}/payload.bin"
            ours_url = f"{base}/1.0.0/payload.bin"
            maven_url = f"{maven}/1.0.0/payload-1.0.0.jar"
            front_url = f"{front_base}/1.0.0/payload.bin"
            curl_seconds(nginx_url)
            curl_seconds(*header, ours_url)  # warm all three
            curl_seconds(*header, front_url)
            ours, maven_downloads, fronted, theirs = [], [], [], []
            for _ in range(args.runs):
                ours.append(curl_seconds(*header, ours_url))
                maven_downloads.append(curl_seconds(*header, maven_url))
                fronted.append(curl_seconds(*header, front_url))
                theirs.append(curl_seconds(nginx_url))

    mb = size / 1e6

    def line(label, times):
        median = statistics.median(times)
        return f"  {label:<34} median {median:6.3f} s  ({mb / median:7.0f} MB/s)"

    print(f"{args.size_mb} MiB file, {args.runs} runs each, {os.cpu_count()} CPUs")

    def compare(label, a, b):
        """The ratio of the medians, and the median and range of each run's own ratio."""
        each = pair_ratios(a, b)
        print(f"  ratio {label}: {statistics.median(a) / statistics.median(b):.2f}x; run by "
              f"run {statistics.median(each):.2f}x (median of {len(each)} runs' own ratios, "
              f"{each[0]:.2f}-{each[-1]:.2f})")

    print("download")
    print(line("Gatehouse alone (gunicorn, sendfile)", ours))
    print(line("Gatehouse Maven (gunicorn, sendfile)", maven_downloads))
    print(line("Gatehouse front (X-Accel-Redirect)", fronted))
    print(line("nginx from disk", theirs))
    compare("Gatehouse alone / nginx", ours, theirs)
    compare("Maven / nginx", maven_downloads, theirs)
    compare("Gatehouse front / nginx", fronted, theirs)
    print("upload")
    print(line("Gatehouse alone (stream, sha256, fsync)", uploads))
    print(line("Gatehouse Maven (+md5, sha1)", maven_uploads))
    print(line("Gatehouse front (nginx spools, app adopts)", front_uploads))
    print(line("plain copy + fsync", copies))
    compare("Gatehouse alone / copy", uploads, copies)
    compare("Maven / copy", maven_uploads, copies)
    compare("Gatehouse front / copy", front_uploads, copies)
    floors = [taken + hashed for taken, hashed in zip(nginx_puts, hashes)]
    print("the spooled design's floor here: nginx takes the body, then SHA-256 (same runs)")
    print(line("bare nginx takes the PUT (no hash)", nginx_puts))
    print(line("SHA-256 of the file alone", hashes))
    print(line("the two one after the other", floors))
    compare("floor / copy", floors, copies)
    compare("Gatehouse front / floor", front_uploads, floors)

if __name__ == "__main__":
    main()
