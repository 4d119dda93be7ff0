"""Open-loop HTTP load generator, run as its own process by api_latency.py.

Request i is due at t0 + i/rate and is sent then whether or not earlier ones have answered, so a
slow server cannot slow the generator down and hide its own latency (coordinated omission).
Latency is measured from the moment a request was due, not from when it was sent.

Input (argv[1]): a JSON file {url, headers, body, rate, duration_s, warmup_s}. Output: one JSON
object on stdout: per request [due offset s, latency s, send lag s, status or error]."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx


async def main(cfg: dict[str, Any]) -> dict[str, Any]:
    rate, total_s = float(cfg["rate"]), float(cfg["warmup_s"]) + float(cfg["duration_s"])
    n = int(rate * total_s)
    body = json.dumps(cfg["body"]).encode()
    headers = {"Content-Type": "application/json", **cfg["headers"]}
    results: list[list[Any]] = []
    ids: list[str] = []
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def fire(due: float) -> None:
            sent = time.monotonic()
            try:
                r = await client.post(cfg["url"], content=body, headers=headers)
                outcome: Any = r.status_code
                if r.is_success:
                    data = r.json()
                    job = data.get("job_id") or (data.get("data") or {}).get("id")
                    if job:
                        ids.append(str(job))
                else:
                    outcome = f"{r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as e:
                outcome = f"{type(e).__name__}: {e}"
            end = time.monotonic()
            results.append([round(due - t0, 4), end - due, sent - due, outcome])

        tasks = []
        t0 = time.monotonic() + 0.2
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire(due)))
        await asyncio.gather(*tasks)
    return {"results": results, "job_ids": ids, "requests": n}


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        config = json.load(f)
    json.dump(asyncio.run(main(config)), sys.stdout)
