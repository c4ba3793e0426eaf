"""Block Kit, built by pure functions: data in, a view or message (JSON) out, within Slack's limits."""
