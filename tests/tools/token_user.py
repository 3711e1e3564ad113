"""A separate OS process that uses the WeChat gateway N times (for the shared-token test).

    python tests/tools/token_user.py REDIS_URL SANDBOX_URL N
Prints the number of successful calls.
"""

import asyncio
import sys

import redis.asyncio as aioredis

from wxbackend.cache import Keys
from wxbackend.wechat.client import Credentials, WeChatGateway


async def main(redis_url: str, api_base: str, n: int) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    gateway = WeChatGateway(
        api_base,
        lambda: Credentials("wx00000000000000a1", "00000000000000000000000000000001"),
        client,
        Keys("wxb:"),
        timeout=2.0,
    )
    openid = sys.argv[4]
    results = await asyncio.gather(
        *[gateway.msg_sec_check(openid, f"hello {i}") for i in range(n)], return_exceptions=True
    )
    print(sum(1 for r in results if isinstance(r, dict)))
    gateway.close()
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
