"""gunicorn reads ./gunicorn.conf.py by itself when started here: the
production settings are the installed package's app/gunicorn_conf.py
(``gunicorn -c python:app.gunicorn_conf 'app:create_app()'`` from anywhere)."""

from app.gunicorn_conf import *  # noqa: F403
