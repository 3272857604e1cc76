"""The chain process: links, signs and durably stores every actor's events; answers queries."""
