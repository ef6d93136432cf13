"""Services: the only code that writes a Job, Attempt, Run or Agent.

Each takes keyword-only arguments, writes in one transaction, and leaves its side
effects (events, comms lines, Celery sends, files) for after the commit. Status moves
go through ``transitions`` (the policy tables); event data and comms lines come from
``notes``; refusals are ``pas_core.errors.ServiceError``. Modules, lowest first:

- ``transitions``, ``notes``: status writes, what supervision says;
- ``agents``, ``attempts``, ``notifications``, ``runs``: one noun each;
- ``jobs``: job outcomes (delegate, succeed, aggregate the parent, end the run);
- ``supervision``: timeouts, failures, restart, escalate, switch, fail for good;
- ``retry``, ``seed``, ``submit``, ``faults``: what people and the seed's API ask for.
"""
