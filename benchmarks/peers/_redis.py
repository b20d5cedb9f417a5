"""Redis set-up shared by the arq and saq runners: each uses a database number of its own."""

from __future__ import annotations

from typing import Any

import _common
import redis.asyncio as aioredis


def url(db: int) -> str:
    return f"redis://{_common.REDIS_HOST}:{_common.REDIS_PORT}/{db}"


async def claim_database(db: int) -> None:
    """Refuse to run in a Redis database that holds someone's keys: teardown empties it."""
    client = aioredis.from_url(url(db))
    try:
        size = await client.dbsize()
    finally:
        await client.aclose()
    if size:
        raise SystemExit(f"Redis database {db} at {url(db)} is not empty ({size} keys): pick another "
                         "with compare.py --redis-dbs, or empty it yourself")


async def flush(db: int) -> None:
    client = aioredis.from_url(url(db))
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def teardown(args: Any) -> dict[str, Any]:
    await flush(args.redis_db)
    return {}
