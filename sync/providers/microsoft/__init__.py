"""Microsoft Graph calendars (provider-apis.md section M): the provider, its reader and its sign-in."""
