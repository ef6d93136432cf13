"""Stores: where supervision keeps what it must not lose or must find fast.

- ``redis``: the process's Redis client and key names;
- ``heartbeats``: the running attempts and their last beats (what TRON sweeps);
- ``events``: the append-only event log, pushed live to every open stream;
- ``comms``: the comms log, a row and a line in the day's file per message.

Stores know rows and keys, not rules: nothing here decides a status.
"""
