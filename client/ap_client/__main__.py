"""``python -m ap_client``: the same as the ap-client command."""

from ap_client.cli import main

main()
