"""What a running app serves from the model registry: the loaded active version of one model, swapped for a
newly promoted one without a restart (`textcore.registry` keeps the versions and the ``active`` alias)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from textcore.errors import ModelNotReady
from textcore.registry_files import read_active

if TYPE_CHECKING:
    from textcore.registry import ModelRegistry, ModelVersion

__all__ = ["ActiveModelWatcher"]

T = TypeVar("T")
log = logging.getLogger("textcore.registry")  # one logger for the registry and what serves from it


class ActiveModelWatcher(Generic[T]):
    """Holds the loaded active version of one model and swaps it when a new version is promoted.

    Args:
        registry: The registry to watch.
        name: The model name.
        loader: Turns a version into the object the app serves (called outside the swap lock).
        retry_s: How long a promotion that failed to load waits before it is tried again (unless ``active``
            changes first): a broken version is not reloaded on every request.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        name: str,
        loader: Callable[[ModelVersion], T],
        *,
        retry_s: float = 60.0,
    ) -> None:
        self._registry = registry
        self._name = name
        self._model_dir = registry._dir(name, must_exist=False)
        self._loader = loader
        self._refresh_lock = threading.Lock()  # one check-and-load at a time
        self._lock = threading.Lock()  # guards the swap of the state below
        self._state: tuple[int, T] | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._retry_s = retry_s
        # a promotion that did not load: its stamp, why, and when (time.monotonic)
        self._failed: tuple[tuple[int, int, int], str, float] | None = None
        # an alias that names no version (a folder, unreadable, no version in it): its stamp and why
        self._unusable: tuple[tuple[int, int, int] | None, str] | None = None

    @property
    def version(self) -> int | None:
        """The version currently loaded, or None before the first load."""
        with self._lock:
            return None if self._state is None else self._state[0]

    def current(self) -> T:
        """Returns the loaded model, loading the active version on first use.

        Raises:
            ModelNotReady: No version of the model is active, or none could be loaded (the message says why;
                the loader's own exception is its cause). A later call loads the active version once it
                loads: after ``retry_s``, or at once when ``active`` changes.
        """
        if self._state is None:
            try:
                self.refresh()
            except Exception as exc:  # whatever the loader raised: callers see one error, the service a 503
                if self.version is None:
                    reason = self._failed[1] if self._failed is not None else str(exc)
                    raise ModelNotReady(
                        f"the active version of {self._name!r} could not be loaded: {reason}"
                    ) from exc
        with self._lock:
            state = self._state
        if state is None:
            failed = self._failed
            if failed is not None:
                raise ModelNotReady(f"the active version of {self._name!r} could not be loaded: {failed[1]}")
            if (unusable := self._unusable) is not None:
                raise ModelNotReady(f"no active version of {self._name!r}: {unusable[1]}")
            raise ModelNotReady(f"no active version of {self._name!r} in {self._registry.root} yet")
        return state[1]

    def latest(self) -> T:
        """Returns the loaded model after picking up a newly promoted version.

        A promotion whose version fails to load is logged, and tried again only after ``retry_s`` or when
        ``active`` changes; the model already loaded keeps serving meanwhile.

        Raises:
            ModelNotReady: No version is active, or none could be loaded (the message says why).
        """
        try:
            self.refresh()
        except Exception as exc:  # whatever the loader raised: a broken promotion must not stop serving
            if self.version is None:
                reason = self._failed[1] if self._failed is not None else str(exc)
                raise ModelNotReady(
                    f"the active version of {self._name!r} could not be loaded: {reason}"
                ) from exc
            log.exception(
                "%s: a newly promoted version failed to load; still serving version %s",
                self._name,
                self.version,
            )
        return self.current()

    def refresh(self) -> bool:
        """Loads the active version if it changed; readers keep the old model until the new one is loaded.

        Returns:
            True if a new version was loaded and swapped in.

        Raises:
            Exception: Whatever ``loader`` raised; the old model stays in place, and the same promotion is not
                loaded again (nor raised again) for ``retry_s`` unless ``active`` changes.
        """
        with self._refresh_lock:
            alias = self._model_dir / "active"
            try:
                st = alias.stat()
            except FileNotFoundError:
                return self._no_version(None, None)
            except OSError as exc:  # a name that is a file, a folder this process may not search
                return self._no_version(None, f"{alias}: could not be read: {exc.strerror}")
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp == self._stamp or self._waiting_to_retry(stamp):
                return False
            version, problem = read_active(self._model_dir)
            if version is None:
                return self._no_version(stamp, problem)
            self._unusable = None
            if version == self.version:
                self._stamp = stamp
                return False
            try:
                model = self._loader(self._registry.get(self._name, version))
            except Exception as exc:
                self._failed = (stamp, f"version {version}: {exc}", time.monotonic())
                raise
            with self._lock:
                self._state = (version, model)
            self._stamp, self._failed = stamp, None
            return True

    def _no_version(self, stamp: tuple[int, int, int] | None, problem: str | None) -> bool:
        """Notes an alias that names no version (logging why, once while it stays so); returns False."""
        if problem is not None and self._unusable != (stamp, problem):
            serving = f"still serving version {self.version}" if self.version is not None else "serving none"
            log.warning("%s: the active alias names no version: %s; %s", self._name, problem, serving)
        self._unusable = None if problem is None else (stamp, problem)
        return False

    def _waiting_to_retry(self, stamp: tuple[int, int, int]) -> bool:
        failed = self._failed
        return failed is not None and failed[0] == stamp and time.monotonic() - failed[2] < self._retry_s
