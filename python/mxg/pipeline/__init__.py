"""The control plane as a pipeline: each stage is one module, passed once
by every message.

::

    engine event "received"  ─▶ intake      classify once, index, on_unmet at intake
                                  │
                                  ▼
                               plan        route + policy ─▶ the job the engine enforces
                                  │
                                  ▼
                               dispatch    max_jobs, one job per message and domain, backlog
                                  │                      ─▶ engine (delivery jobs)
    engine event "delivery_done" ─▶ outcomes    retry, expiry, on_unmet ─▶ store, DSNs (notices)
                                  │
                                  ▼
                               finish      rule 11: final states stored, then the spool file goes

    end-of-DATA / RCPT questions ─▶ verdicts   refuse what a class would reject anyway
    start-up                     ─▶ recovery   rule 10: index what the spool holds

``controller.Relay`` wires the stages to the engine and the task group;
each stage gets the shared ``context.Context`` and the stages it hands
work to, nothing else.
"""

from mxg.pipeline.controller import Relay

__all__ = ["Relay"]
