"""What the platform knows and decides of a machine: its configuration as pushed, its failures and
status transitions, its unresponsiveness and idleness, and its revocation."""
