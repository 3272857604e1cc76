"""The per-actor worker: a fork server, and the process each actor runs in."""
