"""Window geometry and the sampling strategies' window choice (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_histodiff.errors import InputError
from napari_histodiff.sampling.strategies import (
    DEFAULT_STRATEGY,
    DiffInfinite,
    MultiDiffusion,
    RandomShift,
    Tiled,
    batched,
    get_strategy,
)
from napari_histodiff.sampling.windows import (
    Window,
    chunk_regions,
    fold,
    grid_windows,
)

# (height, width, window): odd sizes, exact multiples, smaller than the window
SHAPES = [(37, 53, 32), (64, 64, 32), (5, 7, 32), (100, 33, 16), (1, 1, 8)]


def coverage(windows: list[Window], height: int, width: int) -> np.ndarray:
    """How many windows cover each canvas pixel."""
    count = np.zeros((height, width), np.int32)
    for win in windows:
        cy, cx, _, _ = win.inside(height, width)
        count[cy, cx] += 1
    return count


# -- fold ------------------------------------------------------------------------
@pytest.mark.parametrize("length", [1, 2, 3, 7, 32])
def test_fold_matches_numpy_symmetric_padding(length):
    pad = 3 * length + 5  # several reflections, canvases smaller than windows
    values = np.arange(length)
    expected = np.pad(values, pad, mode="symmetric")
    got = values[fold(np.arange(-pad, length + pad), length)]
    np.testing.assert_array_equal(got, expected)


def test_fold_examples():
    np.testing.assert_array_equal(
        fold(np.array([-3, -2, -1, 0, 4, 5, 6, 7, 8]), 5), [2, 1, 0, 0, 4, 4, 3, 2, 1]
    )
    np.testing.assert_array_equal(fold(np.array([-5, -1, 0, 1, 9]), 1), [0] * 5)


def test_window_indices_reflect_and_inside_slices():
    win = Window(-3, 50, 8)  # over the top edge and the right edge of 37 x 53
    ys, xs = win.indices(37, 53)
    np.testing.assert_array_equal(ys, [2, 1, 0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(xs, [50, 51, 52, 52, 51, 50, 49, 48])
    cy, cx, wy, wx = win.inside(37, 53)
    assert (cy, cx) == (slice(0, 5), slice(50, 53))
    assert (wy, wx) == (slice(3, 8), slice(0, 3))
    # the inside part of the window reads exactly the canvas under it
    canvas = np.arange(37 * 53).reshape(37, 53)
    block = canvas[np.ix_(ys, xs)]
    np.testing.assert_array_equal(block[wy, wx], canvas[cy, cx])


def test_window_larger_than_canvas_reads_only_canvas_pixels():
    ys, xs = Window(-4, -2, 32).indices(5, 7)
    assert ys.min() >= 0 and ys.max() == 4 and xs.min() >= 0 and xs.max() == 6
    assert len(ys) == len(xs) == 32


def test_chunk_regions_partition_the_canvas():
    regions = chunk_regions(37, 53, 16)
    count = np.zeros((37, 53), int)
    for sy, sx in regions:
        count[sy, sx] += 1
        assert sy.stop - sy.start <= 16 and sx.stop - sx.start <= 16
    assert (count == 1).all()
    assert len(regions) == 3 * 4


# -- grids ----------------------------------------------------------------------
@pytest.mark.parametrize("height,width,size", SHAPES)
def test_grid_covers_every_pixel_once_for_every_offset(height, width, size):
    for oy in range(size):
        for ox in (0, 1, size // 2, size - 1):
            wins = grid_windows(height, width, size, oy, ox)
            assert (coverage(wins, height, width) == 1).all(), (oy, ox)
            assert len(wins) == math.ceil((height + oy) / size) * math.ceil(
                (width + ox) / size
            )


# -- random-shift ---------------------------------------------------------------
@pytest.mark.parametrize("height,width,size", SHAPES)
def test_random_shift_covers_each_pixel_exactly_once_per_step(height, width, size):
    strategy = RandomShift()
    bound = (math.ceil(height / size) + 1) * (math.ceil(width / size) + 1)
    origins = set()
    for step in range(200):
        wins = strategy.windows(step, height, width, size, 0)
        assert (coverage(wins, height, width) == 1).all(), step
        assert len(wins) <= bound
        assert all(w.size == size for w in wins)
        # the grid origin is a shift of at most one window up-left
        oy, ox = -wins[0].y, -wins[0].x
        assert 0 <= oy < size and 0 <= ox < size
        origins.add((oy, ox))
    # a fresh offset each step: the origins are spread, not one fixed grid
    assert len(origins) > 0.5 * min(200, size * size)


def test_random_shift_windows_crossing_edges_read_reflected_pixels():
    height, width, size = 37, 53, 32
    canvas = np.random.default_rng(1).normal(size=(height, width))
    padded = np.pad(canvas, 3 * size, mode="symmetric")
    wins = RandomShift().windows(0, height, width, size, 3)
    crossing = [
        w for w in wins
        if w.y < 0 or w.x < 0 or w.y + size > height or w.x + size > width
    ]
    assert crossing
    for w in crossing:
        ys, xs = w.indices(height, width)
        expected = padded[w.y + 3 * size : w.y + 4 * size,
                          w.x + 3 * size : w.x + 4 * size]
        np.testing.assert_array_equal(canvas[np.ix_(ys, xs)], expected)


@pytest.mark.parametrize("height,width,size", SHAPES[:4])
def test_random_shift_expected_windows_is_the_mean_over_offsets(height, width, size):
    counts = [
        len(grid_windows(height, width, size, oy, ox))
        for oy in range(size)
        for ox in range(size)
    ]
    expected = RandomShift().expected_windows_per_step(height, width, size)
    assert expected == pytest.approx(np.mean(counts))


def test_random_shift_same_seed_same_windows():
    a = RandomShift().windows(4, 300, 200, 32, 5)
    b = RandomShift().windows(4, 300, 200, 32, 5)
    c = RandomShift().windows(4, 300, 200, 32, 6)
    assert a == b
    assert a != c
    assert RandomShift().windows(5, 300, 200, 32, 5) != a


@pytest.mark.parametrize("seed", range(20))
def test_random_shift_nearby_steps_never_share_a_grid(seed):
    """Independent draws sometimes gave the last few steps almost the same
    grid, which imprinted its window borders on the demo model's images."""
    size, steps = 64, 50
    offsets = np.array([RandomShift().offsets(k, size, seed) for k in range(steps)])

    def gap(a, b):  # circular distance between offsets on one axis
        d = np.abs(a - b) % size
        return np.minimum(d, size - d)

    for lag in (1, 2, 3):
        for axis in (0, 1):
            assert gap(offsets[lag:, axis], offsets[:-lag, axis]).min() >= size // 8
    # and each axis is spread evenly over [0, size): every eighth is visited
    # about equally often
    for axis in (0, 1):
        counts = np.bincount(offsets[:, axis] * 8 // size, minlength=8)
        assert counts.min() >= steps // 8 - 2, counts


def test_random_shift_window_count_ratios_against_tiled_at_scale():
    size = 64
    for n in (1024, 2048, 1000):
        rs = RandomShift().expected_windows_per_step(n, n, size)
        tiled = Tiled().expected_windows_per_step(n, n, size)
        di = DiffInfinite().expected_windows_per_step(n, n, size)
        assert rs <= 1.3 * tiled
        assert rs <= 0.6 * di


# -- tiled ----------------------------------------------------------------------
@pytest.mark.parametrize("height,width,size", SHAPES)
def test_tiled_is_one_fixed_grid(height, width, size):
    rng = np.random.default_rng(0)
    first = Tiled().windows(0, height, width, size, rng)
    assert Tiled().windows(7, height, width, size, rng) == first
    assert (coverage(first, height, width) == 1).all()
    assert first[0] == Window(0, 0, size)
    assert len(first) == Tiled().expected_windows_per_step(height, width, size)


# -- multidiffusion -------------------------------------------------------------
@pytest.mark.parametrize("height,width,size", SHAPES)
def test_multidiffusion_overlaps_and_covers(height, width, size):
    strategy = MultiDiffusion()
    wins = strategy.windows(0, height, width, size, None)
    count = coverage(wins, height, width)
    assert count.min() >= 1
    if height > size and width > size:
        assert count.max() > 1  # windows overlap
        # windows stay on the canvas, the last ones flush with the far edge
        assert all(0 <= w.y <= height - size and 0 <= w.x <= width - size
                   for w in wins)
        assert max(w.y for w in wins) == height - size
        assert max(w.x for w in wins) == width - size
    assert len(wins) == strategy.expected_windows_per_step(height, width, size)
    assert strategy.overlapping


def test_multidiffusion_stride():
    wins = MultiDiffusion(stride=8).windows(0, 40, 40, 16, None)
    starts = sorted({w.y for w in wins})
    assert starts == [0, 8, 16, 24]
    assert MultiDiffusion(stride=8).settings()["stride"] == 8
    with pytest.raises(InputError, match="stride"):
        MultiDiffusion(stride=0)
    with pytest.raises(InputError, match="larger than the window"):
        MultiDiffusion(stride=40).windows(0, 100, 100, 16, None)
    with pytest.raises(InputError, match="stride_fraction"):
        MultiDiffusion(stride_fraction=1.5)


# -- names ----------------------------------------------------------------------
def test_get_strategy_by_name_and_errors():
    assert DEFAULT_STRATEGY == "random-shift"
    for name, cls in [("random-shift", RandomShift), ("tiled", Tiled),
                      ("multidiffusion", MultiDiffusion),
                      ("diffinfinite", DiffInfinite)]:
        strategy = get_strategy(name)
        assert isinstance(strategy, cls)
        assert strategy.settings()["strategy"] == name
    assert get_strategy("multidiffusion", stride=4).stride == 4
    assert get_strategy("tiled", stride=None).name == "tiled"
    with pytest.raises(InputError, match="not one of"):
        get_strategy("patchwork")
    with pytest.raises(InputError, match="only applies to multidiffusion"):
        get_strategy("random-shift", stride=4)
    existing = Tiled()
    assert get_strategy(existing) is existing


def test_batched_keeps_order_and_sizes():
    items = list(range(10))
    batches = list(batched(items, 4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sum(batches, []) == items


# -- blockwise window access ---------------------------------------------------
@pytest.mark.parametrize("height,width,size", SHAPES)
@pytest.mark.parametrize("on_disk", [False, True])
@pytest.mark.parametrize("group_width", [1024, 40])
def test_row_bands_read_and_write_like_window_by_window(tmp_path, height, width,
                                                        size, on_disk, group_width):
    import zarr

    from napari_histodiff.arrays import take_2d
    from napari_histodiff.sampling.rows import RowBands

    rng = np.random.default_rng(0)
    canvas = rng.normal(size=(3, height, width)).astype(np.float32)
    if on_disk:
        group = zarr.open_group(str(tmp_path / "rows.zarr"), mode="w")
        source = group.create_array("src", shape=canvas.shape, dtype="f4",
                                    chunks=(3, 16, 16))
        source[...] = canvas
        target = group.create_array("dst", shape=canvas.shape, dtype="f4",
                                    chunks=(3, 16, 16), fill_value=np.nan)
    else:
        source, target = canvas, np.full(canvas.shape, np.nan, np.float32)
    wins = RandomShift().windows(0, height, width, size, 0)
    rows = RowBands(source, target, wins, group_width=group_width)
    groups = [rows._group[(w.y, w.x)] for w in wins]
    assert groups == sorted(groups)  # neighbours, in order
    if group_width < width:
        assert len(set(groups)) > len({w.y for w in wins})
    for i, win in enumerate(wins):
        x = rows.read(win)
        np.testing.assert_array_equal(x, take_2d(canvas, *win.indices(height, width)))
        rows.write(win, x + 1.0)
        last_of_group = i + 1 == len(wins) or groups[i + 1] != groups[i]
        cy, cx, _, _ = win.inside(height, width)
        # a group reaches the target in one write, after its last window
        assert np.isnan(np.asarray(target[:, cy, cx])).all() != last_of_group
    np.testing.assert_array_equal(np.asarray(target[...]), canvas + 1.0)


# -- random-shift: the blended final steps ----------------------------------------
@pytest.mark.parametrize("height,width,size", SHAPES)
def test_final_steps_blend_three_grids_continuously(height, width, size):
    from napari_histodiff.sampling.windows import blend_weight

    strategy = RandomShift(blend_steps=2)
    steps = 6
    for k in range(steps):
        plan = strategy.plan(k, steps, height, width, size, 4)
        if k < steps - 2:  # plain steps: one grid, each pixel once
            assert not plan.overlapping and plan.weight is None
            assert plan.windows == strategy.windows(k, height, width, size, 4)
            continue
        assert plan.overlapping
        assert (coverage(plan.windows, height, width) == 3).all()  # three grids
        # the weights vanish at every window edge, so the blend is continuous
        # across every border ...
        w = plan.weight
        assert w.shape == (size, size)
        edge = np.concatenate([w[0], w[-1], w[:, 0], w[:, -1]])
        assert edge.max() < 0.1 * w.max() and w.max() > 0.9
        # ... and every pixel is well inside one of the three windows over it
        total = np.zeros((height, width))
        for win in plan.windows:
            cy, cx, wy, wx = win.inside(height, width)
            total[cy, cx] += w[wy, wx]
        assert total.min() >= 0.9 * np.sin(np.pi / 6) ** 4
    np.testing.assert_array_equal(blend_weight(size), plan.weight)


def test_blend_steps_option():
    plain = RandomShift(blend_steps=0).plan(9, 10, 100, 100, 32, 0)
    assert not plain.overlapping
    assert get_strategy("random-shift", blend_steps=0).blend_steps == 0
    assert get_strategy("random-shift").blend_steps == 2
    with pytest.raises(InputError, match="blend_steps only applies to random-shift"):
        get_strategy("tiled", blend_steps=1)
    with pytest.raises(InputError, match="blend_steps: must be an integer >= 0"):
        RandomShift(blend_steps=-1)
