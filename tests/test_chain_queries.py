"""The chain's `events` query reads a bounded number of rows: a type filter matching none of a
long chain read it all in the chain's loop (0.7 s on 300,000 events, every actor's commits
waiting), and a worker may query its own chain every turn. A page then says `more` and
`next`, and clients paging on it see what one read gives."""

from __future__ import annotations

from types import SimpleNamespace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from theater.chaindb import ChainReader
from theater.client import Client


def _queries(tmp_path, monkeypatch, rows: int):
    from chain import queries
    from chain.store import ChainStore

    monkeypatch.setattr(queries, "QUERY_ROWS", rows, raising=False)
    key = Ed25519PrivateKey.generate()
    store = ChainStore(tmp_path / "chains.db", key)
    for i in range(175):
        store.append("a", "rare/x" if i % 60 == 59 else "common/y", b"%d" % i, 1_000 + i)
    store.commit()
    return queries.Queries(store, ChainReader(tmp_path / "chains.db"), key, dict)


def test_a_query_whose_filter_matches_nothing_reads_a_bounded_number_of_rows(tmp_path, monkeypatch):
    q = _queries(tmp_path, monkeypatch, 50)
    fields, frames = q.answer({"k": "query", "what": "events", "actor": "a", "types": ["nomatch"]})
    assert (fields["events"], frames, fields["more"], fields["next"]) == ([], [], True, 50)
    fields, _ = q.answer({"k": "query", "what": "events", "actor": "a", "types": ["nomatch"], "since": 150})
    assert (fields["events"], fields["more"]) == ([], False)


def test_clients_paging_on_next_see_what_one_read_gives(tmp_path, monkeypatch):
    q = _queries(tmp_path, monkeypatch, 50)
    chain = SimpleNamespace(call=lambda what, **kw: q.answer({"k": "query", "what": what, **kw}))
    whole = list(ChainReader(tmp_path / "chains.db").events("a", types=("rare/*",)))
    assert [e.seq for e in whole] == [59, 119]
    assert Client.events(chain, "a", 0, None, ["rare/*"]) == whole
    assert Client.events(chain, "a", 0, 1, ["rare/*"]) == whole[:1]
    assert Client.events(chain, "a", 100, None, ["x"]) == whole[1:]
    assert len(Client.events(chain, "a", 0, None, None)) == 175
