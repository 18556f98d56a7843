"""A tiny plug-in registry shared by detectors, backbones and heads.

Each plug-in is one module in its package that calls ``register`` at import; the
package imports every module it contains, so adding a detector or a backbone is
adding one file. Instances are built lazily, once per process and per settings,
under a lock so concurrent browser sessions share one loaded model.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# Held while a plug-in imports TensorFlow or Keras on a thread of its own. Two threads importing TensorFlow at
# once can take its modules' import locks in opposite orders, and Python then fails one import with "deadlock
# detected" (seen when MTCNN loaded while dlib's Keras twin was built in the background).
HEAVY_IMPORTS = threading.Lock()


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered plug-in: a factory plus what the UI needs to describe it."""

    name: str
    label: str
    factory: Callable[..., T]
    description: str = ""
    available: Callable[[], str | None] = lambda: None  # None when usable, else the reason it is not


@dataclass
class Registry(Generic[T]):
    """Name → plug-in, with a process-wide, thread-safe instance cache."""

    kind: str
    package: str
    _entries: dict[str, Entry[T]] = field(default_factory=dict)
    _instances: dict[tuple, T] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loaded: bool = False

    def register(self, entry: Entry[T]) -> Entry[T]:
        """Add a plug-in (called by the plug-in module at import)."""
        self._entries[entry.name] = entry
        return entry

    def _discover(self) -> None:
        if self._loaded:
            return
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_") and module.name != "base":
                importlib.import_module(f"{self.package}.{module.name}")
        self._loaded = True

    def entries(self) -> dict[str, Entry[T]]:
        """All registered plug-ins, in registration order."""
        with self._lock:
            self._discover()
        return dict(self._entries)

    def entry(self, name: str) -> Entry[T]:
        """The plug-in called ``name``, or a ValueError that lists the known ones."""
        entries = self.entries()
        if name not in entries:
            raise ValueError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(entries)}")
        return entries[name]

    def get(self, name: str, **settings: Any) -> T:
        """The shared instance for ``name`` with these settings, built on first use."""
        entry = self.entry(name)
        key = (name, tuple(sorted(settings.items())))
        with self._lock:
            if key not in self._instances:
                reason = entry.available()
                if reason:
                    raise RuntimeError(f"{self.kind} '{name}' is not available: {reason}")
                self._instances[key] = entry.factory(**settings)
            return self._instances[key]

    def built(self, name: str, **settings: Any) -> bool:
        """Whether the shared instance for ``name`` with these settings exists already (a call to ``get`` is instant)."""
        with self._lock:
            return (name, tuple(sorted(settings.items()))) in self._instances

    def clear(self) -> None:
        """Forget built instances (tests, or after new weights were installed)."""
        with self._lock:
            self._instances.clear()
