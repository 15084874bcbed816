"""Webhooks: endpoints, signed deliveries through the job queue, a delivery log."""
