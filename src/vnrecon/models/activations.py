"""Trainable Gaussian radial-basis-function (RBF) activations of the variational network.

Each filter ``i`` of a stage owns a 1-D function (SPEC section 3)

    phi_i(x) = sum_j w_ij exp(-(x - mu_j)^2 / (2 sigma^2)),   j = 0 .. Nw-1,

with ``Nw`` centres ``mu_j`` evenly spaced on ``[vmin, vmax]`` (default 31 on
[-1, 1]), a common width ``sigma`` (default ``(vmax - vmin) / Nw`` = 2/31, about
the centre spacing ``d = (vmax - vmin) / (Nw - 1)``) and one weight vector per
filter (a ``(Nk, Nw)`` tensor per stage).

Two implementations, the same function:

``rbf_naive``
    The reference: broadcast ``x`` against all centres and let autograd do the
    rest. Short and obviously right, but it materialises (and autograd keeps)
    an ``Nk x Nw x H x W`` tensor per stage. Tests compare the fast path to it
    and ``benchmarks/vn_speed.py`` measures it as the "naive" variant.

``rbf_activation`` (``RBFFunction``, a custom autograd function)
    Saves only ``x`` and the weights; the backward pass recomputes what it
    needs. It evaluates only the ``2M+1`` centres nearest to each sample and
    gets them from two exponentials per sample:

        x = mu_k + rho d,   k = nearest centre, |rho| <= 1/2 inside the range,
        exp(-(x - mu_{k+m})^2 / 2 sigma^2) = E(rho) q(rho)^(m+M) c_m,
        E = exp(-a (rho^2/2 + M rho)),  q = exp(a rho),  c_m = exp(-a m^2 / 2),
        a = (d / sigma)^2,

    so ``phi(x) = E * P_k(q)`` where ``P_k`` is a polynomial of degree ``2M``
    whose coefficients ``c_m w_{k+m}`` come from a small table (gathered with
    ``index_select``) and is evaluated by Horner's rule. The derivative is
    ``phi'(x) = -(d / sigma^2) E ((rho + M) P_k(q) - q P_k'(q))`` (Horner gives
    ``P'`` alongside ``P``); the weight gradient scatters ``g E q^n`` into one
    bin per (filter, cell, power n) and folds the bins back onto the weights.

    Truncation: the first centre left out is at least ``(M + 1/2) d`` away, so
    its relative contribution is below ``exp(-a (M + 1/2)^2 / 2)``; ``M`` is the
    smallest integer that puts this below ``tol`` (default: the machine epsilon
    of the dtype; M = 5 in float32 and 8 in float64 with the default grid,
    i.e. 11 resp. 17 of the 31 centres). Samples farther than ``M + 1/2``
    spacings outside the range are clamped there (phi is below ``tol |w|``
    there anyway), which keeps every power ``q^n`` finite.

    Cost: two ``exp`` and ``2M+1`` table lookups per sample forward, about twice
    that backward, against ``Nw`` exponentials for the naive form; memory:
    nothing of size ``Nw x H x W`` is ever made.

    Two kernels compute this:

    * native (float32 on the CPU, at most 32 centres, M <= 7): a small C file
      (below, GCC vector extensions: 16 samples per step, table lookups as
      in-register two-source shuffles, a polynomial ``exp``) compiled with the
      system's C compiler on first use into ``$VNRECON_CACHE_DIR`` (default
      ``~/.cache/vnrecon``), keyed by source, flags and CPU; loaded with ctypes
      and parallel over rows with OpenMP (it links the libgomp PyTorch has
      already loaded, so it uses PyTorch's thread pool and thread count).
      The weight gradient is summed per cell in float32 vector accumulators
      (flushed to float64 every 16k samples). About 6x (forward) and 10x
      (backward) faster than the PyTorch kernel at the paper size on an
      AVX-512 CPU; on AVX2 (no 64-byte two-source permute, so the lookups are
      composed of 32-byte ones) 5x and 2.2x on cpu-size filter responses.
    * PyTorch (everything else: float64, CUDA, other grids, or when no C
      compiler is available; ``VNRECON_NATIVE=0`` or ``activations.NATIVE =
      False`` forces it): the same arithmetic as a sequence of tensor ops over
      chunks of ``CHUNK`` samples with reused scratch buffers (``index_select``
      for the lookups, ``scatter_add_`` for the weight gradient).

    Both agree with ``rbf_naive`` to the truncation tolerance (tests).

Initialisation (SPEC): ``w_ij = 0.04 mu_j``. With sigma ~ spacing the sum
approximates ``0.04 * sqrt(2 pi) sigma / d * x ~ 0.097 x`` on the interior of
the range only (it bends back to 0 within a few sigma beyond ``vmin``/``vmax``);
that is the published initialisation and is kept as is.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

#: Samples per chunk of the fast kernels (a few MB of temporaries per chunk).
CHUNK = 1 << 16
#: Samples per chunk on other devices.
CHUNK_GPU = 1 << 24


@dataclass(frozen=True)
class RBFGrid:
    """Centres and width of the Gaussian RBFs: ``centres`` evenly on ``[vmin, vmax]``, width ``sigma``."""

    centres: int = 31
    vmin: float = -1.0
    vmax: float = 1.0
    sigma: float | None = None  # default (vmax - vmin) / centres, the original 2/31

    def __post_init__(self):
        if self.centres < 2:
            raise ValueError(f"need at least 2 RBF centres, got {self.centres}")
        if not self.vmax > self.vmin:
            raise ValueError(f"RBF range must have vmax > vmin, got [{self.vmin}, {self.vmax}]")
        if self.sigma is not None and not self.sigma > 0:
            raise ValueError(f"RBF sigma must be positive, got {self.sigma}")

    @property
    def width(self) -> float:
        return (self.vmax - self.vmin) / self.centres if self.sigma is None else float(self.sigma)

    @property
    def spacing(self) -> float:
        return (self.vmax - self.vmin) / (self.centres - 1)

    @property
    def a(self) -> float:
        """(spacing / sigma)^2, the only shape parameter of the recurrence."""
        return (self.spacing / self.width) ** 2

    def mu(self, dtype=torch.float32, device=None) -> torch.Tensor:
        return torch.linspace(self.vmin, self.vmax, self.centres, dtype=dtype, device=device)

    def half_width(self, dtype: torch.dtype, tol: float | None = None) -> int:
        """M: centres k-M .. k+M around the nearest centre k are evaluated."""
        tol = torch.finfo(dtype).eps if tol is None else float(tol)
        if not 0 < tol < 1:
            raise ValueError(f"RBF truncation tolerance must be in (0, 1), got {tol}")
        # exp(-a (M + 1/2)^2 / 2) <= tol
        m = math.ceil(math.sqrt(2.0 * math.log(1.0 / tol) / self.a) - 0.5)
        return int(min(max(m, 0), self.centres - 1))


def linear_init(filters: int, grid: RBFGrid, scale: float = 0.04) -> torch.Tensor:
    """The published initialisation w_ij = scale * mu_j (approximately linear phi), shape (filters, Nw)."""
    return (scale * grid.mu(torch.float64)).repeat(filters, 1).float()


# ---------------------------------------------------------------------------
# reference implementation


def rbf_naive(x: torch.Tensor, weight: torch.Tensor, grid: RBFGrid) -> torch.Tensor:
    """Reference RBF activation by broadcasting over all centres (plain autograd).

    ``x``: (B, Nk, *spatial); ``weight``: (Nk, Nw). Memory O(Nk Nw H W) per call,
    all of it kept by autograd for the backward pass.
    """
    mu = grid.mu(x.dtype, x.device)
    shape = (1, weight.shape[0]) + (1,) * (x.ndim - 2) + (weight.shape[1],)
    gauss = torch.exp(-0.5 * ((x.unsqueeze(-1) - mu) / grid.width) ** 2)
    return (gauss * weight.reshape(shape)).sum(-1)


# ---------------------------------------------------------------------------
# fast kernels (no autograd inside)


def coefficient_table(weight: torch.Tensor, grid: RBFGrid, m: int) -> torch.Tensor:
    """(2M+1, Nk*Nw) table: row n, entry (i, k) is c_(n-M) * w_i,(k+n-M) (0 outside the grid)."""
    filters, centres = weight.shape
    padded = torch.nn.functional.pad(weight, (m, m))
    powers = torch.arange(-m, m + 1, dtype=weight.dtype, device=weight.device)
    c = torch.exp(-0.5 * grid.a * powers * powers)
    windows = padded.unfold(1, centres, 1)  # (Nk, 2M+1, Nw): windows[i, n, k] = padded[i, k + n]
    return (windows * c.view(1, -1, 1)).transpose(0, 1).reshape(2 * m + 1, filters * centres).contiguous()


def fold_bins(bins: torch.Tensor, grid: RBFGrid, m: int, filters: int) -> torch.Tensor:
    """Weight gradient from bins (2M+1, Nk*Nw): sum over n of c_(n-M) bins[n, (i, j-n+M)]."""
    centres = grid.centres
    powers = torch.arange(-m, m + 1, dtype=bins.dtype, device=bins.device)
    c = torch.exp(-0.5 * grid.a * powers * powers)
    padded = bins.new_zeros(filters, centres + 2 * m)
    binned = bins.view(2 * m + 1, filters, centres)
    for n in range(2 * m + 1):
        padded[:, n : n + centres].add_(binned[n], alpha=float(c[n]))
    return padded[:, m : m + centres]


class _Layout:
    """A (B, Nk, *spatial) tensor seen as B contiguous 2-D blocks with known filter index per element.

    Contiguous (NCHW) tensors are (B, Nk, S) with the filter along rows; 4-D
    channels-last tensors are (B, S, Nk) with the filter along columns. Chunks
    (about ``CHUNK`` samples, so that the scratch buffers stay in cache) are
    contiguous pieces of one filter's row, or whole rows in channels-last.
    """

    def __init__(self, x: torch.Tensor):
        self.filters = x.shape[1]
        # on a GPU, big chunks (few kernel launches); on the CPU, cache-sized ones
        self.chunk = CHUNK if x.device.type == "cpu" else CHUNK_GPU
        if x.is_contiguous():
            self.channels_last = False
        elif x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last):
            self.channels_last = True
        else:
            raise ValueError("internal: _Layout needs a contiguous or channels-last tensor")

    def blocks(self, t: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return t.permute(0, 2, 3, 1).view(t.shape[0], -1, self.filters)
        return t.view(t.shape[0], self.filters, -1)

    def chunk_size(self, x: torch.Tensor) -> int:
        cols = self.blocks(x).shape[2]
        return min(self.chunk, cols) if not self.channels_last else max(1, self.chunk // cols) * cols

    def chunks(self, *tensors: torch.Tensor, centres: int):
        """Yield (offset, chunk of each tensor): offset = filter index * centres, broadcastable to the chunk."""
        views = [self.blocks(t) for t in tensors]
        batch, rows, cols = views[0].shape
        dtype, device = views[0].dtype, views[0].device
        if self.channels_last:  # chunks of whole rows (pixels x filters), filter offset per column
            offset = (torch.arange(self.filters, dtype=dtype, device=device) * centres).view(1, -1)
            step = max(1, self.chunk // cols)
            for b in range(batch):
                for r0 in range(0, rows, step):
                    yield offset, [v[b, r0 : r0 + step] for v in views]
        else:  # chunks within one filter's row, filter offset constant
            for b in range(batch):
                for r in range(rows):
                    offset = float(r * centres)
                    for c0 in range(0, cols, self.chunk):
                        yield offset, [v[b, r, c0 : c0 + self.chunk] for v in views]


class _Workspace:
    """Chunk-sized scratch buffers, allocated once per kernel call and reused for every chunk.

    Fresh allocations of this size are mmap-ed and page-faulted in anew each
    time on Linux; reusing a handful of buffers keeps the kernels out of the
    allocator and the page-fault handler.
    """

    def __init__(self, like: torch.Tensor, size: int, names: tuple[str, ...]):
        self.buffers = {name: torch.empty(size, dtype=like.dtype, device=like.device) for name in names}
        self.index = torch.empty(size, dtype=torch.int64, device=like.device)
        self.shape = None

    def shaped(self, shape):
        self.shape = shape
        self.n = math.prod(shape)
        return self

    def __getattr__(self, name):
        buffers = self.__dict__["buffers"]
        if name in buffers:
            return buffers[name][: self.n].view(self.shape)
        raise AttributeError(name)

    def flat_index(self) -> torch.Tensor:
        return self.index[: self.n]


def _cells(x: torch.Tensor, offset: torch.Tensor, grid: RBFGrid, m: int, n_entries: int, ws: _Workspace):
    """rho, flat table index, q = exp(a rho), E = exp(-a (rho^2/2 + M rho)) of one chunk, in ``ws``."""
    a = grid.a
    rho, k, q, e = ws.rho, ws.k, ws.q, ws.e
    torch.mul(x, 1.0 / grid.spacing, out=rho)
    rho.sub_(grid.vmin / grid.spacing)  # t = (x - vmin) / d
    torch.round(rho, out=k)
    k.clamp_(0, grid.centres - 1)
    rho.sub_(k)
    rho.clamp_(-(m + 0.5), m + 0.5)
    k.add_(offset)
    index = ws.flat_index()
    index.copy_(k.view(-1))
    index.clamp_(0, n_entries - 1)  # NaN input: any valid index; the output stays NaN through E and q
    torch.mul(rho, a, out=q)
    q.exp_()
    torch.mul(rho, -0.5 * a, out=e)
    e.sub_(m * a).mul_(rho).exp_()
    return rho, index, q, e


def _horner(table: torch.Tensor, index: torch.Tensor, q: torch.Tensor, ws: _Workspace, derivative: bool):
    """P(q) (and P'(q)) with coefficients table[n][index], highest power first; results live in ``ws``."""
    top = table.shape[0] - 1
    p, buf = ws.p, ws.buf
    torch.index_select(table[top], 0, index, out=p.view(-1))
    dp = None
    for n in range(top - 1, -1, -1):
        if derivative:
            if dp is None:
                dp = ws.dp
                dp.copy_(p)
            else:
                torch.addcmul(p, dp, q, out=dp)  # dp = dp q + p
        torch.index_select(table[n], 0, index, out=buf.view(-1))
        buf.addcmul_(p, q)
        p, buf = buf, p
    if derivative and dp is None:
        dp = ws.dp
        dp.zero_()
    return p, dp


# ---------------------------------------------------------------------------
# native kernel (float32, CPU): C with GCC vector extensions, built on first use


#: Set to False to always use the pure-PyTorch kernels (also: environment VNRECON_NATIVE=0).
NATIVE = os.environ.get("VNRECON_NATIVE", "1") != "0"
NATIVE_MAX_CENTRES = 32
NATIVE_MAX_HALF_WIDTH = 7
_NATIVE_FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC")
# OpenMP: the library then shares PyTorch's libgomp (same soname, already loaded) and its thread pool,
# so torch.set_num_threads applies and the two never compete for cores.
_OPENMP_FLAGS = ("-fopenmp",)

_NATIVE_SOURCE = r"""
#include <stdint.h>
#include <string.h>

typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
#define W 16
#define CELLS 32
#define AI static inline __attribute__((always_inline))

AI vf vsel(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }
AI vf vmin(vf a, vf b) { return vsel(a < b, a, b); }
AI vf vmax(vf a, vf b) { return vsel(a > b, a, b); }
AI vf vround(vf x) { return (x + 12582912.0f) - 12582912.0f; }  /* nearest, ties to even, |x| < 2^22 */

/* table[k] for 16 lanes from a 32-entry table held in two vectors. AVX-512 has this two-source
   permute as one instruction; without it GCC lowers a 64-byte shuffle lane by lane (~5x slower
   kernel on AVX2), so there it is composed of 8-lane two-source shuffles (2 vpermps + blend each). */
#ifdef __AVX512F__
AI vf lookup(vf lo, vf hi, vi k) { return __builtin_shuffle(lo, hi, k); }
#else
typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));
AI vf lookup(vf lo, vf hi, vi k) {
    vf8 t[4], out[2];
    vi8 kk[2];
    memcpy(t, &lo, 64); memcpy(t + 2, &hi, 64); memcpy(kk, &k, 64);
    for (int h = 0; h < 2; h++) {
        vi8 low = kk[h] & 15;
        vf8 a = __builtin_shuffle(t[0], t[1], low), b = __builtin_shuffle(t[2], t[3], low);
        vi8 upper = (kk[h] & 16) != 0;
        out[h] = (vf8)((upper & (vi8)b) | (~upper & (vi8)a));
    }
    vf r;
    memcpy(&r, out, 64);
    return r;
}
#endif

AI vf vexp(vf x) {
    x = vmax(vmin(x, (vf){} + 88.0f), (vf){} - 87.0f);
    vf k = vround(x * 1.44269504088896341f);
    vf r = x - k * 0.693145751953125f;
    r = r - k * 1.42860682030941723212e-6f;
    vf p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f + r * (0.00833333377f
             + r * (0.00138888892f + r * 0.000198412701f))))));
    vi bits = (__builtin_convertvector(k, vi) + 127) << 23;
    return p * (vf)bits;
}

typedef struct { float vmin, inv_d, a, top, lo, hi; } grid_t;

/* nearest cell k (as int lanes), rho, q = exp(a rho), e = exp(-a rho (rho/2 + m)) */
AI void cells(vf x, const grid_t* g, int m, vi* k, vf* rho, vf* q, vf* e) {
    vf t = (x - g->vmin) * g->inv_d;
    t = vsel(t != t, (vf){}, t);
    t = vmax(vmin(t, (vf){} + g->hi), (vf){} + g->lo);
    vf kf = vmax(vmin(vround(t), (vf){} + g->top), (vf){});
    *rho = t - kf;
    *k = __builtin_convertvector(kf, vi);
    *q = vexp(*rho * g->a);
    *e = vexp(*rho * (*rho * (-0.5f * g->a) - (float)m * g->a));
}

AI void load_table(const float* tab, int m, vf* lo, vf* hi) {
    for (int n = 0; n <= 2 * m; n++) { memcpy(&lo[n], tab + n * CELLS, 64); memcpy(&hi[n], tab + n * CELLS + W, 64); }
}

AI void fwd_row(const float* x, float* out, int64_t len, const float* tab, const grid_t* g, int m) {
    vf lo[2 * m + 1], hi[2 * m + 1];
    load_table(tab, m, lo, hi);
    for (int64_t i = 0; i < len; i += W) {
        int64_t rem = len - i < W ? len - i : W;
        vf xv = {};
        if (rem == W) memcpy(&xv, x + i, 64); else memcpy(&xv, x + i, rem * sizeof(float));
        vi k; vf rho, q, e;
        cells(xv, g, m, &k, &rho, &q, &e);
        vf p = lookup(lo[2 * m], hi[2 * m], k);
        for (int n = 2 * m - 1; n >= 0; n--) p = p * q + lookup(lo[n], hi[n], k);
        vf v = vsel(xv != xv, xv, p * e);
        if (rem == W) memcpy(out + i, &v, 64); else memcpy(out + i, &v, rem * sizeof(float));
    }
}

/* bins: per row, CELLS x 16 doubles, bins[cell * 16 + n] += sum over samples in that cell of g e q^n.
   Accumulated lane-wise per cell in vector registers (masked adds, one pass per distinct cell in a
   block of 16 samples; neighbouring samples mostly share a cell) and flushed to double now and then. */
#define FLUSH_BLOCKS 1024
AI void flush(vf (*acc)[15], double* bins, int m) {
    for (int c = 0; c < CELLS; c++)
        for (int n = 0; n <= 2 * m; n++) {
            float lanes[W];
            memcpy(lanes, &acc[c][n], 64);
            double s = 0.0;
            for (int l = 0; l < W; l++) s += lanes[l];
            bins[c * 16 + n] += s;
            acc[c][n] = (vf){};
        }
}

AI void bwd_row(const float* x, const float* gr, float* gx, float* phi, double* bins, int64_t len,
                const float* tab, const grid_t* g, int m, float slope) {
    vf lo[2 * m + 1], hi[2 * m + 1];
    load_table(tab, m, lo, hi);
    vf acc[CELLS][15];
    if (bins) memset(acc, 0, sizeof(acc));
    int64_t blocks = 0;
    for (int64_t i = 0; i < len; i += W) {
        int64_t rem = len - i < W ? len - i : W;
        vf xv = {}, gv = {};
        if (rem == W) { memcpy(&xv, x + i, 64); memcpy(&gv, gr + i, 64); }
        else { memcpy(&xv, x + i, rem * sizeof(float)); memcpy(&gv, gr + i, rem * sizeof(float)); }
        vi k; vf rho, q, e;
        cells(xv, g, m, &k, &rho, &q, &e);
        vf p = lookup(lo[2 * m], hi[2 * m], k), dp = {};
        for (int n = 2 * m - 1; n >= 0; n--) {
            dp = dp * q + p;
            p = p * q + lookup(lo[n], hi[n], k);
        }
        vf ge = gv * e;
        ge = vsel(xv != xv, xv, ge);  /* NaN input: NaN gradients, as the naive form */
        if (gx) {
            vf d = ((rho + (float)m) * p - q * dp) * ge * slope;
            if (rem == W) memcpy(gx + i, &d, 64); else memcpy(gx + i, &d, rem * sizeof(float));
        }
        if (phi) {
            vf v = vsel(xv != xv, xv, p * e);
            if (rem == W) memcpy(phi + i, &v, 64); else memcpy(phi + i, &v, rem * sizeof(float));
        }
        if (bins) {
            vf pw[2 * m + 1];
            vf v = ge;  /* zero in the padding lanes of a short block */
            for (int n = 0; n <= 2 * m; n++) { pw[n] = v; v = v * q; }
            int32_t kk[W];
            memcpy(kk, &k, 64);
            uint32_t left = rem == W ? 0xFFFFu : ((1u << rem) - 1u);
            for (int pass = 0; left && pass < 3; pass++) {  /* the few cells shared by many lanes */
                int c = kk[__builtin_ctz(left)];
                vi sel = k == c;
                for (int n = 0; n <= 2 * m; n++) acc[c][n] += vsel(sel, pw[n], (vf){});
                for (int l = 0; l < W; l++) if (kk[l] == c) left &= ~(1u << l);
            }
            if (left) {  /* scattered values: lane by lane */
                float cols[15][W];
                for (int n = 0; n <= 2 * m; n++) memcpy(cols[n], &pw[n], 64);
                while (left) {
                    int l = __builtin_ctz(left);
                    left &= left - 1u;
                    double* b = bins + (int64_t)kk[l] * 16;
                    for (int n = 0; n <= 2 * m; n++) b[n] += cols[n][l];
                }
            }
            if (++blocks == FLUSH_BLOCKS) { flush(acc, bins, m); blocks = 0; }
        }
    }
    if (bins) flush(acc, bins, m);
}

#define DEFINE(M) \
    static void fwd_rows_##M(const float* x, float* out, int64_t r0, int64_t r1, int64_t len, int64_t nk, const float* table, const grid_t* g) { \
        _Pragma("omp parallel for schedule(static)") \
        for (int64_t r = r0; r < r1; r++) fwd_row(x + r * len, out + r * len, len, table + (r % nk) * (2 * M + 1) * CELLS, g, M); } \
    static void bwd_rows_##M(const float* x, const float* gr, float* gx, float* phi, double* bins, int64_t r0, int64_t r1, int64_t len, \
                             int64_t nk, const float* table, const grid_t* g, float slope) { \
        _Pragma("omp parallel for schedule(static)") \
        for (int64_t r = r0; r < r1; r++) \
            bwd_row(x + r * len, gr + r * len, gx ? gx + r * len : 0, phi ? phi + r * len : 0, bins ? bins + r * CELLS * 16 : 0, \
                    len, table + (r % nk) * (2 * M + 1) * CELLS, g, M, slope); }
DEFINE(1) DEFINE(2) DEFINE(3) DEFINE(4) DEFINE(5) DEFINE(6) DEFINE(7)

int rbf_forward(const float* x, float* out, int64_t r0, int64_t r1, int64_t len, int64_t nk, const float* table, int m,
                double vmin, double inv_d, double a, int64_t nw) {
    grid_t g = {(float)vmin, (float)inv_d, (float)a, (float)(nw - 1), -(m + 0.5f), (float)(nw - 1) + m + 0.5f};
    switch (m) {
        case 1: fwd_rows_1(x, out, r0, r1, len, nk, table, &g); return 0;
        case 2: fwd_rows_2(x, out, r0, r1, len, nk, table, &g); return 0;
        case 3: fwd_rows_3(x, out, r0, r1, len, nk, table, &g); return 0;
        case 4: fwd_rows_4(x, out, r0, r1, len, nk, table, &g); return 0;
        case 5: fwd_rows_5(x, out, r0, r1, len, nk, table, &g); return 0;
        case 6: fwd_rows_6(x, out, r0, r1, len, nk, table, &g); return 0;
        case 7: fwd_rows_7(x, out, r0, r1, len, nk, table, &g); return 0;
    }
    return -1;
}

int rbf_backward(const float* x, const float* gr, float* gx, float* phi, double* bins, int64_t r0, int64_t r1, int64_t len,
                 int64_t nk, const float* table, int m, double vmin, double inv_d, double a, int64_t nw, double slope) {
    grid_t g = {(float)vmin, (float)inv_d, (float)a, (float)(nw - 1), -(m + 0.5f), (float)(nw - 1) + m + 0.5f};
    float s = (float)slope;
    switch (m) {
        case 1: bwd_rows_1(x, gr, gx, phi, bins, r0, r1, len, nk, table, &g, s); return 0;
        case 2: bwd_rows_2(x, gr, gx, phi, bins, r0, r1, len, nk, table, &g, s); return 0;
        case 3: bwd_rows_3(x, gr, gx, phi, bins, r0, r1, len, nk, table, &g, s); return 0;
        case 4: bwd_rows_4(x, gr, gx, phi, bins, r0, r1, len, nk, table, &g, s); return 0;
        case 5: bwd_rows_5(x, gr, gx, phi, bins, r0, r1, len, nk, table, &g, s); return 0;
        case 6: bwd_rows_6(x, gr, gx, phi, bins, r0, r1, len, nk, table, &g, s); return 0;
        case 7: bwd_rows_7(x, gr, gx, phi, bins, r0, r1, len, nk, table, &g, s); return 0;
    }
    return -1;
}
"""

_native_state: dict = {}


def _cache_dir() -> Path:
    configured = os.environ.get("VNRECON_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vnrecon"


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build_native(compiler: str) -> Path:
    try:
        return _build_with(compiler, _NATIVE_FLAGS + _OPENMP_FLAGS)
    except RuntimeError:
        return _build_with(compiler, _NATIVE_FLAGS)  # no OpenMP: one thread


def _build_with(compiler: str, flags: tuple[str, ...]) -> Path:
    key = hashlib.sha256(
        "\0".join((_NATIVE_SOURCE, compiler, *flags, _cpu_signature(), platform.machine())).encode()
    ).hexdigest()[:20]
    for directory in (_cache_dir(), Path(tempfile.gettempdir()) / f"vnrecon-{os.getuid() if hasattr(os, 'getuid') else 0}"):
        library = directory / f"rbf_{key}.so"
        if library.exists():
            return library
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=directory) as work:
                source = Path(work) / "rbf.c"
                source.write_text(_NATIVE_SOURCE)
                target = Path(work) / library.name
                subprocess.run(
                    [compiler, *flags, str(source), "-o", str(target)],
                    check=True, capture_output=True, timeout=120,
                )  # fmt: skip
                os.replace(target, library)  # atomic: concurrent builders agree
            return library
        except (OSError, subprocess.SubprocessError):
            continue
    raise RuntimeError("could not build the native RBF kernel")


def _load_native():
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler found")
    library = ctypes.CDLL(str(_build_native(compiler)))
    vp, i64, dbl, cint = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    library.rbf_forward.argtypes = [vp, vp, i64, i64, i64, i64, vp, cint, dbl, dbl, dbl, i64]
    library.rbf_backward.argtypes = [vp, vp, vp, vp, vp, i64, i64, i64, i64, vp, cint, dbl, dbl, dbl, i64, dbl]
    library.rbf_forward.restype = library.rbf_backward.restype = cint
    return library


def native_library():
    """The compiled kernel (ctypes library), or None where it cannot be built (a warning says why, once)."""
    if not NATIVE:
        return None
    if "library" not in _native_state:
        _native_state["library"] = None
        try:
            library = _load_native()
            _native_state["library"] = library
            if not _native_self_test():
                _native_state["library"] = None
                raise RuntimeError("its results disagree with the PyTorch kernel")
        except Exception as error:  # any build or load problem: fall back, never fail
            warnings.warn(f"vnrecon: native RBF kernel unavailable ({error}); using the PyTorch kernel", stacklevel=2)
    return _native_state["library"]


def _native_self_test() -> bool:
    grid = RBFGrid()
    generator = torch.Generator().manual_seed(0)
    x = 0.7 * torch.randn(2, 3, 5, 37, generator=generator)
    weight = torch.randn(3, grid.centres, generator=generator)
    fast = _native_forward(x, weight, grid, grid.half_width(torch.float32))
    reference = rbf_naive(x.double(), weight.double(), grid)
    return bool((fast.double() - reference).abs().max() <= 1e-5 * reference.abs().max())


def _native_ok(x: torch.Tensor, grid: RBFGrid, m: int) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.ndim >= 2
        and grid.centres <= NATIVE_MAX_CENTRES
        and 1 <= m <= NATIVE_MAX_HALF_WIDTH
        and native_library() is not None
    )


def _native_table(weight: torch.Tensor, grid: RBFGrid, m: int) -> torch.Tensor:
    """(Nk, 2M+1, 32) float32: the coefficient table per filter, cells padded to 32."""
    filters = weight.shape[0]
    table = coefficient_table(weight.detach().to(torch.float32), grid, m).view(2 * m + 1, filters, grid.centres)
    return torch.nn.functional.pad(table.permute(1, 0, 2), (0, NATIVE_MAX_CENTRES - grid.centres)).contiguous()


def _native_forward(x: torch.Tensor, weight: torch.Tensor, grid: RBFGrid, m: int) -> torch.Tensor:
    library = _native_state["library"]
    x = x.contiguous()
    out = torch.empty_like(x)
    table = _native_table(weight, grid, m)
    filters = weight.shape[0]
    rows, length = x.shape[0] * filters, x[0, 0].numel()
    status = library.rbf_forward(
        x.data_ptr(), out.data_ptr(), 0, rows, length, filters, table.data_ptr(), m,
        grid.vmin, 1.0 / grid.spacing, grid.a, grid.centres,
    )  # fmt: skip
    if status:
        raise RuntimeError("native RBF kernel rejected its arguments")
    return out


def _native_backward(x, weight, grad_out, grid: RBFGrid, m: int, need_x: bool, need_weight: bool, values: bool):
    library = _native_state["library"]
    x, grad_out = x.contiguous(), grad_out.contiguous().to(torch.float32)
    table = _native_table(weight, grid, m)
    filters = weight.shape[0]
    rows, length = x.shape[0] * filters, x[0, 0].numel()
    grad_x = torch.empty_like(x) if need_x else None
    phi = torch.empty_like(x) if values else None
    bins = torch.zeros(rows, NATIVE_MAX_CENTRES, 16, dtype=torch.float64) if need_weight else None

    def pointer(t):
        return None if t is None else t.data_ptr()

    status = library.rbf_backward(
        x.data_ptr(), grad_out.data_ptr(), pointer(grad_x), pointer(phi), pointer(bins), 0, rows, length, filters,
        table.data_ptr(), m, grid.vmin, 1.0 / grid.spacing, grid.a, grid.centres, -grid.spacing / grid.width**2,
    )  # fmt: skip
    if status:
        raise RuntimeError("native RBF kernel rejected its arguments")
    grad_weight = None
    if need_weight:
        per_filter = bins.view(x.shape[0], filters, NATIVE_MAX_CENTRES, 16).sum(0)[:, : grid.centres, : 2 * m + 1]
        stacked = per_filter.permute(2, 0, 1).reshape(2 * m + 1, filters * grid.centres)
        grad_weight = fold_bins(stacked, grid, m, filters).to(weight.dtype)
    return grad_x, grad_weight, phi



def rbf_forward_kernel(x: torch.Tensor, weight: torch.Tensor, grid: RBFGrid, tol: float | None = None, out=None):
    """phi(x) without autograd. ``x``: (B, Nk, *spatial), contiguous or channels-last.

    Native kernel for float32 on the CPU where it is available, else the
    chunked PyTorch evaluation (any dtype and device).
    """
    m = grid.half_width(x.dtype, tol)
    if out is None and _native_ok(x, grid, m):
        return _native_forward(x, weight, grid, m)
    table = coefficient_table(weight.detach().to(x.dtype), grid, m)
    layout = _Layout(x)
    out = torch.empty_like(x) if out is None else out
    ws = _Workspace(x, min(x.numel(), layout.chunk_size(x)), ("rho", "k", "q", "e", "p", "buf"))
    for offset, (xc, oc) in layout.chunks(x, out, centres=grid.centres):
        ws.shaped(xc.shape)
        rho, index, q, e = _cells(xc, offset, grid, m, table.shape[1], ws)
        p, _ = _horner(table, index, q, ws, derivative=False)
        torch.mul(p, e, out=oc)
    return out


def rbf_backward_kernel(
    x: torch.Tensor,
    weight: torch.Tensor,
    grad_out: torch.Tensor,
    grid: RBFGrid,
    tol: float | None = None,
    need_x: bool = True,
    need_weight: bool = True,
    values: bool = False,
):
    """(grad_x, grad_weight, phi(x) or None) for phi(x) with incoming gradient ``grad_out``.

    ``values=True`` also returns phi(x) (it costs one multiply per sample, since
    the recomputation needs P(q) anyway); used by the fused regulariser in
    ``vnrecon.models.vn``.
    """
    m = grid.half_width(x.dtype, tol)
    if _native_ok(x, grid, m):
        return _native_backward(x, weight, grad_out, grid, m, need_x, need_weight, values)
    filters = weight.shape[0]
    table = coefficient_table(weight.detach().to(x.dtype), grid, m)
    layout = _Layout(x)
    grad_out = grad_out.contiguous(memory_format=torch.channels_last) if layout.channels_last else grad_out.contiguous()
    grad_x = torch.empty_like(x) if need_x else None
    phi = torch.empty_like(x) if values else None
    bins = torch.zeros(2 * m + 1, table.shape[1], dtype=x.dtype, device=x.device) if need_weight else None
    tensors = [x, grad_out] + ([grad_x] if need_x else []) + ([phi] if values else [])
    ws = _Workspace(x, min(x.numel(), layout.chunk_size(x)), ("rho", "k", "q", "e", "p", "buf", "dp", "ge"))
    slope = -grid.spacing / grid.width**2
    for offset, chunk in layout.chunks(*tensors, centres=grid.centres):
        xc, gc = chunk[0], chunk[1]
        rest = chunk[2:]
        ws.shaped(xc.shape)
        rho, index, q, e = _cells(xc, offset, grid, m, table.shape[1], ws)
        p, dp = _horner(table, index, q, ws, derivative=need_x)
        if values:
            torch.mul(p, e, out=rest[-1])
        ge = ws.ge
        torch.mul(gc, e, out=ge)
        if need_x:
            # phi'(x) = -(d / sigma^2) E ((rho + M) P - q P')
            deriv = rho.add_(m).mul_(p)
            deriv.addcmul_(q, dp, value=-1.0)
            torch.mul(deriv, ge, out=rest[0]).mul_(slope)
        if need_weight:
            flat = ge.view(-1)
            for n in range(2 * m + 1):
                bins[n].scatter_add_(0, index, flat)
                if n < 2 * m:
                    ge.mul_(q)
    grad_weight = fold_bins(bins, grid, m, filters).to(weight.dtype) if need_weight else None
    return grad_x, grad_weight, phi


class RBFFunction(torch.autograd.Function):
    """phi(x) with a recomputing backward: saves only ``x`` and ``weight``."""

    @staticmethod
    def forward(ctx, x, weight, grid: RBFGrid, tol):
        x = _canonical(x)
        ctx.grid, ctx.tol = grid, tol
        ctx.save_for_backward(x, weight)
        return rbf_forward_kernel(x, weight, grid, tol)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_x, grad_weight, _ = rbf_backward_kernel(
            x, weight, grad_out, ctx.grid, ctx.tol, need_x=ctx.needs_input_grad[0], need_weight=ctx.needs_input_grad[1]
        )
        return grad_x, grad_weight, None, None


def _canonical(x: torch.Tensor) -> torch.Tensor:
    if x.is_contiguous() or (x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last)):
        return x
    return x.contiguous()


def rbf_activation(x: torch.Tensor, weight: torch.Tensor, grid: RBFGrid, tol: float | None = None) -> torch.Tensor:
    """Memory-efficient phi(x): ``x`` (B, Nk, *spatial), ``weight`` (Nk, Nw); same values as ``rbf_naive``."""
    if x.ndim < 2 or x.shape[1] != weight.shape[0] or weight.shape[1] != grid.centres:
        raise ValueError(
            f"RBF activation: x {tuple(x.shape)} needs {weight.shape[0]} channels and weight (filters, {grid.centres}),"
            f" got weight {tuple(weight.shape)}"
        )
    return RBFFunction.apply(x, weight, grid, tol)


class RBFActivation(nn.Module):
    """One trainable RBF activation per filter: ``weight`` (filters, centres).

    ``naive=True`` evaluates with the broadcast reference ``rbf_naive`` instead of
    the recomputing custom function (same values; benchmark and tests only).
    """

    def __init__(
        self,
        filters: int,
        grid: RBFGrid | None = None,
        init_scale: float = 0.04,
        naive: bool = False,
        tol: float | None = None,
    ):
        super().__init__()
        self.grid = RBFGrid() if grid is None else grid
        self.naive = naive
        self.tol = tol
        self.weight = nn.Parameter(linear_init(filters, self.grid, init_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.naive:
            return rbf_naive(x, self.weight, self.grid)
        return rbf_activation(x, self.weight, self.grid, self.tol)

    def extra_repr(self) -> str:
        g = self.grid
        return f"filters={self.weight.shape[0]}, centres={g.centres}, range=[{g.vmin}, {g.vmax}], sigma={g.width:.4g}, naive={self.naive}"
