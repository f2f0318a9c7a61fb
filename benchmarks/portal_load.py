"""Load on the portal: concurrent office sessions opening their list page, on loopback only.

    .venv/bin/python benchmarks/portal_load.py --snapshot out/trace24_read.duckdb --lists out/lists \
        [--sessions 200] [--pages 5] [--think 1.0] [--workers 2]

Starts `trace24 portal` on 127.0.0.1 with one throwaway office account per community that has a
list (cycled when there are fewer communities than sessions), logs every session in, then has all
of them open their list page ``--pages`` times, each after reading the last for ``--think``
seconds on average (0: at once, the server's saturation; the logins are not timed), and prints
the page time's percentiles and the errors. Bounded: sessions x pages requests, each with a 30 s
timeout. Issue 24's target: p95 under 300 ms for an office's list page at 200 sessions over a
million residents' snapshot. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_portal_browser import PASSWORD, free_port, start_portal  # noqa: E402
from trace24.portal.accounts import Accounts  # noqa: E402
from trace24.portal.snapshot_reader import Snapshot  # noqa: E402


async def log_in(client, username: str, errors: list[str]) -> bool:
    try:
        form = await client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)[1]
        answer = await client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    except Exception as exc:   # a connection dropped while 200 logins queue for Argon2 is an error to count
        errors.append(f"login {exc.__class__.__name__}")
        return False
    if answer.status_code != 303:
        errors.append(f"login {answer.status_code}")
    return answer.status_code == 303


async def pages(client, code: str, count: int, think: float, rng: random.Random, times: list[float],
                server: list[float], errors: list[str]) -> None:
    for _ in range(count):
        await asyncio.sleep(rng.uniform(0.5, 1.5) * think)   # reading the page before the next
        started = time.perf_counter()
        try:
            page = await client.get(f"/c/{code}")
            if page.status_code != 200:
                errors.append(f"page {page.status_code}")
            server.append(float(page.headers["server-timing"].split("dur=")[1]) / 1000)
        except Exception as exc:   # a timeout or a refused connection is an error to count
            errors.append(exc.__class__.__name__)
        times.append(time.perf_counter() - started)


async def run(base: str, accounts: list[tuple[str, str]], count: int, think: float
              ) -> tuple[list[float], list[float], list[str], float]:
    """Every session logs in first (Argon2 is slow on purpose), then all open their pages at once."""
    import httpx

    times, server, errors = [], [], []
    clients = [httpx.AsyncClient(base_url=base, timeout=30, follow_redirects=False) for _ in accounts]
    try:
        in_ok = await asyncio.gather(*(log_in(c, u, errors) for c, (u, _) in zip(clients, accounts, strict=True)))
        started = time.perf_counter()
        rng = random.Random(2020)
        await asyncio.gather(*(pages(c, code, count, think, random.Random(rng.random()), times, server, errors)
                               for c, (_, code), ok in zip(clients, accounts, in_ok, strict=True) if ok))
        return times, server, errors, time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", type=Path, default=ROOT / "out" / "trace24_read.duckdb")
    parser.add_argument("--lists", type=Path, default=ROOT / "out" / "lists")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--pages", type=int, default=5)
    parser.add_argument("--think", type=float, default=1.0,
                        help="mean seconds a session reads a page before the next (uniform 0.5-1.5x, seeded); "
                             "0: every session asks again at once (the server's saturation)")
    parser.add_argument("--workers", type=int, default=2, help="the portal's worker processes")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    (folder / "t_read.duckdb").symlink_to(args.snapshot.resolve())
    (folder / "lists").symlink_to(args.lists.resolve())
    cur, info, _, _ = Snapshot(folder / "t_read.duckdb").state()
    listed = cur.execute("""SELECT community_code, count(*) FROM out_list_rows
                            WHERE as_of = ? AND community_code IS NOT NULL GROUP BY ALL ORDER BY 1""",
                         [info.as_of]).fetchall()
    store = Accounts(folder / "portal.sqlite")
    accounts = []
    for i in range(args.sessions):
        code = listed[i % len(listed)][0]
        store.add_user(f"office-{i}", "office", code, PASSWORD)
        accounts.append((f"office-{i}", code))
    port = free_port()
    # httpx, unlike a browser, sends no Secure cookie over plain HTTP, even on loopback.
    server = start_portal(folder, folder / "portal.sqlite", port, "--insecure-cookies",
                          "--workers", str(args.workers))
    try:
        times, server_times, errors, wall = asyncio.run(
            run(f"http://127.0.0.1:{port}", accounts, args.pages, args.think))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"(the portal's messages: {folder / 'portal.log'})")
    rows = [n for _, n in listed]
    if len(times) < 2:
        sys.exit(f"no page was served: {sorted(set(errors))}")
    times.sort()
    pct = statistics.quantiles(times, n=100)
    on_server = statistics.quantiles(server_times, n=100)
    print(f"portal load: {args.sessions} sessions x {args.pages} list pages, think {args.think:g} s, "
          f"{args.workers} workers, run as of {info.as_of}, "
          f"{len(listed)} communities listed (rows per list: median {statistics.median(rows):.0f}, max {max(rows)})")
    print(f"page time: p50 {pct[49] * 1000:.0f} ms, p95 {pct[94] * 1000:.0f} ms, p99 {pct[98] * 1000:.0f} ms, "
          f"max {times[-1] * 1000:.0f} ms; {len(times) / wall:.0f} pages/s; errors {len(errors)}"
          f"{' (' + ', '.join(sorted(set(errors))) + ')' if errors else ''}")
    print(f"of which in the server (Server-Timing): p50 {on_server[49] * 1000:.0f} ms, "
          f"p95 {on_server[94] * 1000:.0f} ms; the rest is the queue and this client, on the same cores")


if __name__ == "__main__":
    main()
