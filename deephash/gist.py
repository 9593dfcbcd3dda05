"""The GIST descriptor of Oliva & Torralba (IJCV 2001) as computed by their ``LMgist.m``
(LabelMe toolbox: ``LMgist``, ``prefilt``, ``createGabor``, ``gistGabor``, ``downN``).

For every image (numpy / scipy only, vectorised over a batch):

1. gray level = mean over channels; square ``image_size`` by :func:`resize_crop`; rescale
   to [0, 255] (min -> 0, max -> 255). A constant image becomes all zeros (LMgist divides
   0 by 0 there and returns NaN).
2. ``prefilt`` (:func:`prefilter`): ``log(img + 1)``, 5-pixel symmetric padding (then
   padding after to an even square), ``s1 = fc / sqrt(log 2)``, Gaussian transfer function
   ``gf = exp(-(fx^2 + fy^2) / s1^2)`` (fx, fy in cycles per padded image);
   ``out = img - lowpass(img)``, ``out /= 0.2 + sqrt(|lowpass(out^2)|)``; crop the padding.
3. ``gistGabor``: symmetric padding by ``boundary`` pixels to ``N = image_size + 2 *
   boundary``, FFT, for every filter ``|ifft2(F * G)|`` cropped to the image, then the mean
   over ``blocks x blocks`` blocks with edges ``fix(linspace(0, size, blocks + 1))``.
4. The Gabor bank (``createGabor``, :func:`gabor_filters`): filter ``l`` of scale ``i``
   (1-based) and orientation ``j`` has parameters ``[0.35, 0.3 / 1.85^(i-1),
   16 * or_i^2 / 32^2, pi / or_i * (j - 1)]`` and transfer function
   ``exp(-10 p1 (fr / N / p2 - 1)^2 - 2 p3 pi tr^2)`` with ``fr = sqrt(fx^2 + fy^2)`` and
   ``tr = atan2(fy, fx) + p4`` wrapped to [-pi, pi]; ``fx`` runs along columns, ``fy``
   along rows. Scale 1 peaks at 0.3 cycles/pixel, each next scale 1.85x lower; the filter
   of orientation ``theta = p4`` passes frequencies whose direction ``atan2(fy, fx)`` is
   ``-theta`` (one-sided, so ``|.|`` is the local amplitude).

Output order (the same as ``LMgist``): filter-major — scales from high to low frequency,
orientations ``j = 1..or_i`` within a scale — then, within a filter, the ``blocks^2``
block means in MATLAB's column-major order: index ``filter * blocks^2 + col * blocks +
row`` with ``row`` / ``col`` the block's row (top to bottom) and column (left to right).
Descriptors are float32; the Gabor step runs in single precision as LMgist does.

Differences from MATLAB: :func:`resize_crop` re-implements ``imresizecrop`` with
``imresize``'s bilinear kernel and antialiasing (its documented algorithm) in float64;
results can differ slightly from MATLAB's ``imresize`` (single precision, rounding), and
not at all when the image already has ``image_size`` (no resampling; CIFAR-10 at 32).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import numpy as np
import scipy.fft

from deephash.validation import check_int, check_number, fail, is_int

PREFILTER_PAD = 5  # prefilt's w
_WORKERS = -1  # scipy.fft: all CPUs


@dataclasses.dataclass(frozen=True)
class GistParams:
    """LMgist's parameters. ``image_size`` (square side the image is resized to),
    ``orientations`` (orientations per scale, from high to low frequency), ``blocks``
    (``numberBlocks``: blocks per side), ``fc_prefilt`` (prefilter cut-off, cycles per
    image) and ``boundary`` (``boundaryExtension``: symmetric padding before filtering)."""

    image_size: int = 32
    orientations: tuple[int, ...] = (8, 8, 8, 8)
    blocks: int = 4
    fc_prefilt: float = 4.0
    boundary: int = 32

    def __post_init__(self):
        object.__setattr__(self, "orientations", tuple(self.orientations))
        for name in ("image_size", "blocks"):
            check_int(getattr(self, name), name, owner="GIST")
        check_int(self.boundary, "boundary", minimum=0, owner="GIST")
        if not self.orientations or not all(is_int(o) and o >= 1 for o in self.orientations):
            fail("orientations", "positive integers (one per scale)", self.orientations, "GIST")
        check_number(self.fc_prefilt, "fc_prefilt", positive=True, owner="GIST")
        if self.blocks > self.image_size:
            raise ValueError(
                f"GIST blocks ({self.blocks}) must not exceed image_size ({self.image_size}): "
                "some blocks would be empty"
            )

    @property
    def num_filters(self) -> int:
        return int(sum(self.orientations))

    @property
    def dim(self) -> int:
        """Descriptor length: filters x blocks^2 (512 for the defaults)."""
        return self.num_filters * self.blocks**2

    @property
    def filter_size(self) -> int:
        """Side of the Fourier grid the filters live on: ``image_size + 2 * boundary``."""
        return self.image_size + 2 * self.boundary

    def to_dict(self) -> dict:
        return {
            "image_size": int(self.image_size),
            "orientations": [int(o) for o in self.orientations],
            "blocks": int(self.blocks),
            "fc_prefilt": float(self.fc_prefilt),
            "boundary": int(self.boundary),
        }


def filter_parameters(orientations: Sequence[int]) -> np.ndarray:
    """createGabor's ``param``: float64 ``(sum(orientations), 4)`` rows
    ``[0.35, 0.3 / 1.85^(i-1), 16 or_i^2 / 32^2, pi / or_i (j-1)]``, scale-major."""
    rows = [
        [0.35, 0.3 / 1.85**i, 16.0 * o**2 / 32.0**2, math.pi / o * j]
        for i, o in enumerate(orientations)
        for j in range(o)
    ]
    return np.asarray(rows, dtype=np.float64)


def _centred_grid(n: int) -> np.ndarray:
    """MATLAB's ``-n/2:n/2-1`` (n values; half-integers when n is odd)."""
    return -n / 2.0 + np.arange(n)


@functools.lru_cache(maxsize=8)
def _gabor_filters(orientations: tuple[int, ...], n: int) -> np.ndarray:
    param = filter_parameters(orientations)
    fx, fy = np.meshgrid(_centred_grid(n), _centred_grid(n))  # fx along columns, fy along rows
    fr = np.fft.fftshift(np.sqrt(fx**2 + fy**2))
    t = np.fft.fftshift(np.arctan2(fy, fx))
    tr = t[None] + param[:, 3, None, None]
    tr = tr + 2 * np.pi * (tr < -np.pi) - 2 * np.pi * (tr > np.pi)
    g = np.exp(
        -10 * param[:, 0, None, None] * (fr[None] / n / param[:, 1, None, None] - 1) ** 2
        - 2 * param[:, 2, None, None] * np.pi * tr**2
    )
    g.setflags(write=False)
    return g


def gabor_filters(params: GistParams | None = None) -> np.ndarray:
    """createGabor's transfer functions: float64 ``(num_filters, N, N)``, ``N =
    params.filter_size``, in FFT layout (element ``[k, l]`` is the frequency ``(fy, fx) =
    (k, l)`` cycles per ``N`` pixels, wrapped to ``[-N/2, N/2)``), filters scale-major."""
    params = params or GistParams()
    return _gabor_filters(params.orientations, params.filter_size)


def _symmetric_index(length: int, before: int, after: int) -> np.ndarray:
    """Indices of MATLAB's ``padarray(x, p, 'symmetric')`` along one axis (periodic
    mirror including the edge: ``c b a | a b c | c b a``)."""
    i = np.arange(-before, length + after) % (2 * length)
    return np.where(i < length, i, 2 * length - 1 - i)


def _pad(x: np.ndarray, before: int, after: int) -> np.ndarray:
    """Symmetric padding of the last two axes."""
    rows = _symmetric_index(x.shape[-2], before, after)
    cols = _symmetric_index(x.shape[-1], before, after)
    return x[..., rows[:, None], cols[None, :]]


def _resize_matrix(in_len: int, out_len: int) -> np.ndarray:
    """``imresize``'s bilinear weights along one axis as a float64 ``(out_len, in_len)``
    matrix: triangle kernel, widened by ``1/scale`` when shrinking (antialiasing), output
    pixel ``x`` (1-based) centred at ``x / scale + (1 - 1/scale) / 2``, rows normalised to
    sum 1, out-of-range taps mirrored."""
    scale = out_len / in_len
    width = 2.0 / scale if scale < 1 else 2.0
    kernel_scale = scale if scale < 1 else 1.0
    u = np.arange(1, out_len + 1) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = left[:, None] + np.arange(int(math.ceil(width)) + 2)[None, :]
    dist = (u[:, None] - taps) * kernel_scale
    w = kernel_scale * np.clip(1 - np.abs(dist), 0, None)
    w /= w.sum(axis=1, keepdims=True)
    idx = _symmetric_index(in_len, 0, in_len)[
        (taps.astype(np.int64) - 1) % (2 * in_len)
    ]  # 1-based taps
    out = np.zeros((out_len, in_len))
    np.add.at(out, (np.repeat(np.arange(out_len), taps.shape[1]), idx.ravel()), w.ravel())
    return out


@functools.lru_cache(maxsize=32)
def _resize_crop_matrix(in_len: int, new_len: int, size: int) -> np.ndarray:
    start = (new_len - size) // 2
    m = _resize_matrix(in_len, new_len)[start : start + size]
    m.setflags(write=False)
    return m


def resize_crop(images: np.ndarray, size: int) -> np.ndarray:
    """LMgist's ``imresizecrop(img, size, 'bilinear')`` on gray images ``(n, h, w)``:
    scale by ``max(size/h, size/w)`` to ``round([h w] * scale)`` with :func:`_resize_matrix`
    (MATLAB imresize's bilinear + antialiasing), then crop the centred ``size x size``
    square (offsets ``floor((new - size) / 2)``). Returns float64 ``(n, size, size)``;
    images already ``size x size`` come back unchanged."""
    images = np.asarray(images, dtype=np.float64)
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    scale = max(size / h, size / w)
    new_h, new_w = (
        int(math.floor(v * scale + 0.5)) for v in (h, w)
    )  # MATLAB round (half away from 0)
    rh = _resize_crop_matrix(h, max(new_h, size), size)
    rw = _resize_crop_matrix(w, max(new_w, size), size)
    return rh @ images @ rw.T


def prepare(images: np.ndarray, image_size: int) -> np.ndarray:
    """Step 1 of the module docstring: ``(n, h, w, ch)`` or ``(n, h, w)`` -> float64
    ``(n, image_size, image_size)`` gray images with min 0 and max 255 (0 if constant)."""
    images = np.asarray(images, dtype=np.float64)
    gray = images.mean(axis=-1) if images.ndim == 4 else images
    gray = resize_crop(gray, image_size)
    gray = gray - gray.min(axis=(1, 2), keepdims=True)
    peak = gray.max(axis=(1, 2), keepdims=True)
    return np.divide(255.0 * gray, peak, out=np.zeros_like(gray), where=peak > 0)


@functools.lru_cache(maxsize=8)
def _prefilter_gaussian(n: int, fc: float) -> np.ndarray:
    s1 = fc / math.sqrt(math.log(2))
    fx, fy = np.meshgrid(_centred_grid(n), _centred_grid(n))
    gf = np.fft.fftshift(np.exp(-(fx**2 + fy**2) / s1**2))
    gf = np.ascontiguousarray(
        gf[:, : n // 2 + 1]
    )  # gf is even, so the half-spectrum filter is exact
    gf.setflags(write=False)
    return gf


def prefilter(images: np.ndarray, fc: float = 4.0) -> np.ndarray:
    """LMgist's ``prefilt`` (whitening + local contrast normalisation) of gray images
    ``(n, s, s)`` in [0, 255]; returns float64 ``(n, s, s)``."""
    img = np.log(np.asarray(images, dtype=np.float64) + 1)
    w = PREFILTER_PAD
    s = img.shape[-1]
    img = _pad(img, w, w)
    sn = img.shape[-1]
    n = sn + sn % 2
    if n != sn:
        img = _pad(img, 0, n - sn)
    gf = _prefilter_gaussian(n, float(fc))

    def lowpass(x):
        return scipy.fft.irfft2(scipy.fft.rfft2(x) * gf, s=(n, n))

    out = img - lowpass(img)
    out = out / (0.2 + np.sqrt(np.abs(lowpass(out**2))))
    return out[:, w : w + s, w : w + s]


def block_edges(size: int, blocks: int) -> np.ndarray:
    """downN's block edges ``fix(linspace(0, size, blocks + 1))`` (exact integer arithmetic)."""
    return (np.arange(blocks + 1) * size) // blocks


def _block_means(x: np.ndarray, blocks: int) -> np.ndarray:
    """``(..., s, s)`` -> ``(..., blocks, blocks)`` means over downN's blocks (row, col)."""
    edges = block_edges(x.shape[-1], blocks)
    counts = np.diff(edges)
    sums = np.add.reduceat(np.add.reduceat(x, edges[:-1], axis=-2), edges[:-1], axis=-1)
    return sums / (counts[:, None] * counts[None, :])


def _descriptor(prepared: np.ndarray, params: GistParams) -> np.ndarray:
    """Steps 2-3 on prepared gray images ``(b, s, s)`` -> float32 ``(b, dim)``."""
    be, s = params.boundary, params.image_size
    g = gabor_filters(params).astype(np.float32)
    img = _pad(prefilter(prepared, params.fc_prefilt).astype(np.float32), be, be)
    spectrum = scipy.fft.fft2(img)  # complex64 (single precision, as gistGabor)
    prod = spectrum[:, None] * g[None]  # (b, filters, N, N)
    # ifft2 restricted to the cropped window: columns first, keep the image's columns, then rows
    cols = scipy.fft.ifft(prod, axis=-1, workers=_WORKERS)[..., be : be + s]
    resp = np.abs(scipy.fft.ifft(cols, axis=-2, workers=_WORKERS)[..., be : be + s, :])
    means = _block_means(resp, params.blocks)  # (b, filters, row, col)
    return (
        means.transpose(0, 1, 3, 2).reshape(len(prepared), -1).astype(np.float32)
    )  # MATLAB column-major


def _check_images(images) -> np.ndarray:
    try:
        arr = np.asarray(images)
    except (TypeError, ValueError) as e:
        raise ValueError(f"GIST images must be a numeric array, got {type(images).__name__}") from e
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"GIST images must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim not in (3, 4):
        raise ValueError(
            f"GIST images must have shape (n, h, w) or (n, h, w, channels), got {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError("GIST of an empty image array (n = 0)")
    if min(arr.shape[1:]) == 0:
        raise ValueError(f"GIST images have an empty axis: shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError("GIST images contain NaN or infinite values")
    return arr


def gist(
    images: np.ndarray,
    *,
    image_size: int = 32,
    orientations: Sequence[int] = (8, 8, 8, 8),
    blocks: int = 4,
    fc_prefilt: float = 4.0,
    boundary: int = 32,
    batch_size: int = 16,
    progress: bool | None = None,
) -> np.ndarray:
    """GIST descriptors (module docstring) of ``images``.

    Args:
        images: ``(n, h, w, channels)`` or ``(n, h, w)``, any size, values in any range
            (usually [0, 255]); each is made gray and rescaled to [0, 255] first.
        image_size: square side the images are resized (bilinear) and centre-cropped to.
            The default 32 keeps CIFAR-10's 32x32 images as they are (our choice; the
            hashing papers do not state the size their 512-d CIFAR-10 GIST used).
        orientations, blocks, fc_prefilt, boundary: LMgist's ``orientationsPerScale``,
            ``numberBlocks``, ``fc_prefilt``, ``boundaryExtension`` (its defaults).
        batch_size: images filtered together (memory ~ batch_size x filters x N^2 x 8 bytes,
            N = image_size + 2 * boundary: 38 MB for the defaults; small batches stay in cache).
        progress: tqdm bar over batches; None shows it for more than 2,000 images.

    Returns float32 ``(n, sum(orientations) * blocks^2)`` (512 for the defaults) in LMgist's
    order. ValueError for bad shapes, NaN / infinite values, empty input or bad parameters.
    """
    params = GistParams(image_size, tuple(orientations), blocks, fc_prefilt, boundary)
    check_int(batch_size, "batch_size")
    arr = _check_images(images)
    n = len(arr)
    out = np.empty((n, params.dim), dtype=np.float32)
    starts = range(0, n, batch_size)
    if progress or (progress is None and n > 2000):
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="GIST", unit="batch", leave=False)
    for i in starts:
        out[i : i + batch_size] = _descriptor(prepare(arr[i : i + batch_size], image_size), params)
    return out


__all__ = [
    "GistParams",
    "gist",
    "gabor_filters",
    "filter_parameters",
    "prefilter",
    "prepare",
    "resize_crop",
    "block_edges",
]
