"""Botlyne without its request observer (request id and metrics), for `bench.metrics_overhead`.

`python -m bench.serve_asgi bench.unobserved_app:create_app --factory` serves the very application
`app.asgi.create_app` builds from the environment, with the observer unwrapped from
`app.asgi_handler`, so the two sides of the comparison differ in nothing else. The variant lives
here so that production code carries no switch for it.
"""

from __future__ import annotations

from litestar import Litestar

from app.asgi import create_app as create_botlyne
from app.core.middleware import RequestObserver


def create_app() -> Litestar:
    app = create_botlyne()
    observer = app.asgi_handler
    if not isinstance(observer, RequestObserver):
        raise TypeError("app.asgi_handler is no longer the request observer; update this bench")
    app.asgi_handler = observer.app
    return app
