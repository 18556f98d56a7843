"""Two users taking one dataset name at the same moment: exactly one wins, the other is told, no photo is lost.

Issue 11: two imports of one new name at once were both told "Imported" 14 times out of 15, and the first
user's photos were silently replaced. Each round here holds both imports at the publish step until both
are there (a barrier in front of ``publish_dir``), so every round is the worst interleaving, with threads
(two browser sessions of one server) and with processes (two servers, or a server and the CLI).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from core.config import datasets_dir
from core.data import builder, zipimport
from tests.test_importer import make_zip, png

ROUNDS_THREADS = 20
ROUNDS_PROCESSES = 8
CREATED = "was just created by someone else"
REPLACED = "was just replaced by someone else"


def user_zip(user: int) -> bytes:
    """A zip only this user could have imported: person ``user<n>``, photos of their own."""
    return make_zip([(f"train/user{user}/{i}.png", png(100 * user + i)) for i in range(3)])


def photos_of(name: str) -> set[tuple[str, bytes]]:
    """Every photo of a dataset as (relative path, bytes)."""
    root = datasets_dir() / name
    return {(p.relative_to(root).as_posix(), p.read_bytes()) for p in root.rglob("*.png")}


def expected_photos(user: int) -> set[tuple[str, bytes]]:
    return {(f"train/user{user}/{i}.png", png(100 * user + i)) for i in range(3)}


def hold_publish(monkeypatch: pytest.MonkeyPatch, module: Any, barrier: threading.Barrier) -> None:
    """Make ``module``'s imports or creations wait for each other just before they publish."""
    real = module.publish_dir

    def publish_together(*args: Any) -> None:
        barrier.wait(timeout=30)
        real(*args)

    monkeypatch.setattr(module, "publish_dir", publish_together)


def import_outcome(name: str, user: int, overwrite: bool) -> str:
    try:
        zipimport.import_zip(user_zip(user), name, overwrite=overwrite)
        return "ok"
    except ValueError as exc:
        return str(exc)


def race_threads(name: str, overwrite: bool) -> dict[int, str]:
    outcomes: dict[int, str] = {}
    threads = [threading.Thread(target=lambda u=user: outcomes.__setitem__(u, import_outcome(name, u, overwrite)))
               for user in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def check_one_winner(name: str, outcomes: dict[int, str], message: str) -> None:
    """Exactly one import succeeded, the other was told why, and the dataset holds the winner's photos, all of them."""
    winners = [user for user, outcome in outcomes.items() if outcome == "ok"]
    assert len(winners) == 1, outcomes
    loser = 3 - winners[0]
    assert message in outcomes[loser] and f"'{name}'" in outcomes[loser]
    assert photos_of(name) == expected_photos(winners[0])
    assert not [p.name for p in datasets_dir().iterdir() if p.name.startswith(".tmp-")]


def test_two_imports_of_a_new_name_in_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    hold_publish(monkeypatch, zipimport, threading.Barrier(2))
    for round_ in range(ROUNDS_THREADS):
        name = f"same{round_}"
        check_one_winner(name, race_threads(name, overwrite=False), CREATED)


def test_two_overwrites_of_one_dataset_in_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both saw the old dataset; the first to finish replaces it, the second must not silently replace the first."""
    zipimport.import_zip(user_zip(0), "shared")
    hold_publish(monkeypatch, zipimport, threading.Barrier(2))
    for _ in range(ROUNDS_THREADS // 2):
        outcomes = race_threads("shared", overwrite=True)
        check_one_winner("shared", outcomes, REPLACED)
        assert expected_photos(0) != photos_of("shared")


def test_two_builders_create_one_name(monkeypatch: pytest.MonkeyPatch) -> None:
    hold_publish(monkeypatch, builder, threading.Barrier(2))
    for round_ in range(ROUNDS_THREADS // 2):
        outcomes: list[str] = []

        def create(name: str = f"class{round_}") -> None:
            try:
                builder.create_dataset(name)
                outcomes.append("ok")
            except ValueError as exc:
                outcomes.append(str(exc))

        threads = [threading.Thread(target=create) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(outcomes, key=len) == ["ok", f"a dataset called 'class{round_}' {CREATED}; choose another name."]
    assert builder.builder_datasets() == sorted(f"class{r}" for r in range(ROUNDS_THREADS // 2))


def _import_in_process(home: str, name: str, user: int, overwrite: bool, barrier: Any) -> str:
    """One import in a worker process, held before publishing like the threads above."""
    os.environ["FACELAB_HOME"] = home
    real = zipimport.publish_dir

    def publish_together(*args: Any) -> None:
        barrier.wait(timeout=30)
        real(*args)

    zipimport.publish_dir = publish_together  # this worker process only
    try:
        return import_outcome(name, user, overwrite)
    finally:
        zipimport.publish_dir = real


@pytest.mark.parametrize("overwrite", [False, True])
def test_two_imports_in_processes(facelab_home: Path, overwrite: bool) -> None:
    if overwrite:
        zipimport.import_zip(user_zip(0), "shared")
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(2) as pool:
        barrier = manager.Barrier(2)
        for round_ in range(ROUNDS_PROCESSES):
            name = "shared" if overwrite else f"same{round_}"
            results = pool.starmap(_import_in_process, [(str(facelab_home), name, user, overwrite, barrier)
                                                        for user in (1, 2)])
            check_one_winner(name, dict(zip((1, 2), results)), REPLACED if overwrite else CREATED)
