"""tests/library_provider.py's app (the library's ActionProviderBlueprint and
its real auth path) as a WSGI module, configured like the service beside it:
FLASK_SCOPE, FLASK_CLIENT_ID, FLASK_CLIENT_SECRET; Globus Auth is reached
through GLOBUS_SDK_SERVICE_URL_AUTH (the loopback stand-in). Actions stay
ACTIVE for BENCH_LIBRARY_SECONDS (a day), as the service's do in the bench."""

import os

from library_provider import make_app

app = make_app(
    os.environ["FLASK_SCOPE"],
    os.environ["FLASK_CLIENT_ID"],
    os.environ["FLASK_CLIENT_SECRET"],
    seconds=float(os.environ.get("BENCH_LIBRARY_SECONDS", "86400")),
)
