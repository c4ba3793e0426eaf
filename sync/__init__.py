"""The domain: providers, sync engine (plan/apply), availability, booking, troubleshooter, automations.

Never imports `bot/` or `web/`; it tells the outside world things through the notice outbox.
"""
