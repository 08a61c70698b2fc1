"""Float32 matrix products whose every sum is taken in one fixed order.

XLA on CPU picks a different product routine for one row than for several
(a matrix-vector kernel against a blocked matrix-matrix one), and the
matrix-matrix routine's blocking depends on the number of rows. Each sums
in its own order, so a sequence filtered alone and the same sequence
filtered in a batch round differently, and the marginal log-likelihoods
of the two drift apart by 1e-8 to 1e-7 relative over a few thousand steps.

The products here fix the order of every sum, whatever the number of rows,
the batch or the tiling, so that a row's result depends on that row and the
matrix only (bit for bit):

``matmul(x, m)`` -- ``x @ m``, ``x`` (..., K), ``m`` (K, N)
    Output ``[r, j]``: the contraction is cut into consecutive blocks of
    :data:`BLOCK` terms. Within a block the terms are accumulated in
    ascending order by fused multiply-adds starting from zero; the block
    sums are then added, in ascending order, to the running total.
``matmul_t(x, m)`` -- ``x @ m.T``, ``m`` (N, K)
    Output ``[r, n]``: :data:`LANES` interleaved partial sums (term ``k``
    goes to partial ``k % LANES``) over the first ``K - K % LANES`` terms,
    accumulated as above in blocks of :data:`BLOCK` terms per partial; the
    partials are added pairwise (``p[l] + p[l + 4]``, then ``+ 2``, then
    ``+ 1``), and the last ``K % LANES`` terms are fused-multiply-added in
    ascending order.
``row_sum(x)`` -- ``x.sum(-1)`` as ``matmul_t`` with a row of ones.
``tile_matmul_t(x, m)`` -- ``x[..., g, :] @ m[g].T`` for each of G
    matrices, in ``matmul_t``'s order.
``left_matmul(a, y, transpose)`` -- ``a @ y[..., :, :]`` (``a.T @`` with
    ``transpose``) for one small matrix ``a``, in ``matmul``'s order.

Blocked sums also lose fewer small terms than one long running sum (the
matrix-matrix routine's order), so these products are closer to float64
than XLA's own on the banded models of the benchmarks.

The kernels are written in LLVM IR (:mod:`llvmlite`, which numba already
brings), compiled for the host CPU on first use and called from jitted
code through JAX's foreign-function interface. Where that is not possible
(a GPU backend, float64, or a JAX without :mod:`jax.ffi`) the functions
fall back to ``jnp.matmul`` at HIGHEST precision: same values to rounding,
without the row-count independence.
"""

from __future__ import annotations

import ctypes
import threading
import warnings
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["matmul", "matmul_t", "row_sum", "tile_matmul_t", "left_matmul", "available",
           "active", "BLOCK", "LANES"]

#: Terms of a contraction summed into one partial before it joins the total.
BLOCK = 64
#: Lanes of a vector: interleaved partial sums of :func:`matmul_t`.
LANES = 8

_NN, _NT = "xhmm_ordered_nn_f32", "xhmm_ordered_nt_f32"
_HIGHEST = jax.lax.Precision.HIGHEST


# --------------------------------------------------------------------------
# LLVM IR, written as text
# --------------------------------------------------------------------------

class _Ir:
    """Writes one LLVM IR function: values, memory and counted loops.

    ``opaque`` spells pointers ``ptr`` (LLVM 15 on) rather than ``float*``.
    """

    def __init__(self, opaque: bool) -> None:
        self.opaque = opaque
        self.lines: list[str] = []
        self.count = 0

    def ptr(self, ty: str) -> str:
        return "ptr" if self.opaque else f"{ty}*"

    def emit(self, line: str) -> None:
        self.lines.append("  " + line)

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")

    def op(self, text: str) -> str:
        self.count += 1
        out = f"%v{self.count}"
        self.emit(f"{out} = {text}")
        return out

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def add(self, *terms: str) -> str:
        """``sum(terms)`` in i64; a term ``"a*b"`` is a product."""
        total = None
        for term in terms:
            if "*" in term:
                a, b = term.split("*")
                term = self.op(f"mul i64 {a}, {b}")
            total = term if total is None else self.op(f"add i64 {total}, {term}")
        return total

    def _at(self, base: str, index: str, ty: str) -> str:
        """Pointer to float ``index`` of ``base``, as a pointer to ``ty``."""
        at = self.op(f"getelementptr float, {self.ptr('float')} {base}, i64 {index}")
        if ty != "float" and not self.opaque:
            at = self.op(f"bitcast float* {at} to {ty}*")
        return at

    def load(self, ty: str, base: str, index: str) -> str:
        return self.op(f"load {ty}, {self.ptr(ty)} {self._at(base, index, ty)}, align 4")

    def store(self, ty: str, value: str, base: str, index: str) -> None:
        self.emit(f"store {ty} {value}, {self.ptr(ty)} {self._at(base, index, ty)}, align 4")

    def splat(self, scalar: str, lanes: int) -> str:
        if lanes == 1:
            return scalar
        vec = f"<{lanes} x float>"
        one = self.op(f"insertelement {vec} undef, float {scalar}, i32 0")
        return self.op(f"shufflevector {vec} {one}, {vec} undef, <{lanes} x i32> zeroinitializer")

    def fma(self, lanes: int, a: str, b: str, c: str) -> str:
        ty, _, name = _vec(lanes)
        return self.op(f"call {ty} @{name}({ty} {a}, {ty} {b}, {ty} {c})")

    def loop(self, start: str, stop: str, step: int, body, carried=()):
        """``for i in range(start, stop, step)`` (``i < stop`` tested first).

        ``body(i, values)`` emits the body and returns the new values of the
        ``carried`` ``(type, initial)`` pairs. Returns ``(i_end, values)``
        after the loop (the counter's first value not run, for a following
        loop).
        """
        name = self.fresh("L")
        pre, head, latch, end = name + "pre", name, name + "latch", name + "end"
        self.emit(f"br label %{pre}")
        self.label(pre)
        go = self.op(f"icmp slt i64 {start}, {stop}")
        self.emit(f"br i1 {go}, label %{head}, label %{end}")
        self.label(head)
        counter = f"%{name}i"
        nxt = f"%{name}n"
        phis = [f"%{name}c{k}" for k in range(len(carried))]
        self.emit(f"{counter} = phi i64 [{start}, %{pre}], [{nxt}, %{latch}]")
        at = len(self.lines)
        values = body(counter, phis)
        news = list(values) if carried else []
        # the carried values' phis name what the body computed: written now,
        # placed beside the counter's
        self.lines[at:at] = [f"  {phi} = phi {ty} [{init}, %{pre}], [{new}, %{latch}]"
                             for phi, new, (ty, init) in zip(phis, news, carried)]
        self.emit(f"br label %{latch}")
        self.label(latch)
        self.emit(f"{nxt} = add i64 {counter}, {step}")
        more = self.op(f"icmp slt i64 {nxt}, {stop}")
        self.emit(f"br i1 {more}, label %{head}, label %{end}")
        self.label(end)
        final = self.op(f"phi i64 [{start}, %{pre}], [{nxt}, %{latch}]")
        outs = [self.op(f"phi {ty} [{init}, %{pre}], [{new}, %{latch}]")
                for new, (ty, init) in zip(news, carried)]
        return final, outs

    def function(self, header: str) -> str:
        return header + " {\nentry:\n" + "\n".join(self.lines) + "\n  ret void\n}\n"


def _vec(lanes: int) -> tuple[str, str, str]:
    """Type, zero and fma intrinsic of ``lanes`` floats (1: a scalar)."""
    if lanes == 1:
        return "float", "0.0", "llvm.fma.f32"
    return f"<{lanes} x float>", "zeroinitializer", f"llvm.fma.v{lanes}f32"


def _min(f: _Ir, a: str, b: str) -> str:
    return f.op(f"select i1 {f.op(f'icmp slt i64 {a}, {b}')}, i64 {a}, i64 {b}")


def _blocks(f: _Ir, total: str, size: int, body, carried=()):
    """``body(start, stop, first, values)`` for each block of ``size`` of ``range(total)``."""
    def run(start, values):
        stop = _min(f, f.op(f"add i64 {start}, {size}"), total)
        first = f.op(f"icmp eq i64 {start}, 0")
        return body(start, stop, first, values)
    return f.loop("0", total, size, run, carried)[1]


def _combine(f: _Ir, ty: str, first: str, total: str, part: str) -> str:
    """``part`` for the first block, else ``total + part``."""
    added = f.op(f"fadd {ty} {total}, {part}")
    return f.op(f"select i1 {first}, {ty} {part}, {ty} {added}")


_NN_ARGS = "i64 %K, i64 %xr, i64 %xk, i64 %mk, i64 %orow"


def _nn_tile(opaque: bool, rows: int, groups: int, lanes: int) -> str:
    """``out[r0 + a, j0 + b]`` of ``x @ m`` for ``a < rows``, ``b < groups * lanes``.

    One register partial per (row, vector) over each block of BLOCK terms.
    """
    f = _Ir(opaque)
    ty, zero, _ = _vec(lanes)
    fp = f.ptr("float")
    header = (f"define internal void @nn_{rows}_{groups}_{lanes}({fp} noalias %out, "
              f"{fp} noalias %x, {fp} noalias %m, {_NN_ARGS}, i64 %r0, i64 %j0)")
    xrow = [f.add(f"{f.op(f'add i64 %r0, {a}')}*%xr") for a in range(rows)]
    orow = [f.add(f"{f.op(f'add i64 %r0, {a}')}*%orow", "%j0") for a in range(rows)]

    def block(start, stop, first, _):
        def term(i, acc):
            mrow = f.add(f"{i}*%mk", "%j0")
            mv = [f.load(ty, "%m", f.add(mrow, str(b * lanes))) for b in range(groups)]
            xcol = f.op(f"mul i64 {i}, %xk")
            new = []
            for a in range(rows):
                s = f.splat(f.load("float", "%x", f.add(xrow[a], xcol)), lanes)
                new += [f.fma(lanes, s, mv[b], acc[a * groups + b]) for b in range(groups)]
            return new
        _, parts = f.loop(start, stop, 1, term, [(ty, zero)] * (rows * groups))
        for a in range(rows):
            for b in range(groups):
                at = f.add(orow[a], str(b * lanes))
                old = f.load(ty, "%out", at)
                f.store(ty, _combine(f, ty, first, old, parts[a * groups + b]), "%out", at)

    _blocks(f, "%K", BLOCK, block)
    return f.function(header)


#: Columns of one output row kept as block partials by :func:`_nn_row`.
_ROW_TILE = 2048


def _nn_row(opaque: bool, lanes: int) -> str:
    """One output row of ``x @ m``, streaming ``m`` row by row (for few rows).

    The order of :func:`_nn_tile`: a partial per column over each block of
    BLOCK terms (in ``%part``, a tile of up to :data:`_ROW_TILE` columns),
    added to the total after the block. Terms go four at a time through
    four nested fused multiply-adds: the same order, a quarter of the
    partials' loads and stores.
    """
    f = _Ir(opaque)
    vt = _vec(lanes)[0]
    fp = f.ptr("float")
    header = (f"define internal void @nn_row({fp} noalias %out, {fp} noalias %x, "
              f"{fp} noalias %m, i64 %K, i64 %jb, i64 %je, i64 %xk, i64 %mk, i64 %xrow, i64 %orow)")
    arr = f"[{_ROW_TILE} x float]"
    f.emit(f"%part = alloca {arr}, align 64")
    f.emit(f"%pbase = getelementptr {arr}, {f.ptr(arr)} %part, i64 0, i64 0")

    def columns(width, update):
        """``update(type, lanes, j)`` over vectors of the tile, then its single columns."""
        wv = f.op(f"and i64 {width}, {-lanes}")
        f.loop("0", wv, lanes, lambda j, _: update(vt, lanes, j))
        f.loop(wv, width, 1, lambda j, _: update("float", 1, j))

    def tile(j0, _):
        width = _min(f, f.op(f"sub i64 %je, {j0}"), str(_ROW_TILE))
        obase = f.add("%orow", j0)

        def block(start, stop, first, _):
            columns(width, lambda ty, n, j: f.store(ty, _vec(n)[1], "%pbase", j))

            def terms(count):
                def run(i, _):
                    idx = [f.op(f"add i64 {i}, {q}") for q in range(count)]
                    xs = [f.load("float", "%x", f.add("%xrow", f"{k}*%xk")) for k in idx]
                    splats = {1: xs, lanes: [f.splat(x, lanes) for x in xs]}
                    mrows = [f.add(f"{k}*%mk", j0) for k in idx]

                    def update(ty, n, j):
                        acc = f.load(ty, "%pbase", j)
                        for q in range(count):
                            acc = f.fma(n, splats[n][q], f.load(ty, "%m", f.add(mrows[q], j)), acc)
                        f.store(ty, acc, "%pbase", j)
                    columns(width, update)
                return run

            quads_stop = f.op(f"sub i64 {stop}, 3")
            i_end, _ = f.loop(start, quads_stop, 4, terms(4))
            f.loop(i_end, stop, 1, terms(1))

            def flush(ty, n, j):
                at = f.add(obase, j)
                old = f.load(ty, "%out", at)
                f.store(ty, _combine(f, ty, first, old, f.load(ty, "%pbase", j)), "%out", at)
            columns(width, flush)

        _blocks(f, "%K", BLOCK, block)

    f.loop("%jb", "%je", _ROW_TILE, tile)
    return f.function(header)


def _hsum(f: _Ir, v: str) -> str:
    """``(p0 + p4) + (p2 + p6)`` + ``(p1 + p5) + (p3 + p7)``, as the docstring says."""
    v8, v4, v2 = "<8 x float>", "<4 x float>", "<2 x float>"
    lo = f.op(f"shufflevector {v8} {v}, {v8} undef, <4 x i32> <i32 0, i32 1, i32 2, i32 3>")
    hi = f.op(f"shufflevector {v8} {v}, {v8} undef, <4 x i32> <i32 4, i32 5, i32 6, i32 7>")
    s4 = f.op(f"fadd {v4} {lo}, {hi}")
    lo = f.op(f"shufflevector {v4} {s4}, {v4} undef, <2 x i32> <i32 0, i32 1>")
    hi = f.op(f"shufflevector {v4} {s4}, {v4} undef, <2 x i32> <i32 2, i32 3>")
    s2 = f.op(f"fadd {v2} {lo}, {hi}")
    a = f.op(f"extractelement {v2} {s2}, i32 0")
    b = f.op(f"extractelement {v2} {s2}, i32 1")
    return f.op(f"fadd float {a}, {b}")


def _nt_tile(opaque: bool, rows: int, cols: int) -> str:
    """``out[r0 + a, n0 + b]`` of ``x @ m.T`` for ``a < rows``, ``b < cols``."""
    f = _Ir(opaque)
    vt, zero, _ = _vec(LANES)
    fp = f.ptr("float")
    header = (f"define internal void @nt_{rows}_{cols}({fp} noalias %out, {fp} noalias %x, "
              f"{fp} noalias %m, i64 %K, i64 %xr, i64 %mr, i64 %orow, i64 %on, "
              f"i64 %r0, i64 %n0)")
    xrow = [f.add(f"{f.op(f'add i64 %r0, {a}')}*%xr") for a in range(rows)]
    mrow = [f.add(f"{f.op(f'add i64 %n0, {b}')}*%mr") for b in range(cols)]
    kv = f.op(f"and i64 %K, {-LANES}")

    def block(start, stop, first, totals):
        def term(k, acc):
            xv = [f.load(vt, "%x", f.add(xrow[a], k)) for a in range(rows)]
            mv = [f.load(vt, "%m", f.add(mrow[b], k)) for b in range(cols)]
            return [f.fma(LANES, xv[a], mv[b], acc[a * cols + b])
                    for a in range(rows) for b in range(cols)]
        _, parts = f.loop(start, stop, LANES, term, [(vt, zero)] * (rows * cols))
        return [_combine(f, vt, first, t, p) for t, p in zip(totals, parts)]

    totals = _blocks(f, kv, BLOCK * LANES, block, [(vt, zero)] * (rows * cols))
    sums = [_hsum(f, t) for t in totals]

    def tail(k, acc):
        xs = [f.load("float", "%x", f.add(xrow[a], k)) for a in range(rows)]
        ms = [f.load("float", "%m", f.add(mrow[b], k)) for b in range(cols)]
        return [f.fma(1, xs[a], ms[b], acc[a * cols + b])
                for a in range(rows) for b in range(cols)]
    _, sums = f.loop(kv, "%K", 1, tail, [("float", s) for s in sums])
    for a in range(rows):
        for b in range(cols):
            at = f.add(f"{f.op(f'add i64 %r0, {a}')}*%orow", f"{f.op(f'add i64 %n0, {b}')}*%on")
            f.store("float", sums[a * cols + b], "%out", at)
    return f.function(header)


def _groups(f: _Ir, spec: list[str], body) -> None:
    """``body(out, x, m)`` for each of ``G`` matrices (pointers offset by their strides)."""
    G, xg, mg, og = spec

    def group(g, _):
        fp = f.ptr("float")
        x = f.op(f"getelementptr float, {fp} %x, i64 {f.op(f'mul i64 {g}, {xg}')}")
        m = f.op(f"getelementptr float, {fp} %m, i64 {f.op(f'mul i64 {g}, {mg}')}")
        out = f.op(f"getelementptr float, {fp} %out, i64 {f.op(f'mul i64 {g}, {og}')}")
        body(out, x, m)
    f.loop("0", G, 1, group)


def _driver(opaque: bool, name: str, strides: str, tile_strides: str, place) -> str:
    """``@name(out, x, m, G, R, K, N, strides..., jb, je)``: output columns
    ``jb .. je`` of each of the G products, cut into tiles by ``place``.

    ``place(call, out, x, m, r4, span)`` writes the loops; ``call(tile, r0,
    c0, out, x, m)`` calls a tile function with its strides
    (``tile_strides``) at row ``r0`` and column ``c0``; ``r4`` is the rows
    in whole groups of four, ``span`` the columns ``je - jb``.
    """
    f = _Ir(opaque)
    fp = f.ptr("float")
    header = (f"define internal void @{name}({fp} %out, {fp} %x, {fp} %m, i64 %G, i64 %R, "
              f"i64 %K, i64 %N, {strides}, i64 %jb, i64 %je)")

    def call(tile, r0, c0, out, x, m):
        f.emit(f"call void @{tile}({fp} {out}, {fp} {x}, {fp} {m}, i64 %K, {tile_strides}, "
               f"i64 {r0}, i64 {c0})")

    def each(out, x, m):
        place(f, call, out, x, m, f.op("and i64 %R, -4"), f.op("sub i64 %je, %jb"))
    _groups(f, ["%G", "%xg", "%mg", "%og"], each)
    return f.function(header)


def _nn_driver(opaque: bool) -> str:
    def place(f, call, out, x, m, r4, span):
        def tiles(name, start, stop, step):
            def col(j0, _):
                f.loop("0", r4, 4, lambda r0, _: call(name, r0, j0, out, x, m))
            return f.loop(start, stop, step, col)[0]
        j = tiles(f"nn_4_2_{LANES}", "%jb",
                  f.add("%jb", f.op(f"and i64 {span}, {-2 * LANES}")), 2 * LANES)
        j = tiles(f"nn_4_1_{LANES}", j, f.add("%jb", f.op(f"and i64 {span}, {-LANES}")), LANES)
        tiles("nn_4_1_1", j, "%je", 1)
        fp = f.ptr("float")
        f.loop(r4, "%R", 1, lambda r, _: f.emit(
            f"call void @nn_row({fp} {out}, {fp} {x}, {fp} {m}, i64 %K, i64 %jb, i64 %je, i64 %xk, "
            f"i64 %mk, i64 {f.op(f'mul i64 {r}, %xr')}, i64 {f.op(f'mul i64 {r}, %orow')})"))
    return _driver(opaque, "nn", "i64 %xg, i64 %xr, i64 %xk, i64 %mg, i64 %mk, i64 %og, i64 %orow",
                   "i64 %xr, i64 %xk, i64 %mk, i64 %orow", place)


def _nt_driver(opaque: bool) -> str:
    def place(f, call, out, x, m, r4, span):
        def groups(n0, _):
            f.loop("0", r4, 4, lambda r0, _: call("nt_4_2", r0, n0, out, x, m))
        n = f.loop("%jb", f.add("%jb", f.op(f"and i64 {span}, -2")), 2, groups)[0]
        f.loop(n, "%je", 1, lambda n0, _: f.loop(
            "0", r4, 4, lambda r0, _: call("nt_4_1", r0, n0, out, x, m)))

        def row(r, _):
            n = f.loop("%jb", f.add("%jb", f.op(f"and i64 {span}, {-LANES}")), LANES,
                       lambda n0, _: call(f"nt_1_{LANES}", r, n0, out, x, m))[0]
            f.loop(n, "%je", 1, lambda n0, _: call("nt_1_1", r, n0, out, x, m))
        f.loop(r4, "%R", 1, row)
    return _driver(opaque, "nt", "i64 %xg, i64 %xr, i64 %mg, i64 %mr, i64 %og, i64 %orow, i64 %on",
                   "i64 %xr, i64 %mr, i64 %orow, i64 %on", place)


#: XLA FFI ABI (xla/ffi/api/c_api.h), 64-bit: byte offsets of the fields used.
_FRAME_EXTENSION, _FRAME_API, _FRAME_CONTEXT, _FRAME_ARGS, _FRAME_RETS = 8, 16, 24, 72, 112
_EXTENSION_TYPE, _EXTENSION_METADATA, _METADATA_EXTENSION = 8, 24, 1
_BUFFER_DATA = 24
_API_SCHEDULE, _API_THREADS = 136, 144

#: Multiply-adds below which a product runs on the calling thread alone.
#: The NonLocal random walk's 73 x 73 grid products (389k multiply-adds)
#: stay below it: split, their forward and backward step measured 62 and
#: 75 us in one run (31 and 33 in the next), unsplit a steady 34 and 36.
#: One row at K = 1,000 (1M) is still split.
_SPLIT_WORK = 1 << 19
#: Job slots (i64) before the spec: references, next part, parts done,
#: parts, columns per part, out, x, m.
_JOB_HEAD = 8
#: Entries of a product's int32 spec: G, R, K, N, then the driver's seven
#: strides (see :func:`_nn_driver`, :func:`_nt_driver`).
_N_SPEC = 11


class _Abi:
    """Byte-offset loads and stores on FFI structs, typed or opaque pointers."""

    def __init__(self, f: _Ir) -> None:
        self.f = f
        self.bp = "ptr" if f.opaque else "i8*"

    def at(self, base: str, offset, ty: str) -> str:
        f = self.f
        at = f.op(f"getelementptr i8, {self.bp} {base}, i64 {offset}")
        return at if f.opaque else f.op(f"bitcast i8* {at} to {ty}*")

    def get(self, base: str, offset, ty: str) -> str:
        return self.f.op(f"load {ty}, {self.f.ptr(ty)} {self.at(base, offset, ty)}")

    def put(self, base: str, offset, ty: str, value: str) -> None:
        self.f.emit(f"store {ty} {value}, {self.f.ptr(ty)} {self.at(base, offset, ty)}")

    def atomic(self, op: str, base: str, slot: int, value) -> str:
        """``op`` (add, sub) on i64 ``slot`` of ``base``; returns the old value."""
        return self.f.op(f"atomicrmw {op} {self.f.ptr('i64')} {self.at(base, 8 * slot, 'i64')}, "
                         f"i64 {value} seq_cst")

    def release(self, job: str) -> None:
        """Drop one reference to ``job`` (slot 0); the last one frees it."""
        f = self.f
        last = f.op(f"icmp eq i64 {self.atomic('sub', job, 0, 1)}, 1")
        f.emit(f"br i1 {last}, label %release, label %exit")
        f.label("release")
        f.emit(f"call void @free({self.bp} {job})")
        f.emit("br label %exit")
        f.label("exit")

    def to_ptr(self, value: str) -> str:
        return self.f.op(f"inttoptr i64 {value} to {self.f.ptr('float')}")

    def to_int(self, value: str, ty: str) -> str:
        return self.f.op(f"ptrtoint {ty} {value} to i64")


def _spec_call(driver: str, fp: str, pointers: list[str], spec: list[str],
               jb: str, je: str) -> str:
    return (f"call void @{driver}(" + ", ".join(f"{fp} {p}" for p in pointers) + ", "
            + ", ".join(f"i64 {v}" for v in spec) + f", i64 {jb}, i64 {je})")


def _work(opaque: bool, driver: str) -> str:
    """``{driver}_work(job)``: claims column parts of a job until none is left.

    ``{driver}_task(job)`` is the same on a pool thread, then drops its
    reference to the job (the last reference frees it).
    """
    f = _Ir(opaque)
    abi = _Abi(f)
    bp, fp = abi.bp, f.ptr("float")
    slots = [abi.get("%job", 8 * k, "i64") for k in range(_JOB_HEAD + _N_SPEC)]
    parts, width = slots[3], slots[4]
    pointers = [abi.to_ptr(v) for v in slots[5:8]]
    spec = slots[_JOB_HEAD:]
    f.emit("br label %claim")
    f.label("claim")
    part = abi.atomic("add", "%job", 1, 1)
    more = f.op(f"icmp slt i64 {part}, {parts}")
    f.emit(f"br i1 {more}, label %run, label %done")
    f.label("run")
    jb = f.op(f"mul i64 {part}, {width}")
    je = _min(f, f.op(f"add i64 {jb}, {width}"), spec[3])
    f.emit(_spec_call(driver, fp, pointers, spec, jb, je))
    abi.atomic("add", "%job", 2, 1)
    f.emit("br label %claim")
    f.label("done")
    work = f.function(f"define internal void @{driver}_work({bp} %job)")
    f = _Ir(opaque)
    f.emit(f"call void @{driver}_work({bp} %job)")
    _Abi(f).release("%job")
    return work + f.function(f"define internal void @{driver}_task({bp} %job)")


def _handler(opaque: bool, name: str, driver: str, minor: int) -> str:
    """``XLA_FFI_Error* name(XLA_FFI_CallFrame*)``: ``out = driver(x, m, spec)``.

    Answers XLA's metadata query (API version 0.``minor``, no traits).
    Otherwise reads the data of arguments ``x, m, spec`` (spec: int32 sizes
    and strides) and result ``out``. A product of at least ``_SPLIT_WORK``
    multiply-adds is cut into column parts, one per thread of XLA's pool:
    parts are claimed from a shared counter by this thread and by tasks
    scheduled on the pool, so this thread never waits for a task that has
    not started; the job lives on the heap until its last reference drops.
    Splitting columns changes no sum: every output's order is its own.
    """
    f = _Ir(opaque)
    abi = _Abi(f)
    bp, fp = abi.bp, f.ptr("float")
    header = f"define {bp} @{name}({bp} %frame)"
    ext = abi.get("%frame", _FRAME_EXTENSION, bp)
    has = f.op(f"icmp ne {bp} {ext}, null")
    f.emit(f"br i1 {has}, label %ext, label %run")
    f.label("ext")
    kind = abi.get(ext, _EXTENSION_TYPE, "i32")
    meta = f.op(f"icmp eq i32 {kind}, {_METADATA_EXTENSION}")
    f.emit(f"br i1 {meta}, label %metadata, label %run")
    f.label("metadata")
    md = abi.get(ext, _EXTENSION_METADATA, bp)
    abi.put(md, 8, "i64", "24")        # api_version.struct_size
    abi.put(md, 16, bp, "null")        # api_version.extension_start
    abi.put(md, 24, "i32", "0")        # major
    abi.put(md, 28, "i32", str(minor))
    abi.put(md, 32, "i32", "0")        # traits
    f.emit(f"ret {bp} null")
    f.label("run")
    args = abi.get("%frame", _FRAME_ARGS, bp)
    rets = abi.get("%frame", _FRAME_RETS, bp)

    def data(array: str, index: int) -> str:
        return abi.get(abi.get(array, 8 * index, bp), _BUFFER_DATA, bp)
    raw = [data(rets, 0), data(args, 0), data(args, 1)]
    pointers = raw if opaque else [f.op(f"bitcast i8* {p} to float*") for p in raw]
    spec_ptr = data(args, 2)
    spec = [f.op(f"sext i32 {abi.get(spec_ptr, 4 * k, 'i32')} to i64") for k in range(_N_SPEC)]
    n = spec[3]
    work = f.op(f"mul i64 {f.op(f'mul i64 {spec[0]}, {spec[1]}')}, "
                f"{f.op(f'mul i64 {spec[2]}, {n}')}")
    big = f.op(f"icmp sge i64 {work}, {_SPLIT_WORK}")
    f.emit(f"br i1 {big}, label %ask, label %alone")
    f.label("alone")
    f.emit(_spec_call(driver, fp, pointers, spec, "0", n))
    f.emit(f"ret {bp} null")
    # threads of XLA's pool
    f.label("ask")
    api = abi.get("%frame", _FRAME_API, bp)
    ctx = abi.get("%frame", _FRAME_CONTEXT, bp)
    fn = "ptr" if opaque else "i8* (i8*)*"
    f.emit("%count = alloca i64, align 8")
    f.emit("store i64 1, " + f.ptr("i64") + " %count")
    f.emit("%qargs = alloca [4 x i64], align 8")
    q = "%qargs" if opaque else f.op("bitcast [4 x i64]* %qargs to i8*")
    abi.put(q, 0, "i64", "32")
    abi.put(q, 8, bp, "null")
    abi.put(q, 16, bp, ctx)
    count_ptr = "%count" if opaque else f.op("bitcast i64* %count to i8*")
    abi.put(q, 24, bp, count_ptr)
    threads_fn = abi.get(api, _API_THREADS, bp)
    threads_fn = threads_fn if opaque else f.op(f"bitcast i8* {threads_fn} to {fn}")
    error = f.op(f"call {bp} {threads_fn}({bp} {q})")
    failed = f.op(f"icmp ne {bp} {error}, null")
    counted = f.op(f"load i64, {f.ptr('i64')} %count")
    threads = f.op(f"select i1 {failed}, i64 1, i64 {counted}")
    few = f.op(f"icmp slt i64 {threads}, 2")
    f.emit(f"br i1 {few}, label %alone, label %split")
    f.label("split")
    def ceil_div(a: str, b: str) -> str:
        less = f.op(f"sub i64 {b}, 1")
        return f.op(f"udiv i64 {f.op(f'add i64 {a}, {less}')}, {b}")
    per = ceil_div(n, threads)
    width = f.op(f"and i64 {f.op(f'add i64 {per}, {2 * LANES - 1}')}, {-2 * LANES}")
    parts = ceil_div(n, width)
    one = f.op(f"icmp slt i64 {parts}, 2")
    f.emit(f"br i1 {one}, label %alone, label %job")
    f.label("job")
    job = f.op(f"call {bp} @malloc(i64 {8 * (_JOB_HEAD + _N_SPEC)})")
    head = [parts, "0", "0", parts, width] + [abi.to_int(p, fp) for p in pointers]
    for k, value in enumerate(head + spec):
        abi.put(job, 8 * k, "i64", value)
    task = f"@{driver}_task" if opaque else f"bitcast (void (i8*)* @{driver}_task to i8*)"
    schedule_fn = abi.get(api, _API_SCHEDULE, bp)
    schedule_fn = schedule_fn if opaque else f.op(f"bitcast i8* {schedule_fn} to {fn}")
    f.emit("%sargs = alloca [5 x i64], align 8")
    sa = "%sargs" if opaque else f.op("bitcast [5 x i64]* %sargs to i8*")

    def schedule(_, __):
        abi.put(sa, 0, "i64", "40")
        abi.put(sa, 8, bp, "null")
        abi.put(sa, 16, bp, ctx)
        abi.put(sa, 24, bp, task)
        abi.put(sa, 32, bp, job)
        err = f.op(f"call {bp} {schedule_fn}({bp} {sa})")
        lost = f.op(f"icmp ne {bp} {err}, null")
        # a task that could not be scheduled holds no reference
        abi.atomic("sub", job, 0, f.op(f"select i1 {lost}, i64 1, i64 0"))
    f.loop("1", parts, 1, schedule)
    f.emit(f"call void @{driver}_work({bp} {job})")
    f.emit("br label %wait")
    f.label("wait")
    done = f.op(f"load atomic i64, {f.ptr('i64')} {abi.at(job, 16, 'i64')} seq_cst, align 8")
    waiting = f.op(f"icmp slt i64 {done}, {parts}")
    f.emit(f"br i1 {waiting}, label %wait, label %finish")
    f.label("finish")
    abi.release(job)
    f.emit(f"ret {bp} null")
    return header + " {\nentry:\n" + "\n".join(f.lines) + "\n}\n"


def _module(opaque: bool, minor: int) -> str:
    """The whole LLVM module: tiles, rows, drivers and the two FFI handlers."""
    v = _vec(LANES)[0]
    bp = "ptr" if opaque else "i8*"
    parts = [f"declare {v} @llvm.fma.v{LANES}f32({v}, {v}, {v})",
             f"declare {bp} @malloc(i64)", f"declare void @free({bp})",
             "declare float @llvm.fma.f32(float, float, float)",
             _nn_tile(opaque, 4, 2, LANES), _nn_tile(opaque, 4, 1, LANES),
             _nn_tile(opaque, 4, 1, 1), _nn_row(opaque, LANES),
             _nt_tile(opaque, 4, 2), _nt_tile(opaque, 4, 1),
             _nt_tile(opaque, 1, LANES), _nt_tile(opaque, 1, 1),
             _nn_driver(opaque), _nt_driver(opaque),
             _work(opaque, "nn"), _work(opaque, "nt"),
             _handler(opaque, _NN, "nn", minor), _handler(opaque, _NT, "nt", minor)]
    return "\n".join(parts)


# --------------------------------------------------------------------------
# Compiling and registering with XLA
# --------------------------------------------------------------------------

_LOCK = threading.Lock()
_ENGINES: list = []  # the JIT engines stay alive as long as the process


def _ffi_minor() -> int:
    """The XLA FFI minor version of the installed jaxlib (from its header)."""
    import re
    from pathlib import Path
    header = Path(jax.ffi.include_dir()) / "xla" / "ffi" / "api" / "c_api.h"
    found = re.search(r"#define XLA_FFI_API_MINOR (\d+)", header.read_text())
    return int(found.group(1)) if found else 0


@lru_cache(maxsize=None)
def available() -> bool:
    """True when the ordered kernels are compiled and registered with XLA (CPU).

    Compiles the LLVM module for the host CPU and registers its two handlers
    on first call. False where JAX has no :mod:`jax.ffi`, or (with a
    warning that says why) where compiling or registering fails: products
    then fall back to ``jnp.matmul``, equal to rounding.
    """
    if not hasattr(jax, "ffi") or not hasattr(jax.ffi, "ffi_call"):
        return False
    try:
        _register()
    except Exception as error:  # any failure here only costs the fixed order
        warnings.warn(f"xhmm: fixed-order float32 kernels unavailable ({error!r}); "
                      "batched and single-sequence results then agree to float32 "
                      "rounding only", RuntimeWarning, stacklevel=2)
        return False
    return True


def _register() -> None:
    import llvmlite.binding as llvm

    with _LOCK:
        if _ENGINES:  # another thread's first call registered them meanwhile
            return
        if llvm.llvm_version_info[0] < 15:
            llvm.initialize()  # llvmlite < 0.44; later ones initialise by themselves
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        opaque = llvm.llvm_version_info[0] >= 15
        module = llvm.parse_assembly(_module(opaque, _ffi_minor()))
        module.verify()
        machine = llvm.Target.from_default_triple().create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
            opt=3)
        _optimise(llvm, module, machine)
        engine = llvm.create_mcjit_compiler(module, machine)
        engine.finalize_object()
        _ENGINES.append((engine, module, machine))
        capsule = ctypes.pythonapi.PyCapsule_New
        capsule.restype = ctypes.py_object
        capsule.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)
        for name in (_NN, _NT):
            jax.ffi.register_ffi_target(
                name, capsule(engine.get_function_address(name), None, None), platform="cpu")


def _optimise(llvm, module, machine) -> None:
    """LLVM's O3 pipeline (either pass-manager API that llvmlite offers).

    The IR holds no fast-math flags, so no pass may reorder a sum: the
    optimiser hoists addresses and unrolls loops, and the arithmetic stays
    as written.
    """
    if hasattr(llvm, "create_pass_builder"):
        builder = llvm.create_pass_builder(machine, llvm.PipelineTuningOptions(speed_level=3))
        builder.getModulePassManager().run(module, builder)
        return
    builder = llvm.create_pass_manager_builder()
    builder.opt_level = 3
    passes = llvm.create_module_pass_manager()
    machine.add_analysis_passes(passes)
    builder.populate(passes)
    passes.run(module)


def active(dtype) -> bool:
    """True when products in ``dtype`` run here in fixed order (float32 on CPU)."""
    return (np.dtype(dtype) == np.float32 and jax.default_backend() == "cpu"
            and available())


def _call(target: str, shape: tuple[int, ...], x, m, spec: list[int]) -> jax.Array:
    out = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.ffi.ffi_call(target, out)(x, m, np.asarray(spec, dtype=np.int32))


def matmul(x: jax.Array, m: jax.Array, fixed: bool = True) -> jax.Array:
    """``x @ m`` for ``x`` (..., K) and ``m`` (K, N), each row summed in fixed order.

    ``fixed=False`` asks for XLA's product (here and in every function of
    this module): faster over many rows, where no sum needs the order.
    """
    if not (fixed and active(x.dtype)):
        return jnp.matmul(x, m, precision=_HIGHEST)
    *lead, k = x.shape
    n = m.shape[1]
    rows = int(np.prod(lead, dtype=np.int64))
    return _call(_NN, (*lead, n), x, m, [1, rows, k, n, 0, k, 1, 0, n, 0, n])


def matmul_t(x: jax.Array, m: jax.Array, fixed: bool = True) -> jax.Array:
    """``x @ m.T`` for ``x`` (..., K) and ``m`` (N, K), each row summed in fixed order."""
    if not (fixed and active(x.dtype)):
        return jnp.einsum("...k,nk->...n", x, m, precision=_HIGHEST)
    *lead, k = x.shape
    n = m.shape[0]
    rows = int(np.prod(lead, dtype=np.int64))
    return _call(_NT, (*lead, n), x, m, [1, rows, k, n, 0, k, 0, k, 0, n, 1])


def row_sum(x: jax.Array, fixed: bool = True) -> jax.Array:
    """``x.sum(-1, keepdims=True)`` in :func:`matmul_t`'s fixed order."""
    if not (fixed and active(x.dtype)):
        return jnp.sum(x, axis=-1, keepdims=True)
    return matmul_t(x, jnp.ones((1, x.shape[-1]), x.dtype))


def tile_matmul_t(x: jax.Array, m: jax.Array, fixed: bool = True) -> jax.Array:
    """``x[..., g, :] @ m[g].T`` for ``x`` (..., G, K) and ``m`` (G, N, K), in fixed order."""
    if not (fixed and active(x.dtype)):
        return jnp.einsum("...gk,gnk->...gn", x, m, precision=_HIGHEST)
    *lead, g, k = x.shape
    n = m.shape[1]
    rows = int(np.prod(lead, dtype=np.int64))
    return _call(_NT, (*lead, g, n), x, m, [g, rows, k, n, k, g * k, n * k, k, n, g * n, 1])


def left_matmul(a: jax.Array, y: jax.Array, transpose: bool = False,
                fixed: bool = True) -> jax.Array:
    """``a @ y[g]`` (``a.T @ y[g]`` with ``transpose``) for each matrix of ``y`` (..., K, N).

    ``a`` is read through its strides, so neither ``a`` nor ``y`` is transposed.
    """
    if not (fixed and active(y.dtype)):
        spec = "ca,...cd->...ad" if transpose else "ac,...cd->...ad"
        return jnp.einsum(spec, a, y, precision=_HIGHEST)
    *lead, k, n = y.shape
    rows = a.shape[1] if transpose else a.shape[0]
    groups = int(np.prod(lead, dtype=np.int64))
    xr, xk = (1, a.shape[1]) if transpose else (a.shape[1], 1)
    spec = [groups, rows, k, n, 0, xr, xk, k * n, n, rows * n, n]
    return _call(_NN, (*lead, rows, n), a, y, spec)
