"""What the benchmarks share: a request-rate loop and a throwaway PostgreSQL database."""
import http.client
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

# A request as the rate loop sends it: method, path (with query), headers.
Request = tuple[str, str, dict]


def rate(port: int, request: Request, seconds: float, threads: int = 8) -> float:
    """Requests per second that `threads` keep-alive clients get for `request`.

    Every answer must be 200: a benchmark of refusals would measure the wrong thing.
    """
    counts, stop = [0] * threads, time.monotonic() + seconds
    method, path, headers = request

    def run(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop:
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200, (response.status, body[:200])
            counts[i] += 1
        conn.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.monotonic() - start)


def alternating_rates(port: int, requests: dict[str, Request], seconds: float, rounds: int,
                      threads: int = 8) -> dict[str, list[float]]:
    """Each request's rate, `rounds` times, taking turns, so drift hits all of them alike."""
    results: dict[str, list[float]] = {name: [] for name in requests}
    for request in requests.values():
        rate(port, request, 1, threads)  # warm: connections, caches, prepared plans
    for n in range(rounds):
        order = list(requests) if n % 2 == 0 else list(reversed(requests))
        for name in order:
            results[name].append(rate(port, requests[name], seconds, threads))
    return results


@contextmanager
def postgres_database(server_url: str, prefix: str) -> Iterator[str]:
    """A fresh database on the server at `server_url` (…/postgres); dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    head, _, _ = server_url.rpartition("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{head}/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
