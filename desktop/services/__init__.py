"""Desktop use cases (no Qt): the library, conflicts, analytics, sync and the encrypted vault."""
