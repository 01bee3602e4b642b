"""Operator commands run through ``python server.py <command>`` (``users``)."""
