"""What a run directory holds on disk: --overwrite leaves nothing of the old run (sanity results and
figures included), and files are written with the process's umask, readable by a shared group."""

from __future__ import annotations

import stat

from audiobench.kernel.cache import atomic_write_bytes, atomic_write_json
from audiobench.store.run_dir import RunStore


def test_overwrite_clears_every_stage_of_the_old_run(tmp_path) -> None:
    store = RunStore(tmp_path / "run")
    for sub in ("cells", "tables", "audio", "masks", "status", "sanity/meta_consistency", "plots/clips"):
        (store.root / sub).mkdir(parents=True)
        (store.root / sub / "old.txt").write_text("old")
    (store.root / "manifest.json").write_text("{}")
    store.clear()
    assert not any(store.root.rglob("*.txt")) and not (store.root / "manifest.json").exists()


def test_atomic_writes_follow_the_umask(tmp_path) -> None:
    import audiobench.kernel.cache as cache

    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_write_json(tmp_path / "b.json", {"a": 1})
    want = 0o666 & ~cache._UMASK  # the umask the process had when audiobench was imported (022: 0644, not 0600)
    for name in ("a.bin", "b.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want
