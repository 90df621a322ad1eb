"""Edge delivery: a signed, token-protected HTTP front of the registry, and the device-side client."""
