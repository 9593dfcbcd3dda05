"""GIST (deephash.gist) against slow references written here from LMgist.m's description,
hand-computed resize weights, behaviour (orientation / scale / block selectivity,
invariances, errors) and a learning check on the embedded digits."""

import math

import numpy as np
import pytest

from deephash import gist as gist_lib
from deephash.gist import GistParams, gabor_filters, gist, resize_crop


# ----------------------------------------------------------------------------- slow references
def _freq(k: int, n: int) -> float:
    """Frequency of FFT index k after MATLAB's fftshift of the grid -n/2 : n/2-1."""
    return -n / 2 + ((k - n // 2) % n)


def reference_filters(orientations, n):
    """createGabor, one transfer-function value at a time."""
    out = []
    for i, o in enumerate(orientations):  # i = scale - 1
        for j in range(o):  # j = orientation - 1
            p1, p2, p3, p4 = 0.35, 0.3 / 1.85**i, 16 * o * o / 1024, math.pi / o * j
            g = np.zeros((n, n))
            for r in range(n):
                for c in range(n):
                    fx, fy = _freq(c, n), _freq(r, n)
                    tr = math.atan2(fy, fx) + p4
                    while tr < -math.pi:
                        tr += 2 * math.pi
                    while tr > math.pi:
                        tr -= 2 * math.pi
                    g[r, c] = math.exp(
                        -10 * p1 * (math.hypot(fx, fy) / n / p2 - 1) ** 2 - 2 * p3 * math.pi * tr**2
                    )
            out.append(g)
    return np.stack(out)


def reference_gist(image, p: GistParams):
    """LMgist for one image already of size image_size (no resize): float64 throughout,
    full ifft2 per filter, explicit block loops, MATLAB column-major block order."""
    img = image.mean(axis=-1) if image.ndim == 3 else image.astype(float)
    img = img - img.min()
    img = 255 * img / img.max()
    # prefilt
    w, s = 5, img.shape[0]
    x = np.pad(np.log(img + 1), w, mode="symmetric")
    sn = x.shape[0]
    n = sn + sn % 2
    x = np.pad(x, ((0, n - sn), (0, n - sn)), mode="symmetric")
    s1 = p.fc_prefilt / math.sqrt(math.log(2))
    gf = np.array(
        [
            [math.exp(-(_freq(c, n) ** 2 + _freq(r, n) ** 2) / s1**2) for c in range(n)]
            for r in range(n)
        ]
    )
    out = x - np.real(np.fft.ifft2(np.fft.fft2(x) * gf))
    local = np.sqrt(np.abs(np.fft.ifft2(np.fft.fft2(out**2) * gf)))
    out = (out / (0.2 + local))[w : w + s, w : w + s]
    # gistGabor
    be = p.boundary
    big = np.fft.fft2(np.pad(out, be, mode="symmetric"))
    edges = np.fix(np.linspace(0, s, p.blocks + 1)).astype(int)
    feats = []
    for g in reference_filters(p.orientations, s + 2 * be):
        resp = np.abs(np.fft.ifft2(big * g))[be : be + s, be : be + s]
        for col in range(p.blocks):
            for row in range(p.blocks):
                feats.append(resp[edges[row] : edges[row + 1], edges[col] : edges[col + 1]].mean())
    return np.array(feats)


# ------------------------------------------------------------------------ against the references
def test_filter_bank_matches_the_slow_gabor_formula():
    for orientations, n in (
        ((8, 8, 8, 8), 96),
        ((3, 5), 21),
    ):  # 21: odd grid, half-integer frequencies
        got = gabor_filters(
            GistParams(image_size=n - 2, orientations=orientations, blocks=2, boundary=1)
        )
        np.testing.assert_allclose(got, reference_filters(orientations, n), rtol=1e-10, atol=1e-12)


def test_filter_parameters_are_createGabors_table():
    p = gist_lib.filter_parameters((8, 4))
    assert p.shape == (12, 4)
    np.testing.assert_allclose(p[0], [0.35, 0.3, 1.0, 0.0])
    np.testing.assert_allclose(p[9], [0.35, 0.3 / 1.85, 16 * 16 / 1024, math.pi / 4])


@pytest.mark.parametrize(
    "params",
    [
        GistParams(),
        GistParams(image_size=21, orientations=(4, 6), blocks=4, fc_prefilt=3.0, boundary=10),
    ],
)
def test_descriptor_matches_the_slow_reference(params):
    """Defaults, and an odd size (extra prefilter padding, unequal blocks 5/5/5/6)."""
    rng = np.random.default_rng(0)
    s = params.image_size
    stripes = np.clip(
        128 + 60 * np.sin(np.arange(s)[:, None] / 3) + rng.normal(0, 20, (s, s)), 0, 255
    )
    images = np.stack(
        [
            rng.uniform(0, 255, (s, s, 3)),
            np.repeat(stripes[..., None], 3, axis=-1),
            rng.uniform(0, 255, (s, s, 3)) * (np.arange(s)[None, :, None] / s),
        ]
    )
    got = gist(images, **params.to_dict())
    want = np.stack([reference_gist(im, params) for im in images])
    assert got.shape == (3, params.dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)  # values ~1e-3..0.3


def test_block_edges_are_fix_linspace():
    for size, blocks in ((32, 4), (20, 3), (7, 7), (30, 4)):
        want = np.fix(np.linspace(0, size, blocks + 1)).astype(int)
        np.testing.assert_array_equal(gist_lib.block_edges(size, blocks), want)


def test_resize_matches_hand_computed_bilinear_weights():
    # imresize bilinear, 2 -> 4 (no antialiasing): [a, b] -> [a, .75a + .25b, .25a + .75b, b]
    up = resize_crop(np.array([[[1.0, 2.0], [1.0, 2.0]]]), 4)[0]
    np.testing.assert_allclose(up[0], [1.0, 1.25, 1.75, 2.0])
    # 4 -> 2 with antialiasing: kernel 0.5 * tri(x / 2), mirrored taps: [.5, .375, .125, 0] and
    # reversed
    row = np.array([1.0, 10.0, 100.0, 1000.0])
    down = resize_crop(np.tile(row, (4, 1))[None], 2)[0]
    np.testing.assert_allclose(down[0], [0.5 + 3.75 + 12.5, 0.125 * 10 + 0.375 * 100 + 0.5 * 1000])


def test_resize_keeps_the_central_square_of_a_wide_image():
    rng = np.random.default_rng(1)
    wide = rng.uniform(0, 255, (2, 16, 40))
    np.testing.assert_array_equal(
        resize_crop(wide, 16), wide[:, :, 12:28]
    )  # scale 1, crop floor((40-16)/2)


# ----------------------------------------------------------------------------- behaviour
def _grating(size, cycles_per_pixel, direction):
    """cos grating whose frequency vector (fx along columns, fy along rows) points at
    `direction`."""
    r, c = np.mgrid[:size, :size]
    phase = 2 * np.pi * cycles_per_pixel * (c * math.cos(direction) + r * math.sin(direction))
    return 127.5 + 127.5 * np.cos(phase)


def test_a_grating_excites_the_filter_of_its_orientation_and_scale():
    p = GistParams()
    params = gist_lib.filter_parameters(p.orientations)
    cases = [(s, j) for s in (0, 1, 2) for j in (0, 2, 5)]
    images = np.stack([_grating(32, 0.3 / 1.85**s, -math.pi / 8 * j) for s, j in cases])
    energy = gist(images).reshape(len(cases), p.num_filters, -1).sum(axis=2)
    for (s, j), e in zip(cases, energy):
        best = int(np.argmax(e))
        assert (best // 8, best % 8) == (s, j), (s, j, best)
        assert params[best, 3] == pytest.approx(math.pi / 8 * j)


def test_a_pattern_in_one_quadrant_lands_in_that_quadrants_blocks():
    rng = np.random.default_rng(2)
    image = np.zeros((32, 32))
    image[:16, 16:] = rng.uniform(0, 255, (16, 16))  # top right: block rows 0-1, block columns 2-3
    per_block = gist(image[None]).reshape(32, 4, 4).sum(axis=0)  # (filter, col, row) -> (col, row)
    top4 = {divmod(int(i), 4) for i in np.argsort(per_block.ravel())[-4:]}  # (col, row) pairs
    assert top4 == {(2, 0), (2, 1), (3, 0), (3, 1)}


def test_batches_give_the_same_result_as_one_by_one():
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, (5, 24, 28, 3))
    together = gist(images, batch_size=2)
    alone = np.concatenate([gist(im[None]) for im in images])
    np.testing.assert_allclose(together, alone, rtol=1e-6, atol=1e-7)


def test_affine_brightness_changes_do_not_change_the_descriptor():
    rng = np.random.default_rng(4)
    images = rng.uniform(0, 255, (2, 32, 32, 3))
    np.testing.assert_allclose(gist(0.3 * images + 17), gist(images), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        gist(images[..., 0]), gist(images[..., :1]), rtol=0, atol=0
    )  # (n,h,w) == 1 channel


def test_output_shape_and_dtype_follow_the_parameters():
    images = np.random.default_rng(5).uniform(0, 255, (3, 8, 8, 1))  # digits-sized, upsampled to 32
    out = gist(images)
    assert out.shape == (3, 512) and out.dtype == np.float32 and np.all(np.isfinite(out))
    assert gist(images, orientations=(4, 4), blocks=2, image_size=16, boundary=8).shape == (3, 32)
    assert GistParams(orientations=(8, 8, 4)).dim == 320


def test_a_constant_image_gives_a_finite_descriptor():
    out = gist(np.full((2, 32, 32, 3), 80.0))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], out[1])


def test_bad_input_raises_clear_errors():
    ok = np.zeros((1, 32, 32))
    with pytest.raises(ValueError, match="shape"):
        gist(np.zeros((32, 32)))
    with pytest.raises(ValueError, match="empty"):
        gist(np.zeros((0, 32, 32, 3)))
    bad = ok.copy()
    bad[0, 3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gist(bad)
    with pytest.raises(ValueError, match="numeric"):
        gist(np.array([["a"]] * 2, dtype=object)[:, :, None])
    with pytest.raises(ValueError, match="orientations"):
        gist(ok, orientations=(8, 0))
    with pytest.raises(ValueError, match="blocks"):
        gist(ok, blocks=40)
    with pytest.raises(ValueError, match="batch_size"):
        gist(ok, batch_size=0)


# ----------------------------------------------------------------------------- learning
def test_itq_on_gist_of_the_digits_beats_random_codes_widely():
    """ITQ fit on the GIST of the 500 training digits (8x8, upsampled to 32) and searched
    with the 200 queries among them: mAP about 0.66 against about 0.11 for random codes."""
    from deephash import data, methods, metrics

    ds = data.load("digits")
    query, train = gist(ds.query.images), gist(ds.train.images)
    model = methods.create("itq", bits=32)
    model.fit(train, None, seed=0)
    m = metrics.evaluate(
        model.encode(query), model.encode(train), ds.query.labels, ds.train.labels
    )["map"]
    rng = np.random.default_rng(0)
    rand = metrics.evaluate(
        rng.random((len(query), 32)) > 0.5,
        rng.random((len(train), 32)) > 0.5,
        ds.query.labels,
        ds.train.labels,
    )["map"]
    assert m > rand + 0.3, (m, rand)


# ----------------------------------------------------------------------------- deephash.features
SMALL = GistParams(image_size=8, orientations=(4, 4), blocks=2, boundary=4)  # 32-d, fast


def test_extract_features_gist_gives_each_splits_descriptors():
    from deephash import data
    from deephash.features import extract_features, feature_matrix

    ds = data.load("digits")
    feats = extract_features(SMALL, ds)
    assert feats.image_shape == (1, 1, 32) and feats.checksum == ds.checksum
    for name in ("query", "train", "database"):
        np.testing.assert_allclose(
            feature_matrix(getattr(feats, name)),
            gist(getattr(ds, name).images, **SMALL.to_dict()),
            rtol=1e-6,
            atol=1e-7,
        )
    with pytest.raises(ValueError, match="no layer, weights"):
        extract_features("gist", ds, layer="fc7")


def test_extract_features_gist_decodes_a_file_based_split(tmp_path):
    import dataclasses

    import tensorflow as tf

    from deephash import data
    from deephash.features import extract_features, feature_matrix

    ds = data.load("digits")
    query = ds.query.subset(np.arange(5))
    pixels = np.round(query.images).astype(np.uint8)
    paths = []
    for i, image in enumerate(pixels):
        paths.append(str(tmp_path / f"{i}.png"))
        tf.io.write_file(paths[-1], tf.io.encode_png(image))
    files = dataclasses.replace(
        ds, query=dataclasses.replace(query, images=None, paths=np.array(paths))
    )
    got = feature_matrix(extract_features(SMALL, files).query)
    np.testing.assert_allclose(
        got, gist(pixels.astype(np.float64), **SMALL.to_dict()), rtol=1e-5, atol=1e-6
    )


def test_the_dsrh_cifar10_paper_preset_fits_shallow_methods_on_cached_gist():
    from deephash import presets

    assert (
        presets.spec("itq", "cifar10", 32, preset="paper", paper="dsrh", seed=2).features == "gist"
    )
    with pytest.raises(ValueError, match="--features") as err:
        presets.spec("itq", "nuswide21", 32, preset="paper", paper="dsrh")
    assert "--features=gist" in str(err.value)
    spec = presets.spec(
        "itq", "cifar10", 32, preset="paper", features="features/cifar10_gist_seed0"
    )
    assert spec.features == "features/cifar10_gist_seed0"


def test_gist_features_are_computed_once_per_split_and_cached(monkeypatch, caplog):
    import os

    from deephash import data, experiment
    from deephash import features as features_lib
    from deephash.data.splits import cache_dir
    from deephash.features import feature_matrix

    ds = data.load("digits")
    first = features_lib.cached_features("gist", ds)
    assert (
        feature_matrix(first.query).shape == (len(ds.query), 512) and first.checksum == ds.checksum
    )
    (entry,) = [
        e
        for e in os.listdir(cache_dir("features"))
        if e.startswith(f"digits-{ds.checksum[:16]}-gist-")
    ]

    def no_compute(*args, **kwargs):
        raise AssertionError("cached features were computed again")

    monkeypatch.setattr(features_lib, "extract_features", no_compute)
    again = features_lib.cached_features("GIST", ds)
    np.testing.assert_array_equal(feature_matrix(again.train), feature_matrix(first.train))
    result = experiment.run("itq", ds, 16, features="gist")  # the run fits ITQ on the cached GIST
    assert result["map"] > 0.3

    # a damaged cache entry is recomputed with a warning, not trusted and not a crash
    monkeypatch.undo()
    path = os.path.join(cache_dir("features"), entry, "train_features.npy")
    with open(path, "wb") as f:
        f.write(b"garbage")
    with caplog.at_level("WARNING", logger="deephash.features"):
        fixed = features_lib.cached_features("gist", ds)
    assert "do not load" in caplog.text
    np.testing.assert_allclose(feature_matrix(fixed.train), feature_matrix(first.train), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown feature recipe"):
        features_lib.cached_features("sift", ds)
    with pytest.raises(FileNotFoundError, match="computed features: gist"):
        experiment.run("itq", ds, 16, features="no/such/dir")
