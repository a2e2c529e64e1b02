"""Keyboard shortcuts of the HistoDiff panels, as napari viewer key bindings.

They are bound on the viewer (``viewer.bind_key``), so they work while the
canvas has the focus, whichever layer is active and whichever tab of the
dock shows, and from the dock itself (napari passes the keys a dock does not
use on to the viewer). They leave napari's own keys alone (napari 0.9):

* on a Labels layer the plain digits 1-7 choose the tool (erase, paint,
  polygon, fill, picker, pan/zoom, transform), ``-`` and ``=`` step the
  label, ``M`` a new label, ``X`` swaps labels, Ctrl+Z / Ctrl+Shift+Z undo
  and redo painting; Shapes, Points and Image layers use plain digits too;
* the viewer and its menus use Ctrl+0 (zoom), Ctrl+G (grid), Ctrl+R, Ctrl+N,
  Ctrl+O, Ctrl+S, Ctrl+W, Ctrl+Q, Ctrl+M, Ctrl+U, Ctrl+Shift+P/O/C/T ...

So the palette classes take Ctrl+1 ... Ctrl+9 (Cmd on macOS), and the
Synthesise panel Ctrl+Shift+G (Generate), Ctrl+Shift+X (Cancel) and
Ctrl+Alt+Z (Undo the last region regeneration).
"""

from __future__ import annotations

from collections.abc import Callable

GENERATE_KEY = "Control-Shift-G"
CANCEL_KEY = "Control-Shift-X"
UNDO_REGION_KEY = "Control-Alt-Z"
#: Ctrl+N chooses palette class N (N = 1..9); 0 stays napari's (zoom)
PALETTE_KEYS = {f"Control-{i}": i for i in range(1, 10)}


def shown(key: str) -> str:
    """How ``key`` reads on this platform (``Ctrl+⇧+G``, ``⌘⇧G`` on macOS)."""
    from napari.utils.interactions import Shortcut

    return Shortcut(key).platform


def with_key(text: str, key: str) -> str:
    """A tooltip that names its shortcut."""
    return f"{text} ({shown(key)})"


def bind_viewer_keys(viewer, owner, bindings: dict[str, Callable[[], None]]) -> None:
    """Bind ``bindings`` (key -> action) on ``viewer`` while ``owner`` lives.

    A later panel of the same kind takes the keys over (``overwrite``); when
    ``owner`` is destroyed its keys are unbound, unless another panel has
    taken them meanwhile.
    """
    from napari.utils.key_bindings import coerce_keybinding

    bound = []
    for key, action in bindings.items():
        def callback(_viewer=None, _action=action) -> None:
            _action()  # returns None: napari would call a returned callable

        viewer.bind_key(key, callback, overwrite=True)
        bound.append((coerce_keybinding(key), callback))

    def unbind(*_args) -> None:
        for key, callback in bound:
            if viewer.keymap.get(key) is callback:
                viewer.bind_key(key, None)

    owner.destroyed.connect(unbind)
