"""In-app notifications: conflicts, imports, disabled webhooks, accuracy alerts; listed and streamed (SSE)."""
