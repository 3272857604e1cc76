"""What the chain process keeps in memory per actor or per chain read is pruned as actors come
and go (scripts/soak.py found both growing with every actor a long-running server had seen)."""

from __future__ import annotations

import os
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from theater.chaindb import ChainReader
from theater.paths import Home


def test_the_heads_of_actors_without_a_worker_are_forgotten_and_read_again_when_needed(home: Home):
    from chain.service import ChainService

    home.ensure()
    svc = ChainService(home)
    try:
        for i in range(20):
            svc.store.append(f"a{i}", "lifecycle/start", b"%d" % i, time.time_ns())
        svc.access.bind("a0", os.getpid())
        svc._commit()
        svc._sweep(time.monotonic())
        assert set(svc.store.heads) == {"a0"}       # the others' heads (and states) are not held
        # a forgotten head is read again: its chain goes on where it ended
        assert svc.store.append("a5", "lifecycle/stop", b"", time.time_ns()) == 1
        svc._commit()
        report = ChainReader(home.chains_db).verify("a5", svc.key.public_key())
        assert report.events == 2
    finally:
        svc.streams.close()
        svc.store.close()
        svc.ctx.destroy(linger=0)


def test_a_reader_keeps_where_it_stopped_for_a_bounded_number_of_chains(tmp_path):
    from chain.store import ChainStore
    from theater.chaindb import RESUME_KEPT

    store = ChainStore(tmp_path / "chains.db", Ed25519PrivateKey.generate())
    for i in range(RESUME_KEPT + 50):
        store.append(f"a{i}", "lifecycle/start", b"", time.time_ns())
    store.commit()
    reader = ChainReader(tmp_path / "chains.db")
    for i in range(RESUME_KEPT + 50):
        assert len(list(reader.events(f"a{i}"))) == 1
    assert len(reader._resume) == RESUME_KEPT
