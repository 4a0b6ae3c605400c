"""Pure building blocks of the REST API -> S3 pattern (no Airflow, no network).

* ``records``: JSON path selection of records (and totals, cursors, next URLs) in a page
* ``paginators``: one small class per pagination style, chosen by name (``PAGINATORS``)
* ``auth``: none, bearer, API key, OAuth2 client credentials (``AUTHS``)
* ``throttle``: client-side rate limiter, ``Retry-After`` parsing, backoff with jitter
* ``client``: the page loop that ties them together over an injected transport
* ``config``: endpoint declarations (``include/config/rest_endpoints.yaml``) and their validation
"""
