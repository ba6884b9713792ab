"""tests/library_provider.py's app (the library's ActionProviderBlueprint and
its real auth path) as a WSGI module, configured like the service beside it:
FLASK_SCOPE, FLASK_CLIENT_ID, FLASK_CLIENT_SECRET; Globus Auth is reached
through GLOBUS_SDK_SERVICE_URL_AUTH (the loopback stand-in). Actions stay
ACTIVE for BENCH_LIBRARY_SECONDS (a day), as the service's do in the bench.

BENCH_LIBRARY_INTROSPECT_CACHE_SIZE and _TTL: the library's introspection
cache (its class attribute, as the service sizes it) made that size, like
the service's beside it; the library's own 100 entries would miss for nearly
every request of a bench that spreads its load over 1,000 tokens."""

import os

from globus_action_provider_tools.authentication import AuthState
from globus_action_provider_tools.utils import TypedTTLCache
from library_provider import make_app

if os.environ.get("BENCH_LIBRARY_INTROSPECT_CACHE_SIZE"):
    AuthState.introspect_cache = TypedTTLCache(
        maxsize=int(os.environ["BENCH_LIBRARY_INTROSPECT_CACHE_SIZE"]),
        ttl=int(os.environ.get("BENCH_LIBRARY_INTROSPECT_CACHE_TTL", "30")),
    )

app = make_app(
    os.environ["FLASK_SCOPE"],
    os.environ["FLASK_CLIENT_ID"],
    os.environ["FLASK_CLIENT_SECRET"],
    seconds=float(os.environ.get("BENCH_LIBRARY_SECONDS", "86400")),
)
