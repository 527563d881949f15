"""``python -m vertexkit.service``: serve the submission service on $PORT (the container's
command; configured by environment variables, see vertexkit.service.server)."""

from vertexkit.service.server import main

main()
