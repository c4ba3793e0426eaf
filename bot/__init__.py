"""Slack surface (Bolt AsyncApp): commands, modals, App Home, notice delivery."""
