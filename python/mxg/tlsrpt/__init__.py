"""TLS reporting (RFC 8460): what mxg tells the domains it delivers to
about the TLS sessions it made with them, once a day (docs/tlsrpt.md).

One concern a module: `results` (a typed failure reason as a report's
result type), `sessions` (counting a batch's sessions for the aggregate
in the store, `mxg.store.tlsrpt`), `record` (the ``_smtp._tls`` record,
its destinations, discovery), `report` (the §4 JSON, gzipped, and its
file name), `mail` (the report as DKIM-signed mail) and `send` (one
day's run: once per destination, retries, the rate limit). The relay's
daily run and its outbox (queue and https) are `mxg.pipeline.tlsrpt`."""
