"""What the benchmarks share: a request-rate loop, ratios in alternating pairs (`/jwt/auth`'s
among them), and a throwaway PostgreSQL database."""
import http.client
import statistics
import threading
import time
import uuid
from base64 import b64encode
from contextlib import contextmanager
from dataclasses import dataclass
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


def pair_ratios(firsts: list[float], seconds: list[float]) -> list[float]:
    """Each pair's own ratio, sorted: the two sides of a pair were measured back to back."""
    return sorted(a / b for a, b in zip(firsts, seconds))


@dataclass(frozen=True)
class RateRatio:
    """How one request's rate compares with another's, measured in alternating pairs."""

    rates: dict[str, list[float]]   # each request's rate, round by round
    pairs: list[float]              # first / second, one per round, sorted

    @property
    def median(self) -> float:
        return statistics.median(self.pairs)

    @property
    def quartiles(self) -> tuple[float, float]:
        q = statistics.quantiles(self.pairs, n=4)
        return q[0], q[2]

    def rate(self, name: str) -> float:
        return statistics.median(self.rates[name])

    def describe(self) -> str:
        low, high = self.quartiles
        first, second = self.rates
        return (f"{first} {self.rate(first):.0f}/s, {second} {self.rate(second):.0f}/s; "
                f"ratio {self.median:.2f} (median of {len(self.pairs)} pairs, "
                f"middle half {low:.2f}-{high:.2f})")


def rate_ratio(port: int, first: tuple[str, Request], second: tuple[str, Request],
               seconds: float, rounds: int, threads: int = 8) -> RateRatio:
    """`first`'s rate over `second`'s, as the median of many short adjacent pairs.

    On a shared machine the rate drifts by tens of percent within a minute; a few long
    runs each can land on a different side of a swing. Many short runs taking turns put
    the two sides of each pair in the same conditions, and the median of the pairs'
    ratios ignores the rounds a swing did split.
    """
    rates = alternating_rates(port, dict([first, second]), seconds, rounds, threads)
    return RateRatio(rates, pair_ratios(rates[first[0]], rates[second[0]]))


def basic(user: str, password: str) -> str:
    """An Authorization header value for HTTP basic auth."""
    return "Basic " + b64encode(f"{user}:{password}".encode()).decode()


def jwt_ratio(port: int, authorization: str, scope: str, seconds: float = 1, rounds: int = 20,
              threads: int = 8) -> RateRatio:
    """`/jwt/auth`'s rate over the unauthenticated `/-/readiness`'s (which asks the
    database, and Redis when there is one) on the same server, in alternating pairs."""
    jwt = ("GET", f"/jwt/auth?service=container_registry&scope={scope}",
           {"Authorization": authorization})
    return rate_ratio(port, ("/jwt/auth", jwt), ("/-/readiness", ("GET", "/-/readiness", {})),
                      seconds, rounds, threads)


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
