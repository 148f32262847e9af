"""Outbound federation, everything that talks to other servers: the HTTP client with server
discovery and the SSRF guard (client, ip_guard), remote verify keys (keyring), and the sender
that delivers events to the servers in a room (sender)."""
