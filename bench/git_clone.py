"""Clone a generated 100 MiB repository three ways and compare: Gatehouse under gunicorn
(with a deploy token), nginx + fcgiwrap + git-http-backend (no auth), and `file://`.

    .venv/bin/python bench/git_clone.py [--size-mib 100] [--rounds 5]

Everything runs unprivileged-style on loopback ports from a temporary directory with its
own configuration; nginx and fcgiwrap are installed with apt-get when missing (as root).
Rounds alternate the order of the three clones; the medians and their ratios are printed.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


def program(name: str) -> str:
    for folder in (None, "/usr/sbin", "/sbin"):
        found = shutil.which(name, path=folder) if folder else shutil.which(name)
        if found:
            return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {name} with apt-get ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", name],
                       check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        return program(name)
    sys.exit(f"{name} is missing: install it (apt-get install {name}) and run again")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port=None, path=None, proc=None, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            if path is not None:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(path))
            else:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listened on {path or port}")


@contextmanager
def started(cmd, log: Path, env=None, port=None, path=None, umask=None):
    def preexec():
        if umask is not None:
            os.umask(umask)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=preexec)
    try:
        wait_for(port=port, path=path, proc=proc)
        yield proc
    finally:
        # The whole session: fcgiwrap's and gunicorn's children too.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def git_env(tmp: Path) -> dict:
    config = tmp / "gitconfig"
    config.write_text("[user]\n\tname = Bench\n\temail = bench@example.com\n"
                      "[init]\n\tdefaultBranch = main\n")
    return {"PATH": os.environ["PATH"], "HOME": str(tmp), "GIT_CONFIG_GLOBAL": str(config),
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LANG": "C"}


def run(cmd, **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
daemon off;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-client;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    proxy_temp_path {tmp}/nginx-proxy;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port};
        location ~ \\.git/(info/refs|git-upload-pack|git-receive-pack)$ {{
            fastcgi_pass unix:{socket};
            fastcgi_param SCRIPT_FILENAME {backend};
            fastcgi_param GIT_PROJECT_ROOT {root};
            fastcgi_param GIT_HTTP_EXPORT_ALL "";
            fastcgi_param PATH_INFO $uri;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param GIT_PROTOCOL $http_git_protocol;
            fastcgi_param HTTP_CONTENT_ENCODING $http_content_encoding;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
        }}
    }}
}}
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    nginx, fcgiwrap = program("nginx"), program("fcgiwrap")
    program("git")

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gatehouse-bench-")))
        tmp.chmod(0o755)  # nginx workers drop to `nobody` when started as root
        genv = git_env(tmp)
        data = tmp / "data"
        app_env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp / 'bench.db'}",
                       GATEHOUSE_DATA_DIR=str(data), GATEHOUSE_SECRET_KEY="bench",
                       PYTHONUNBUFFERED="1")
        app_env.pop("GATEHOUSE_REDIS_URL", None)
        flask = [str(BIN / "flask"), "--app", "wsgi"]
        run(flask + ["db", "upgrade"], env=app_env, cwd=ROOT)
        run(flask + ["groups", "create", "bench"], env=app_env, cwd=ROOT)
        run(flask + ["projects", "create", "bench/big"], env=app_env, cwd=ROOT)
        token = json.loads(run(flask + ["deploy-tokens", "create", "bench/big", "--name", "bench",
                                        "--scopes", "read_repository"], env=app_env, cwd=ROOT))
        bare = data / "repositories" / "bench" / "big.git"

        print(f"generating a {args.size_mib} MiB repository ...", flush=True)
        work = tmp / "work"
        run(["git", "init", "-q", str(work)], env=genv)
        pieces = max(1, args.size_mib // 25)
        for n in range(pieces):
            (work / f"blob{n}.bin").write_bytes(os.urandom((args.size_mib << 20) // pieces))
        run(["git", "add", "-A"], cwd=work, env=genv)
        run(["git", "commit", "-q", "-m", "random data"], cwd=work, env=genv)
        run(["git", "push", "-q", str(bare), "main"], cwd=work, env=genv)
        run(["git", "repack", "-a", "-d", "-q"], cwd=bare, env=genv)  # as a served repo is
        shutil.rmtree(work)
        for path in tmp.rglob("*"):
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))

        g_port = free_port()
        stack.enter_context(started(
            [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "--bind",
             f"127.0.0.1:{g_port}", "--workers", "2", "wsgi:app"],
            tmp / "gunicorn.log", env=app_env, port=g_port))

        sock = tmp / "fcgiwrap.sock"
        stack.enter_context(started([fcgiwrap, "-c", "2", "-s", f"unix:{sock}"],
                                    tmp / "fcgiwrap.log", path=sock, umask=0,
                                    env={"PATH": os.environ["PATH"]}))
        n_port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=n_port, socket=sock, backend=HTTP_BACKEND,
                                          root=data / "repositories"))
        stack.enter_context(started([nginx, "-p", str(tmp), "-c", str(conf)],
                                    tmp / "nginx.log", port=n_port))

        urls = {
            "gatehouse": f"http://{token['username']}:{token['token']}@127.0.0.1:{g_port}/bench/big.git",
            "nginx": f"http://127.0.0.1:{n_port}/bench/big.git",
            "file": f"file://{bare}",
        }
        times = {name: [] for name in urls}
        names = list(urls)
        for round_ in range(args.rounds + 1):
            order = names[round_ % 3:] + names[:round_ % 3]
            for name in order:
                dest = tmp / f"clone-{name}"
                start = time.perf_counter()
                run(["git", "clone", "-q", urls[name], str(dest)], env=genv)
                elapsed = time.perf_counter() - start
                assert (dest / "blob0.bin").stat().st_size > 0
                shutil.rmtree(dest)
                if round_:  # the first round warms caches and the app
                    times[name].append(elapsed)
            if round_:
                print(f"round {round_}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in names),
                      flush=True)

    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{args.size_mib} MiB clone, median of {args.rounds}: "
          + ", ".join(f"{n} {med[n]:.2f}s" for n in names))
    print(f"gatehouse / nginx+fcgiwrap = {med['gatehouse'] / med['nginx']:.2f}x   "
          f"gatehouse / file:// = {med['gatehouse'] / med['file']:.2f}x   "
          f"nginx+fcgiwrap / file:// = {med['nginx'] / med['file']:.2f}x")


if __name__ == "__main__":
    main()
