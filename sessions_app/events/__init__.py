"""Event webhooks to subscribers: a transactional outbox, signed deliveries, retries.

See docs/event-webhooks.md.
"""
