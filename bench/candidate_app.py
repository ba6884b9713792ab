"""The service as one WSGI object, for bench/servers.py: every stock server
there imports the same ``bench.candidate_app:app`` (the app factory called
once, at import, in the worker)."""

from app import create_app

app = create_app()
