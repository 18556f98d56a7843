"""Concurrent writers (processes, as with several servers or CLI runs on one home) lose and corrupt nothing."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np

from core.pipeline.embeddings import EmbeddingCache, Pipeline
from tests.conftest import image_bytes, noise_image
from tests.test_embeddings import CountingDetector, MeanColourBackbone

SOURCES = [(f"p{i}.png", image_bytes(noise_image(seed=i))) for i in range(12)]


def _embed_worker(cache_root: str) -> int:
    results = Pipeline(CountingDetector(), MeanColourBackbone(), batch_size=3).embed(SOURCES, cache=EmbeddingCache(Path(cache_root)))
    return sum(r.ok for r in results)


def _save_worker(home: str, seed: int) -> str:
    os.environ["FACELAB_HOME"] = home
    from core.runs import save_run
    from core.training.config import TrainConfig
    from core.training.fit import train_head

    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(0, 1, (5, 8)) + 5, rng.normal(0, 1, (5, 8)) - 5]).astype(np.float32)
    config = TrainConfig(head="centroid", seed=seed)
    result = train_head(config, X, ["a"] * 5 + ["b"] * 5)
    return save_run(result, config, extras={"train_embeddings": X}, name=f"worker {seed}").id


def test_processes_filling_one_cache(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(_embed_worker, [str(root)] * 8) == [12] * 8
    entries = list(root.rglob("*.npz"))
    assert len(entries) == 12 and not list(root.rglob(".tmp-*"))
    cache = EmbeddingCache(root)
    reference = Pipeline(CountingDetector(), MeanColourBackbone())
    for name, data in SOURCES:
        from core.images import content_hash

        hit = cache.get(reference.cache_key(content_hash(data)), name)
        assert hit is not None and hit.embeddings.shape == (1, 3)


def test_processes_saving_runs_at_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        ids = pool.starmap(_save_worker, [(str(home), seed) for seed in range(6)])
    assert len(set(ids)) == 6
    os.environ["FACELAB_HOME"] = str(home)
    from core.runs import list_runs, load_run

    runs = list_runs()
    assert sorted(r.id for r in runs) == sorted(ids)
    assert all(r.status == "complete" for r in runs)
    for run_id in ids:
        loaded = load_run(run_id)
        assert loaded.extras["train_embeddings"].shape == (10, 8)
    assert not [p for p in (home / "runs").iterdir() if p.name.startswith(".tmp-")]
