"""``python -m app.client``: the same as the ap-client command."""

from app.client.cli import main

main()
