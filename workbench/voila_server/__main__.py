"""``python -m workbench.voila_server NOTEBOOK [options]``: serve the dashboard."""

from workbench.voila_server.app import main

main()
