"""What runs in the machine: a command (``tools``, streamed: ``exec_streams``), background
processes (``procs`` over ``slot``), cron jobs (``scheduler``), terminal sessions (``sessions``
over ``pty_session``), their environment (``env``, ``envload``), and their children's exits
(``children``, ``reaping``)."""
