"""TLS reporting (RFC 8460): what mxg tells the domains it delivers to
about the TLS sessions it made with them, once a day.

One concern a module: `results` (a typed failure reason as a report's
result type), `sessions` (counting a batch's sessions for the aggregate
in the store, `mxg.store.tlsrpt`)."""
