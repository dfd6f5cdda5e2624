"""Outbound HTTP: one `Transport` interface (transport.py) for proxied requests, websockets and token
requests; the native HTTP/1.1 client (connection.py, response.py, pool.py) and TLS settings (tls.py)."""
