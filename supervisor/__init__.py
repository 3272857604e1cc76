"""theater-server: the management API, the actor registry, spawning and supervision."""
