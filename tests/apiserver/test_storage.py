"""The write-ahead log behind the API server: what it gives back after a restart or a crash."""
from __future__ import annotations

import glob
import os
import shutil
import sqlite3

import pytest

from kubemu.apiserver.main import open_backend
from kubemu.apiserver.storage import Change, CorruptStorage, WALBackend, encode_change


def change(rev: int, name: str, type_: str = "ADDED", data: bytes | None = None, prev: bytes | None = None) -> Change:
    return Change(rev, type_, "Lease", "default", name, data if data is not None else f"{name}@{rev}".encode(), prev)


def reopen(directory: str, **kw) -> tuple[WALBackend, object]:
    b = WALBackend(directory, **kw)
    return b, b.load()


def state(loaded) -> dict:
    return {(k, ns, n): d for k, ns, n, d in loaded.objects}


def test_commits_come_back_after_a_restart(tmp_path):
    d = str(tmp_path / "wal")
    b, loaded = reopen(d)
    assert (loaded.revision, loaded.objects, loaded.log) == (0, [], [])
    b.commit([change(1, "a"), change(2, "b")], 0)
    b.commit([change(3, "a", "MODIFIED", b"a2", prev=b"a@1"), change(4, "b", "DELETED")], 0)
    b.close()
    b, loaded = reopen(d)
    assert loaded.revision == 4
    assert state(loaded) == {("Lease", "default", "a"): b"a2"}
    assert [c.rev for c in loaded.log] == [1, 2, 3, 4]
    assert loaded.log[2] == change(3, "a", "MODIFIED", b"a2", prev=b"a@1")
    b.commit([change(5, "c")], 0)  # appends to the same segment
    b.close()
    assert len(glob.glob(os.path.join(d, "*.wal"))) == 1
    assert reopen(d)[1].revision == 5


def test_old_segments_go_behind_a_snapshot_and_history_stays(tmp_path):
    d = str(tmp_path / "wal")
    b, _ = reopen(d, segment_bytes=1024)
    live: dict[str, bytes] = {}
    rev = 0
    for i in range(200):
        rev += 1
        name = f"o{i % 7}"
        if name in live and i % 3 == 0:
            b.commit([change(rev, name, "DELETED", live.pop(name))], max(0, rev - 50))
        else:
            live[name] = f"{name}@{rev}".encode()
            b.commit([change(rev, name, data=live[name])], max(0, rev - 50))
    b.close()
    segments = glob.glob(os.path.join(d, "*.wal"))
    assert 1 < len(segments) <= 5, "old segments were not dropped (12 without compaction)"
    assert len(glob.glob(os.path.join(d, "*.snap"))) == 1
    b, loaded = reopen(d, segment_bytes=1024)
    assert loaded.revision == 200
    assert state(loaded) == {("Lease", "default", n): v for n, v in live.items()}
    revs = [c.rev for c in loaded.log]
    assert revs == list(range(loaded.compacted + 1, 201))
    assert 0 < loaded.compacted <= 150, "history younger than compact_to must be kept"


def test_a_crash_between_snapshot_and_deletion_loses_nothing(tmp_path):
    d = str(tmp_path / "wal")
    b, _ = reopen(d, segment_bytes=512)
    saved = {}
    for rev in range(1, 60):
        b.commit([change(rev, f"o{rev % 5}")], max(0, rev - 10))
        b.settle()  # the snapshot, and the deletion behind it, happen in the background
        for p in glob.glob(os.path.join(d, "*.wal")):
            saved.setdefault(p, open(p, "rb").read())
    b.close()
    for p, data in saved.items():  # the deleted segments are back
        if not os.path.exists(p):
            open(p, "wb").write(data)
    _, loaded = reopen(d, segment_bytes=512)
    assert loaded.revision == 59
    assert state(loaded) == {("Lease", "default", f"o{r % 5}"): f"o{r % 5}@{r}".encode() for r in range(55, 60)}


def test_a_full_segment_gives_way_to_a_spare_made_in_the_background(tmp_path):
    """The commit that fills a segment renames a zero-filled spare into place instead of
    writing a whole segment of zeros itself; the next spare is then made in the background."""
    d = str(tmp_path / "wal")
    b, _ = reopen(d, segment_bytes=512)
    spare = os.path.join(d, "spare.tmp")
    b.commit([change(1, "a")], 0)
    b.settle()
    first_spare = os.stat(spare).st_ino
    assert os.path.getsize(spare) == 512 and open(spare, "rb").read() == bytes(512)
    rev = 1
    while len(glob.glob(os.path.join(d, "*.wal"))) < 2:
        rev += 1
        b.commit([change(rev, f"o{rev}")], 0)
    newest = max(glob.glob(os.path.join(d, "*.wal")))
    assert os.stat(newest).st_ino == first_spare
    b.settle()
    assert os.stat(spare).st_ino != first_spare  # the next one is ready
    b.close()
    _, loaded = reopen(d, segment_bytes=512)
    assert loaded.revision == rev and not os.path.exists(spare)


@pytest.mark.parametrize("tear", ["half a record", "zeros then the rest"])
def test_a_torn_last_write_is_cut_off(tmp_path, tear):
    d = str(tmp_path / "wal")
    b, _ = reopen(d)
    b.commit([change(1, "a"), change(2, "b")], 0)
    b.close()
    (seg,) = glob.glob(os.path.join(d, "*.wal"))
    end = sum(len(encode_change(c)) for c in (change(1, "a"), change(2, "b")))
    torn = encode_change(change(3, "c"))
    with open(seg, "r+b") as f:
        if tear == "half a record":
            f.seek(end)
            f.write(torn[:len(torn) // 2])
        else:  # the first sectors of the write never reached the disk
            f.seek(end + 8)
            f.write(torn[8:])
    b, loaded = reopen(d)
    assert loaded.revision == 2 and [c.rev for c in loaded.log] == [1, 2]
    b.commit([change(3, "d")], 0)
    b.close()
    _, loaded = reopen(d)
    assert [c.name for c in loaded.log] == ["a", "b", "d"]


def damaged_log(d: str) -> str:
    """A log of several segments whose first one has a bad record (not a torn end): its path."""
    b, _ = reopen(d, segment_bytes=256)
    for rev in range(1, 20):
        b.commit([change(rev, f"o{rev}")], 0)
    b.close()
    first = sorted(glob.glob(os.path.join(d, "*.wal")))[0]
    with open(first, "r+b") as f:
        f.seek(20)
        f.write(b"\xff\xfe")
    return first


def test_a_bad_record_inside_the_log_refuses_to_load(tmp_path):
    d = str(tmp_path / "wal")
    first = damaged_log(d)
    with pytest.raises(CorruptStorage, match=os.path.basename(first)):
        reopen(d, segment_bytes=256)


def test_a_bad_snapshot_refuses_to_load(tmp_path):
    d = str(tmp_path / "wal")
    b, _ = reopen(d, segment_bytes=256)
    for rev in range(1, 30):
        b.commit([change(rev, f"o{rev}")], rev - 5)
    b.close()
    (snap,) = glob.glob(os.path.join(d, "*.snap"))
    with open(snap, "r+b") as f:
        f.seek(40)
        f.write(b"\x00\x01")
    with pytest.raises(CorruptStorage, match="checksum"):
        reopen(d, segment_bytes=256)


def test_interrupted_files_are_removed(tmp_path):
    d = str(tmp_path / "wal")
    b, _ = reopen(d)
    b.commit([change(1, "a")], 0)
    b.close()
    open(os.path.join(d, "0000000000000002.wal.tmp"), "wb").write(b"\x00" * 100)
    open(os.path.join(d, "0000000000000001.snap.tmp"), "wb").write(b"junk")
    _, loaded = reopen(d)
    assert loaded.revision == 1
    assert not glob.glob(os.path.join(d, "*.tmp"))


def test_a_sqlite_store_of_an_earlier_kubemu_is_imported(tmp_path):
    state_dir = str(tmp_path)
    db = sqlite3.connect(os.path.join(state_dir, "store.db"))
    db.executescript("""
        CREATE TABLE objects (kind TEXT, namespace TEXT, name TEXT, rev INTEGER, data BLOB);
        CREATE TABLE log (rev INTEGER PRIMARY KEY, type TEXT, kind TEXT, namespace TEXT, name TEXT, data BLOB, prev BLOB);
        CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER);
        INSERT INTO objects VALUES ('Lease', 'default', 'a', 7, x'0102');
        INSERT INTO meta VALUES ('revision', 9);
    """)
    db.commit()
    db.close()
    b = open_backend(state_dir)
    loaded = b.load()
    assert (loaded.revision, loaded.compacted) == (9, 9)
    assert loaded.objects == [("Lease", "default", "a", b"\x01\x02")]
    assert os.path.exists(os.path.join(state_dir, "store.db.imported"))
    b.commit([change(10, "b")], 9)
    b.close()
    assert reopen(os.path.join(state_dir, "wal"))[1].revision == 10
    shutil.rmtree(state_dir)


def test_the_api_server_refuses_a_damaged_store_with_a_message(tmp_path):
    from kubemu.testing import procs
    state = tmp_path / "state"
    first = damaged_log(str(state / "wal"))
    import subprocess
    res = subprocess.run(procs.kubemu_command("apiserver", "--listen", f"127.0.0.1:{procs.free_port()}",
                                              "--state-dir", str(state)),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "the store is damaged" in res.stderr and os.path.basename(first) in res.stderr
    assert "Traceback" not in res.stderr


def test_list_bytes_follow_every_write_in_a_batch_and_a_restart(tmp_path):
    """Store.list_encoded (what List sends) stays the encoding of what Store.list holds, when one
    batch creates and deletes an object, or updates one twice, and after a restart."""
    import asyncio

    from kubemu import objects
    from kubemu.apiserver import registry
    from kubemu.apiserver.store import Store
    from kubemu.v1 import api_pb2

    def lease(name: str, holder: str = "a"):
        o = objects.new("Lease", name, "default")
        o.spec.holderIdentity = holder
        return o

    def check(store: Store) -> list[str]:
        for ns in ("", "default", "kube-system"):
            items, rev = store.list("Lease", ns)
            raw, rev2 = store.list_encoded("Lease", ns)
            resp = api_pb2.ListResponse.FromString(raw)
            assert rev == rev2
            assert [objects.unpack(a) for a in resp.items] == items
        assert set(store.encoded["Lease"]) == set(store.objects["Lease"])
        return [o.metadata.name for o in store.list("Lease")[0]]

    async def main():
        store = Store(WALBackend(str(tmp_path / "wal")), registry.strategies("10.96.0.0/16", (30000, 32767)))
        await store.start()
        await store.create(lease("keep"))
        await store.create(lease("twice"))
        gone = asyncio.ensure_future(store.create(lease("gone")))
        # queued together, so the writer takes them as one batch
        ops = [gone,
               asyncio.ensure_future(store.delete("Lease", "default", "gone")),
               asyncio.ensure_future(store.update(lease("twice", "b"))),
               asyncio.ensure_future(store.update(lease("twice", "c"))),
               asyncio.ensure_future(store.create(lease("new")))]
        await asyncio.gather(*ops)
        assert check(store) == ["keep", "new", "twice"]
        assert store.get("Lease", "default", "twice").spec.holderIdentity == "c"
        await store.stop()
        again = Store(WALBackend(str(tmp_path / "wal")), registry.strategies("10.96.0.0/16", (30000, 32767)))
        await again.start()
        assert check(again) == ["keep", "new", "twice"]
        await again.stop()

    asyncio.run(main())
