"""mxg: outbound mail security gateway.

The data plane (SMTP in and out, spool) is Rust in :mod:`mxg._core`; this
package is the control plane: configuration, DNS, queue, retries, DSNs,
logs and the ``mxg`` command.
"""

__version__ = "0.1.0"
