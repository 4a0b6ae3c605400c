"""Streaming sample data: the browsing-session event producer (``python -m include.streaming.producer``)."""
