"""NATS authenticates every connection and confines every machine to itself (the auth callout).

These tests attack as a hostile machine would, with its own valid credentials or with guessed
ones, and assert each attack fails and changes nothing. The NATS server here is the embedded one
with ``NatsAuth`` (accounts AUTH/APP/SYS, static service users, the callout for everyone else);
the callout service runs in this process; daemons are real processes.
"""
