"""Load each model once and reuse it: a thread-safe pipeline cache.

The napari widgets ask
:data:`napari_histodiff.pipelines.cache.MODEL_CACHE` for a pipeline from a worker
thread; the same (folder, device, dtype) is loaded once per session, and two
threads asking for it at the same time wait for one load. Model sources are

* ``demo``: the model shipped with the package,
* a local model folder,
* a Hugging Face Hub id (``owner/name``), downloaded when online.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import HistodiffError, InputError, ModelFormatError

Key = tuple[str, str, str]


def source_kind(source: str) -> str:
    """``demo`` (a shipped model's name), ``folder`` or ``hub`` for a model
    source typed by a user."""
    from . import SHIPPED_NAMES

    text = str(source).strip()
    if text in SHIPPED_NAMES:
        return "demo"
    p = Path(text).expanduser()
    if p.exists() or p.is_absolute() or text.startswith((".", "~")):
        return "folder"
    parts = text.split("/")
    if len(parts) == 2 and all(parts) and not text.endswith(".json"):
        return "hub"
    return "folder"


def resolve_source(source: str | Path, download: bool = True) -> Path:
    """The local folder of a model source (downloads a Hub id when online).

    Raises
    ------
    ModelFormatError
        ``demo`` when no demo model ships, or a folder that does not exist.
    HistodiffError
        A Hub id that cannot be downloaded (offline, unknown id).
    """
    from . import resolve_model_path

    text = str(source).strip()
    if not text:
        raise InputError("model: choose the demo model, a model folder or a "
                         "Hugging Face id (owner/name)")
    kind = source_kind(text)
    if kind == "demo":
        return resolve_model_path(text).resolve()
    if kind == "hub" and not Path(text).exists():
        if not download:
            raise InputError(f"model: {text} is a Hugging Face id; it is "
                             "downloaded when the model is loaded")
        return _download(text)
    path = Path(text).expanduser()
    if not path.exists():
        raise ModelFormatError(
            f"model: the folder {path} does not exist. Choose a model folder made "
            "by `histodiff train` or `histodiff model init`, or the demo model."
        )
    return path.resolve()


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - diffusers depends on it
        raise HistodiffError("model: huggingface_hub is needed to download "
                             f"{repo_id}") from exc
    try:
        return Path(snapshot_download(repo_id, allow_patterns=[
            "histodiff.json", "*/config.json", "*/scheduler_config.json",
            "*/*.safetensors"]))
    except Exception as exc:  # network, auth and not-found errors vary
        raise HistodiffError(
            f"model: cannot download {repo_id} from the Hugging Face Hub "
            f"({type(exc).__name__}: {exc}). Check the id and your network, or "
            "download it once and choose its folder."
        ) from exc


def cache_key(folder: Path, device: str = "auto", fp16: bool = False) -> Key:
    """(folder, concrete device, dtype): what makes two loads the same."""
    from ..devices import resolve_device, resolve_dtype

    dev = resolve_device(device)
    dtype = resolve_dtype(dev, fp16)
    return str(Path(folder).resolve()), str(dev), str(dtype).replace("torch.", "")


class ModelCache:
    """Pipelines by (folder, device, dtype), loaded once, thread-safe.

    Parameters
    ----------
    loader : callable
        ``loader(folder, device, fp16) -> pipeline`` (the session's cache,
        :data:`napari_histodiff.pipelines.cache.MODEL_CACHE`, loads
        ``HistoDiffPipeline``; tests pass a stub).
    max_items : int
        Least recently used pipelines beyond this are dropped.
    """

    def __init__(self, loader: Callable[[Path, str, bool], Any],
                 max_items: int = 2) -> None:
        self._loader = loader
        self._max = max(1, int(max_items))
        self._items: OrderedDict[Key, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Key, threading.Lock] = {}
        self.loads = 0

    def get(self, source: str | Path, device: str = "auto", fp16: bool = False):
        """The pipeline for a model source; loads it on first use.

        Blocking (call it from a worker thread). Errors are
        :class:`~napari_histodiff.errors.HistodiffError` with messages for
        the user.
        """
        folder = resolve_source(source)
        key = cache_key(folder, device, fp16)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            pipe = self._loader(folder, key[1], fp16)
            with self._lock:
                self.loads += 1
                self._items[key] = pipe
                while len(self._items) > self._max:
                    self._items.popitem(last=False)
                self._loading.pop(key, None)
            return pipe

    def peek(self, source: str | Path, device: str = "auto", fp16: bool = False):
        """The cached pipeline, or None (never loads or downloads)."""
        try:
            key = cache_key(resolve_source(source, download=False), device, fp16)
        except HistodiffError:
            return None
        with self._lock:
            return self._items.get(key)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
