"""napari widgets of napari-histodiff (the only modules that import Qt or napari)."""
