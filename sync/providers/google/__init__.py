"""Google Calendar API v3 (provider-apis.md section G): the provider, its reader and its OAuth flow."""
