"""Background jobs: a durable job table (the outbox and the dead letters) relayed to a dramatiq queue."""
