"""A service process's run: its runner and event loop, its graceful stop, a stage's composition,
and its metrics."""
