"""flowhawk's HTTP server: the REST API under ``/api/v1`` and the server-rendered web UI."""
