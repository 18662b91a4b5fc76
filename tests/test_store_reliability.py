"""Reliability of masra.datasets.store: a feature store named by the user is used as it is or refused,
never silently rebuilt; concurrent builds of one store folder are serialised (issue 15, hole 8)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_store import _world

import masra.datasets.store_build as store_mod
from masra.datasets.store import INDEX, FeatureStore
from masra.datasets.store_build import build_feature_store
from masra.runlock import RunLock

REPO = Path(__file__).resolve().parents[1]


def _no_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the store was rebuilt")

    monkeypatch.setattr(store_mod, "_write", fail)


def test_store_holding_more_splits_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = _world(tmp_path)
    named = tmp_path / "named"
    build_feature_store(card, ["train", "val"], named)
    _no_rebuild(monkeypatch)
    assert build_feature_store(card, ["train"], named) == named
    assert build_feature_store(card, ["val"], named, reuse_only=True) == named
    assert json.loads((named / INDEX).read_text())["splits"] == ["train", "val"]
    assert len(FeatureStore.open(named).qids) == 6


def test_named_store_missing_a_split_is_refused_not_rebuilt(tmp_path: Path) -> None:
    card = _world(tmp_path)
    named = tmp_path / "named"
    build_feature_store(card, ["train"], named)
    before = (named / INDEX).read_text()
    with pytest.raises(ValueError, match=r"holds splits \['train'\]; missing \['val'\].*--split val --out"):
        build_feature_store(card, ["train", "val"], named, reuse_only=True)
    assert (named / INDEX).read_text() == before
    # sources changed since the build: refused too, and saying so
    np.savez_compressed(tmp_path / "a" / "vA.npz", features=np.ones((9, 3)))
    os.utime(tmp_path / "a" / "vA.npz", ns=(1, 1))
    with pytest.raises(ValueError, match="changed since it was built"):
        build_feature_store(card, ["train"], named, reuse_only=True)
    assert (named / INDEX).read_text() == before
    # a named folder that does not exist yet is built
    assert FeatureStore.open(build_feature_store(card, ["val"], tmp_path / "new", reuse_only=True)).qids


def test_default_store_rebuild_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    card = _world(tmp_path)
    build_feature_store(card, ["train"])
    with caplog.at_level(logging.INFO, logger="masra"):
        build_feature_store(card, ["train", "val"])
    assert (
        f"rebuilding feature store {tmp_path / 'store'}: it holds splits ['train']; missing ['val']"
        in caplog.text
    )


def test_a_build_waits_while_another_build_holds_the_store(tmp_path: Path) -> None:
    card = _world(tmp_path)
    out = tmp_path / "store"
    lock = RunLock(tmp_path / ".store.lock", "test").acquire()  # another build is running
    errors: list[BaseException] = []

    def build() -> None:
        try:
            build_feature_store(card, ["train"], out)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=build)
    t.start()
    time.sleep(0.6)
    assert t.is_alive() and not out.exists()  # waiting, not building beside the other one
    lock.release()
    t.join(30)
    assert not t.is_alive() and not errors
    assert len(FeatureStore.open(out).qids) == 4 and not list(tmp_path.glob(".store*"))


_BUILD = """
import logging, pickle, sys, time
from pathlib import Path
import masra.datasets.store_build as s
logging.basicConfig(level=logging.INFO, format="%(message)s")
real = s._write
def slow(*a, **k):
    time.sleep(1.0)
    return real(*a, **k)
s._write = slow
with open(sys.argv[1], "rb") as f:
    card = pickle.load(f)
s.build_feature_store(card, ["train", "val"], Path(sys.argv[2]))
"""


def test_two_processes_building_one_store_build_it_once(tmp_path: Path) -> None:
    card = _world(tmp_path)
    (tmp_path / "card.pkl").write_bytes(pickle.dumps(card))
    out = tmp_path / "shared_store"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", _BUILD, str(tmp_path / "card.pkl"), str(out)]
    procs = [subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    logs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    text = "".join(logs)
    assert text.count("built feature store") == 1 and text.count("is up to date") == 1, text
    assert len(FeatureStore.open(out).qids) == 6 and not list(tmp_path.glob(".shared_store*"))
