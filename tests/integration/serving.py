"""`croco serve` as deployed, for the end-to-end tests: its own process, its log kept and checked."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from tests.bot.test_serve_notices import ready


@asynccontextmanager
async def croco_serve(tmp_path: Path, port: int, env: dict[str, str]) -> AsyncIterator[aiohttp.ClientSession]:
    """Serve on 127.0.0.1:`port` with `env`, answering /healthz; yields a client session. A failure inside prints
    serve's own account of it (the end of its log); at the end the log must hold no error line, its shutdown
    included: nothing for an operator to chase."""
    log_path = tmp_path / "serve.log"
    log = log_path.open("w+")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "croco.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
        cwd=tmp_path, env=env, stderr=log)
    try:
        async with aiohttp.ClientSession() as http:
            await ready(http, f"http://127.0.0.1:{port}", proc)
            yield http
    except BaseException:
        log.seek(0)
        print(log.read()[-20000:])
        raise
    finally:
        proc.terminate()
        await proc.wait()
        log.close()
    errors = [line for line in log_path.read_text().splitlines() if '"level": "error"' in line]
    assert errors == []
