"""The demo music-catalogue REST API of the local stack (a stand-in for Spotify's Web API).

A small ASGI app (``app.py``) over deterministic data (``catalogue.py``), served by uvicorn
(``python -m include.demo_api``). It offers OAuth2 client credentials, offset/limit, page
number, body-cursor and ``Link``-header pagination, a per-token rate limit and faults that
tests switch on and off at runtime through ``/admin/*``.
"""
