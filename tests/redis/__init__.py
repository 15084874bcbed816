"""Tests of the Redis-backed parts: cache, rate limits, job queue, webhook delivery through a worker."""
