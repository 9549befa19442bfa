"""Run any ASGI app under uvicorn exactly as `botlyne serve` runs Botlyne.

`python -m bench.serve_asgi MODULE:ATTR --port P [--factory]`. The options mirror `app.cli._serve`
so a reference app differs from Botlyne only in the app itself. Imports stay minimal because the
cold-start benchmark times this process from spawn to its first response.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_asgi", description=__doc__)
    parser.add_argument("app", help="MODULE:ATTR")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--factory", action="store_true", help="ATTR is a zero-argument factory")
    args = parser.parse_args(argv)

    import uvicorn

    uvicorn.run(
        args.app,
        factory=args.factory,
        host=args.host,
        port=args.port,
        workers=1,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
