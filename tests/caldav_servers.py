"""Fixtures that start real CalDAV servers (Radicale, Xandikos) on free loopback ports."""
