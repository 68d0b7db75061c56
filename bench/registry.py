"""Benchmark: skopeo push/pull of a ~50 MB image through Gatehouse's token auth vs htpasswd.

Two instances of the same `docker-registry` binary, each with its own storage: one with
`auth.token` pointing at Gatehouse (gunicorn, SQLite), one with `auth.htpasswd`
(bcrypt, cost 5 as `htpasswd -B`). Every round pushes a fresh random image to both, in
alternating order, then pulls it back from both; the median ratio token/htpasswd is
printed. Then `/jwt/auth` requests per second under gunicorn (threads, keep-alive) against
the unauthenticated `/-/readiness` on the same server, in 20 alternating pairs of 1 s runs
(the median of the pairs' ratios), on that SQLite stack and on PostgreSQL with Redis (a
fresh database on --database-url, a private Redis).

    .venv/bin/python -m bench.registry [--rounds 5] [--size-mb 50] [--auth-rounds 20]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from bench.common import RateRatio, basic, jwt_ratio, postgres_database
from tests.conftest import ENCRYPTION_KEY, gunicorn
from tests.e2e.containers import Skopeo, docker_registry, registry_config, write_image
from tests.support import ROOT, VENV_BIN, free_port, redis_server, running


def flask(env, *args) -> str:
    return subprocess.run([str(VENV_BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True).stdout


def htpasswd_line(user: str, password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32))}"


def registry_key_algorithm(data_dir: Path) -> str:
    key = (data_dir / "keys" / "registry" / "registry.key").read_text()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    private = serialization.load_pem_private_key(key.encode(), password=None)
    return "ES256" if isinstance(private, ec.EllipticCurvePrivateKey) else "RS256"


def timed(run) -> float:
    start = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"skopeo failed: {result.stderr}")
    return elapsed


# What the registry asks for on a push: the scope `/jwt/auth` is timed with.
SCOPE = "repository:bench/app:pull,push"


def production_stack_ratio(args, tmp: Path) -> RateRatio:
    """The same ratio on PostgreSQL and Redis (the ban check then asks Redis)."""
    with postgres_database(args.database_url, "gatehouse_bench_registry") as database, \
            redis_server(tmp) as redis_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
        env.update(DATABASE_URL=database, GATEHOUSE_SECRET_KEY="bench",
                   GATEHOUSE_DATA_DIR=str(tmp / "pg-data"), GATEHOUSE_ENCRYPTION_KEY=ENCRYPTION_KEY)
        flask(env, "db", "upgrade")
        flask(env, "groups", "create", "bench")
        flask(env, "projects", "create", "bench/app")
        token = json.loads(flask(env, "deploy-tokens", "create", "bench/app", "--name", "bench",
                                 "--scopes", "read_registry,write_registry"))
        with gunicorn(database, tmp / "pg-data", tmp, workers=2, REDIS_URL=redis_url,
                      THREADS=8) as app:
            return jwt_ratio(app.port, basic(token["username"], token["token"]), SCOPE,
                             args.auth_seconds, args.auth_rounds, args.threads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--auth-seconds", type=float, default=1)
    parser.add_argument("--auth-rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--database-url", default=os.environ.get(
        "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server for the production-stack ratio ('none' to skip)")
    args = parser.parse_args()
    binary, skopeo_bin = shutil.which("docker-registry"), shutil.which("skopeo")
    if not binary or not skopeo_bin:
        sys.exit("needs docker-registry and skopeo (make system-packages)")

    tmp = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    try:
        app_port, token_port, basic_port = free_port(), free_port(), free_port()
        app_url = f"http://127.0.0.1:{app_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
        env.update(DATABASE_URL=f"sqlite:///{tmp / 'gatehouse.db'}", GATEHOUSE_SECRET_KEY="bench",
                   GATEHOUSE_DATA_DIR=str(tmp / "data"), GATEHOUSE_EXTERNAL_URL=app_url,
                   GATEHOUSE_BIND=f"127.0.0.1:{app_port}", PYTHONUNBUFFERED="1")
        flask(env, "db", "upgrade")
        flask(env, "groups", "create", "bench")
        flask(env, "projects", "create", "bench/app")
        token = json.loads(flask(env, "deploy-tokens", "create", "bench/app", "--name", "bench",
                                 "--scopes", "read_registry,write_registry"))
        user, secret = token["username"], token["token"]

        token_config = registry_config(env, f"127.0.0.1:{token_port}")
        (tmp / "htpasswd").write_text(htpasswd_line(user, secret) + "\n")
        basic_config = f"""version: 0.1
log: {{level: info}}
storage: {{filesystem: {{rootdirectory: "{tmp / 'basic-storage'}"}}}}
http: {{addr: "127.0.0.1:{basic_port}"}}
auth: {{htpasswd: {{realm: basic-realm, path: "{tmp / 'htpasswd'}"}}}}
"""
        gunicorn_cmd = [str(VENV_BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"]
        with running(gunicorn_cmd, port=app_port, env=dict(env, GATEHOUSE_WORKERS="2"),
                     log=tmp / "gunicorn.log"), \
                docker_registry(binary, token_config, tmp / "token-registry", token_port), \
                docker_registry(binary, basic_config, tmp / "basic-registry", basic_port):
            modes = {"token": Skopeo(skopeo_bin, tmp / "sk-token", f"127.0.0.1:{token_port}"),
                     "htpasswd": Skopeo(skopeo_bin, tmp / "sk-basic", f"127.0.0.1:{basic_port}")}
            for sk in modes.values():
                if sk.login(user, secret).returncode != 0:
                    sys.exit(f"login to {sk.registry} failed")
            times = {(m, op): [] for m in modes for op in ("push", "pull")}
            for n in range(args.rounds):
                layout = tmp / f"image-{n}"
                write_image(layout, "v1", {"payload.bin": os.urandom(args.size_mb << 20)})
                order = list(modes) if n % 2 == 0 else list(reversed(modes))
                for mode in order:
                    times[mode, "push"].append(timed(
                        lambda: modes[mode].push(layout, "v1", f"bench/app/r{n}:v1", as_user=user)))
                for mode in order:
                    out = tmp / f"pulled-{mode}-{n}"
                    times[mode, "pull"].append(timed(
                        lambda: modes[mode].pull(f"bench/app/r{n}:v1", out, "v1", as_user=user)))
                    shutil.rmtree(out)
                shutil.rmtree(layout)
                print(f"round {n + 1}: " + ", ".join(
                    f"{m} {op} {times[m, op][-1]:.2f}s" for m in modes for op in ("push", "pull")),
                    flush=True)
            print(f"\n{args.size_mb} MB image, {args.rounds} rounds, median seconds:")
            for op in ("push", "pull"):
                token_s = statistics.median(times["token", op])
                basic_s = statistics.median(times["htpasswd", op])
                print(f"  {op}: token auth {token_s:.2f}s, htpasswd {basic_s:.2f}s, "
                      f"ratio {token_s / basic_s:.2f}x")
            ratios = [t / b for t, b in zip(times["token", "push"] + times["token", "pull"],
                                            times["htpasswd", "push"] + times["htpasswd", "pull"])]
            print(f"  median ratio of all operations: {statistics.median(ratios):.2f}x")
            ratio = jwt_ratio(app_port, basic(user, secret), SCOPE, args.auth_seconds,
                              args.auth_rounds, args.threads)
        print(f"\n/jwt/auth against the unauthenticated /-/readiness on the same gunicorn "
              f"(2 workers x 8 threads, {args.threads} keep-alive clients, {os.cpu_count()} CPUs, "
              f"{registry_key_algorithm(tmp / 'data')} signatures; {args.auth_rounds} "
              f"alternating pairs of {args.auth_seconds:g} s runs; target >= 0.5):")
        print(f"  SQLite:              {ratio.describe()}")
        if args.database_url != "none":
            print(f"  PostgreSQL + Redis:  {production_stack_ratio(args, tmp).describe()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
