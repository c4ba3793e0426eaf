"""aiohttp surface: REST API v1, OAuth callbacks, webhooks, health and metrics."""
