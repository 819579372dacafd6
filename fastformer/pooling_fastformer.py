# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""The running softmax pool, the one primitive behind every Fastformer attention.

A softmax pool of items `(a_j, x_j)` (logit, value) is `G = sum_j e^{a_j} x_j / sum_j e^{a_j}`. It is kept as a
`SoftmaxPool` state `(m, [S, Z])`: a reference max `m` of the logits and the sums relative to it, `S = sum_j
e^{a_j - m} x_j`, `Z = sum_j e^{a_j - m}`. The pool of a concatenation is the `merge` of its parts' pools, so one
state type serves every form of the model:

- the encoder's global query and key and the attention pooler: `softmax_pool` of the whole sequence, `finalize`d,
  with the attention weights `pool_weights`;
- the sequence-chunked encoder: the `merge` of its chunks' `softmax_pool`s;
- sequence parallelism (`sequence_parallel.py`): the `merge` of the shards' pools;
- the causal prefix pools and the decoding cache: `prefix_softmax_pool`, the `prefix_scan` of per-token pools
  continuing from a carried state (traced by `torch.export` with a fixed number of levels, `EXPORTED_SCAN_LEVELS`,
  so that one exported graph serves every length).

Conventions: masked (padding) items never set a max and weigh exactly 0; maxima carry no gradient (they only
rescale numerator and denominator alike); a pool without any real item has `Z = 0` and `finalize`s to exactly 0, with
exactly 0 gradient. Pools are computed in at least float32 (float64 stays float64).

This file imports only torch: it is copied beside `modeling_fastformer.py` into checkpoints (Hub custom code).
"""

import contextlib
from typing import NamedTuple

import torch
import torch.utils.checkpoint
from torch import nn


# Block length of the causal prefix scan at every level: work and activation memory O(seq * heads * block).
CAUSAL_CHUNK_SIZE = 16

# Levels of the causal prefix scan in a graph exported with a symbolic length (`torch.export`, and ONNX through it),
# where the number of levels cannot follow the length (`prefix_scan`, `exported_block_counts`): with blocks of 16,
# the last of 4 levels is one block of n // 4096 + 2 items (258 at 2^20 tokens), whose quadratic work is under 1% of
# the scan's linear rest up to about 3 M tokens (0.35% at 2^20). Every length is exact.
EXPORTED_SCAN_LEVELS = 4


def no_autocast(device_type: str):
    """A context that switches autocast off where it is on (the pools are computed in at least float32), and does
    nothing otherwise, so that a traced graph (`torch.export`) holds no autocast region."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def exporting() -> bool:
    """True while `torch.export` traces (False on a torch without `torch.compiler.is_exporting`)."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting is not None and is_exporting())


class SoftmaxPool(NamedTuple):
    """A running softmax pool, per batch row and head (and, in a scan, per item): `m` `(...)`, a reference max of
    the pooled logits (the most negative finite float when none is real), and `sums` `(..., d + 1)`, `[S, Z]` =
    `[sum_j e^{a_j - m} x_j, sum_j e^{a_j - m}]`."""

    m: torch.Tensor
    sums: torch.Tensor

    @property
    def s(self) -> torch.Tensor:
        """`S`, `(..., d)`."""
        return self.sums[..., :-1]

    @property
    def z(self) -> torch.Tensor:
        """`Z`, `(...)`: 0 exactly when no real item was pooled."""
        return self.sums[..., -1]


class ScanLevel(NamedTuple):
    """What one level of a segmented `prefix_scan` (blocks of `L` items) takes from the boundaries alone: `blocked`
    `(batch, 1, blocks, L, L)` bool, `[t, j]` True where item `j` of a block does not pool into its item `t` (`j > t`,
    or another document); `apart` `(batch, 1, blocks, L)` bool, True at the items that the carry from the earlier
    blocks does not reach (their document began in their own block), None at the last level (a single block)."""

    blocked: torch.Tensor
    apart: torch.Tensor | None


class Segments:
    """Documents packed one after another into the rows of a batch: `starts` `(batch, n)` bool, True at a position
    that begins a document (never at position 0 of a row: a row's first document starts there anyway); `ids`
    `(batch, n)` int64, `starts.cumsum(1)`, the document of each position, numbered from 0 in each row; `count`, the
    most documents in a row (`ids.max() + 1`). A pool over `Segments` pools each document on its own.

    Everything that depends on the boundaries alone (`count`, the indices `rows`, `flat`, `index`, `continues`, the
    prefix scan's masks `scan_plan`, the chunks `split`) is derived on first use and kept on the object, so that the
    pools of every layer (and their recomputation in the backward pass) reuse it: one `Segments` per forward pass.
    A chunk of `split` (`whole`: the `Segments` it was cut from) numbers its documents as the whole rows do."""

    def __init__(self, starts: torch.Tensor, ids: torch.Tensor | None = None, whole: "Segments | None" = None):
        self.starts = starts
        self.ids = starts.cumsum(dim=1, dtype=torch.long) if ids is None else ids
        self.whole = whole
        self.derived = {}

    @classmethod
    def from_starts(cls, starts: torch.Tensor) -> "Segments":
        return cls(starts)

    def cached(self, key, build):
        """`build()`, called on the first request of `key` only."""
        if key not in self.derived:
            self.derived[key] = build()
        return self.derived[key]

    @property
    def count(self) -> int:
        if self.whole is not None:
            return self.whole.count
        return self.cached("count", lambda: int(self.ids.max()) + 1)

    @property
    def rows(self) -> torch.Tensor:
        """`(batch, 1)` int64, `0..batch-1`: the row index that goes with `ids` in `gather`."""
        return self.cached("rows", lambda: torch.arange(self.ids.shape[0], device=self.ids.device).unsqueeze(1))

    @property
    def flat(self) -> torch.Tensor:
        """`(batch * n,)` int64: each position's document numbered over the batch, `row * count + id`."""
        return self.cached("flat", lambda: (self.ids + self.count * self.rows).flatten())

    def index(self, heads: int) -> torch.Tensor:
        """`ids` expanded to `(batch, n, heads)`: each item's document, for a scatter or gather along positions."""
        return self.cached(("index", heads), lambda: self.ids.unsqueeze(-1).expand(*self.ids.shape, heads))

    @property
    def continues(self) -> torch.Tensor:
        """`(batch, n)` bool: True at the positions of the document in progress before position 0 (the positions
        before the first start; a pool carried from earlier positions reaches these only)."""
        return self.cached("continues", lambda: self.ids == self.ids[:, :1] - self.starts[:, :1].long())

    def scan_plan(self, block: int) -> tuple[ScanLevel, ...]:
        """The `ScanLevel`s of a segmented `prefix_scan` of `n` items in blocks of `block`, one per level: level
        `k + 1` scans the `blocks` totals of level `k`, whose documents are those of each block's last item; a
        level's items are padded to whole blocks with the last document (`ceil(log_block(n))` levels)."""

        def build():
            levels, ids, batch = [], self.ids, self.ids.shape[0]
            later = torch.ones(block, block, dtype=torch.bool, device=ids.device).triu(1)  # [t, j]: j > t
            while True:
                n = ids.shape[1]
                blocks = (n + block - 1) // block
                if blocks * block > n:
                    ids = torch.cat([ids, ids[:, -1:].expand(batch, blocks * block - n)], dim=1)
                grouped = ids.view(batch, 1, blocks, block)
                blocked = later | (grouped.unsqueeze(-1) != grouped.unsqueeze(-2))  # (batch, 1, blocks, L, L)
                if blocks == 1:
                    return tuple(levels) + (ScanLevel(blocked, None),)
                ids = grouped[:, 0, :, -1]  # (batch, blocks): the document each block ends in
                previous = nn.functional.pad(ids[:, :-1], (1, 0), value=-1).view(batch, 1, blocks, 1)
                levels.append(ScanLevel(blocked, grouped != previous))

        return self.cached(("scan", block), build)

    def split(self, chunk: int) -> tuple["Segments", ...]:
        """Consecutive chunks of `chunk` positions (the same documents, numbered as in the whole row)."""

        def build():
            pieces = zip(self.starts.split(chunk, dim=1), self.ids.split(chunk, dim=1))
            return tuple(Segments(starts, ids, self) for starts, ids in pieces)

        return self.cached(("split", chunk), build)

    def gather(self, per_segment: torch.Tensor) -> torch.Tensor:
        """`(batch, count, ...)` -> `(batch, n, ...)`: each position gets its document's entry."""
        return per_segment[self.rows, self.ids]


def per_token(vector: torch.Tensor, segments: Segments | None) -> torch.Tensor:
    """A global vector `(batch, 1, ...)` as it is (it broadcasts over the positions), or the per-document vectors
    `(batch, documents, ...)` of `segments` gathered to their positions, `(batch, n, ...)`."""
    return vector if segments is None else segments.gather(vector)


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype pools are computed in: the tensors' promoted dtype, at least float32."""
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def masked_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """`logits` in at least float32, with the most negative finite float where `mask` is False."""
    logits = logits.to(compute_dtype(logits))
    if mask is not None:
        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
    return logits


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor | None, dim: int) -> torch.Tensor:
    """Softmax of `logits` along `dim` in at least float32, ignoring positions where `mask` is False: the weights
    `pool_weights` gives a pool along `dim`. Masked positions get weight exactly 0, and a row without any real
    position gets weights exactly 0 (not the NaN of `0 / 0`, nor weights that depend on its padding). Returns
    weights of the shape of `logits`."""
    weights = torch.softmax(masked_logits(logits, mask), dim=dim)
    return weights if mask is None else weights * mask


def weighted_sum(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """`sum_i weights[:, i, h] * values[:, i, head h]` per head: `weights` `(batch, n, heads)`, `values` `(batch, n,
    heads * d)` (heads concatenated) -> `(batch, heads, d)`.

    One `bmm` of every head's weights against all features, `(batch, heads, heads * d)`, of which the head-diagonal
    blocks are kept: `heads` times the minimal flops of this (small) product, but no permuted copy of `values` in
    the forward or the backward pass."""
    batch, _, heads = weights.shape
    pooled = torch.bmm(weights.transpose(1, 2), values)  # (batch, heads, heads * d)
    return pooled.view(batch, heads, heads, -1).diagonal(dim1=1, dim2=2).transpose(1, 2)  # (batch, heads, d)


def softmax_pool(logits: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None = None, segments=None):
    """The pool of one block of items: `logits` `(batch, n, heads)`, `values` `(batch, n, heads * d)`, `mask`
    `(batch, n, 1)` bool or None (False: padding).

    Returns the `SoftmaxPool` (`m` `(batch, heads)`, `sums` `(batch, heads, d + 1)`) and the unnormalised weights
    `e^{a_i - m}` `(batch, n, heads)` (0 for padding), from which `pool_weights` gives the softmax. `S` is summed in
    the values' dtype (as `weighted_sum`), the rest in at least float32. With `segments` (`Segments`), one pool per
    document: `m` `(batch, count, heads)`, `sums` `(batch, count, heads, d + 1)`, each item's weight relative to its
    own document's `m` (`segment_softmax_pool`)."""
    if segments is not None:
        return segment_softmax_pool(logits, values, mask, segments)
    logits = masked_logits(logits, mask)
    m = logits.detach().amax(dim=1)  # (batch, heads): padding never sets it
    exps = torch.exp(logits - m.unsqueeze(1))  # (batch, n, heads)
    if mask is not None:
        exps = exps * mask  # exactly 0 for padding, also in a block of padding only
    s = weighted_sum(exps.to(values.dtype), values).to(exps.dtype)  # (batch, heads, d)
    return SoftmaxPool(m, torch.cat([s, exps.sum(dim=1).unsqueeze(-1)], dim=-1)), exps


def segment_softmax_pool(logits: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None, segments: Segments):
    """`softmax_pool` of each document of `segments` on its own, in one pass over the items (the number of
    dispatched ops does not depend on the number of documents): the documents' maxima by a scatter-max, the sums
    `[S, Z]` by one `index_add` of the items' `e^{a_i - m_doc} [x_i, 1]`. Shapes as `softmax_pool` with
    `segments`."""
    logits = masked_logits(logits, mask)
    batch, n, heads = logits.shape
    index = segments.index(heads)  # (batch, n, heads): each item's document
    lowest = logits.new_full((batch, segments.count, heads), torch.finfo(logits.dtype).min)
    m = lowest.scatter_reduce(1, index, logits.detach(), "amax")  # (batch, count, heads)
    exps = torch.exp(logits - m.gather(1, index))  # (batch, n, heads)
    if mask is not None:
        exps = exps * mask
    items = exps.to(values.dtype).unsqueeze(-1) * values.view(batch, n, heads, -1)  # (batch, n, heads, d)
    items = torch.cat([items.to(exps.dtype), exps.unsqueeze(-1)], dim=-1).flatten(0, 1)  # (batch * n, heads, d + 1)
    sums = items.new_zeros(batch * segments.count, *items.shape[1:]).index_add(0, segments.flat, items)
    return SoftmaxPool(m, sums.view(batch, segments.count, heads, -1)), exps


def merge(pool: SoftmaxPool, other: SoftmaxPool) -> SoftmaxPool:
    """The online-softmax merge, the pool of both parts (broadcasting):
    `m' = max(m, m_o)`, `[S, Z]' = e^{m - m'} [S, Z] + e^{m_o - m'} [S, Z]_o` (both rescalings `<= 1`)."""
    m = torch.maximum(pool.m, other.m)
    sums = torch.exp(pool.m - m).unsqueeze(-1) * pool.sums + torch.exp(other.m - m).unsqueeze(-1) * other.sums
    return SoftmaxPool(m, sums)


def merge_all(pools) -> SoftmaxPool:
    """`merge` of an iterable of pools, in order."""
    total = None
    for pool in pools:
        total = pool if total is None else merge(total, pool)
    return total


def finalize(pool: SoftmaxPool) -> torch.Tensor:
    """The pooled vector `S / Z` `(..., d)`; exactly 0, with 0 gradient, where no real item was pooled (`Z = 0`)."""
    norm = pool.z
    return pool.s * torch.where(norm > 0, norm, 1).reciprocal().unsqueeze(-1)


def pool_weights(pool: SoftmaxPool, exps: torch.Tensor, segments: Segments | None = None) -> torch.Tensor:
    """The softmax weights `e^{a_i - m} / Z` `(batch, n, heads)` of a `softmax_pool`'s items from its `exps`
    (relative to `pool.m`; with `segments`, to their document's); weights 0 in a row (document) without any real
    item."""
    norm = pool.z.unsqueeze(1) if segments is None else segments.gather(pool.z)  # (batch, 1 or n, heads)
    return exps / torch.where(norm > 0, norm, 1)


def shift_right(pools: SoftmaxPool) -> SoftmaxPool:
    """Item `t` of the result is item `t - 1` of `pools` (`m` `(..., n)`, `sums` `(..., n, E)`), item 0 the empty
    pool: an inclusive scan made exclusive. (Padded in front, then cut: no intermediate of `n - 1` items, a size that
    a tracer with a symbolic `n` would have to rule out being 1.)"""
    lowest = torch.finfo(pools.sums.dtype).min
    m = nn.functional.pad(pools.m, (1, 0), value=lowest)[..., :-1]
    return SoftmaxPool(m, nn.functional.pad(pools.sums, (0, 0, 1, 0))[..., :-1, :])


def prefix_pools_within_blocks(items: SoftmaxPool, blocked: torch.Tensor | None = None) -> SoftmaxPool:
    """Inclusive prefix pools inside each block of `L` items, `m` `(B, H, blocks, L)`, `sums` `(B, H, blocks, L, E)`:
    `m'_t = max_{j<=t} m_j` and `sums'_t = sum_{j<=t} e^{m_j - m'_t} sums_j` (j, t in one block; every weight
    `<= 1`), one batched `(L x L) @ (L x E)` matmul. With `blocked` `(B, 1, blocks, L, L)` bool (`ScanLevel.blocked`
    of packed documents), only the items `j` of a block where `blocked[..., t, j]` is False (`j <= t` in `t`'s own
    document); by default `blocked` is `j > t`.

    Both come from one `(B, H, blocks, L, L)` matrix of pairs, `[t, j] = m_j` where `j` pools into `t` and `-inf`
    elsewhere: its row maxima are the running maxima `m'_t`, exactly what `cummax` gives (a masked `amax`, which
    every exporter maps, where `cummax` has no ONNX operator; in the `L x L` layout the weights have anyway), and
    `e^{pairs - m'_t}` are the weights, exactly 0 where blocked. Row `t` always holds `j = t`, so no row is all
    `-inf`. The maxima carry no gradient: they only rescale numerator and denominator alike, so the pool's gradient
    stays exact."""
    length = items.m.shape[-1]
    if blocked is None:
        blocked = torch.ones(length, length, dtype=torch.bool, device=items.m.device).triu(1)  # [t, j]: j > t
    pairs = items.m.unsqueeze(-2).masked_fill(blocked, -torch.inf)  # (B, H, blocks, L, L): [t, j] = m_j or -inf
    running_max = pairs.detach().amax(dim=-1)  # (B, H, blocks, L)
    weights = torch.exp(pairs - running_max.unsqueeze(-1))  # (B, H, blocks, L, L)
    return SoftmaxPool(running_max, weights @ items.sums)  # sums: (B, H, blocks, L, E)


def to_blocks(items: SoftmaxPool, block: int, blocks, traced: bool = False) -> SoftmaxPool:
    """`items` (`m` `(B, H, n)`, `sums` `(B, H, n, E)`) as `blocks` consecutive blocks of `block` items, `m` `(B, H,
    blocks, L)`, `sums` `(B, H, blocks, L, E)`, padded at the end with empty pools (`m` the lowest float, `sums` 0):
    a pad to `blocks * block` items and a view; `traced` (`n` and `blocks` symbolic, `blocks * block < n + 2 * block`):
    a gather by block index from the items padded by `2 * block`, which needs no proof that a padded length divides
    into blocks (one a tracer cannot make for a symbolic length)."""
    lowest = torch.finfo(items.sums.dtype).min
    if traced:
        index = torch.arange(blocks, device=items.m.device).unsqueeze(-1) * block
        index = index + torch.arange(block, device=items.m.device)  # (blocks, L): item positions
        m = nn.functional.pad(items.m, (0, 2 * block), value=lowest)[..., index]
        return SoftmaxPool(m, nn.functional.pad(items.sums, (0, 0, 0, 2 * block))[..., index, :])
    extra = blocks * block - items.m.shape[-1]
    m = nn.functional.pad(items.m, (0, extra), value=lowest).unflatten(-1, (blocks, block))
    return SoftmaxPool(m, nn.functional.pad(items.sums, (0, 0, 0, extra)).unflatten(-2, (blocks, block)))


def from_blocks(pools: SoftmaxPool, n, traced: bool) -> SoftmaxPool:
    """The first `n` items of blocked `pools` (`to_blocks`' layout) as `m` `(B, H, n)`, `sums` `(B, H, n, E)`: a view
    and a slice, or (`traced`, `n` symbolic) a gather, which needs no proof that `n` items fit."""
    m, sums = pools.m.flatten(-2), pools.sums.flatten(-3, -2)
    if not traced:
        return SoftmaxPool(m[..., :n], sums[..., :n, :])
    index = torch.arange(n, device=m.device)
    return SoftmaxPool(m.index_select(-1, index), sums.index_select(-2, index))


def exported_block_counts(n, block: int) -> tuple:
    """The block counts of a `prefix_scan` of `n` items traced with a symbolic `n`: level `k` (`0 ..
    EXPORTED_SCAN_LEVELS - 2`; the last level is one block) cuts its items into `q + 2` blocks, `q = n //
    block^(k+1)`. Each count is one floor division of `n` (nested ones make the tracer's symbolic arithmetic slow)
    and never 1 (a size a tracer specialises on). The level has between `block q` and `block q + block + 1` items
    (`n` at level 0, then the `n // block^k + 2` totals of the level below), so its `q + 2` blocks cover them, and
    their last position, `block (q + 2) - 1`, lies within the items padded by `2 block` (`to_blocks`)."""
    return tuple(n // block ** (k + 1) + 2 for k in range(EXPORTED_SCAN_LEVELS - 1))


def prefix_scan(
    items: SoftmaxPool, block: int, plan: tuple[ScanLevel, ...] | None = None, counts: tuple | None = None
) -> SoftmaxPool:
    """Inclusive prefix pools (the `merge` of items `0..t` for every `t`) of `items` (`m` `(B, H, n)`, `sums`
    `(B, H, n, E)`); with the `plan` of packed documents (`Segments.scan_plan(block)`, one `ScanLevel` per level), of
    the items `j <= t` of `t`'s own document only: a segmented scan.

    Two-level scan, applied recursively: prefix pools inside blocks of `block` items; the blocks' totals scanned the
    same way (`ceil(log_block(n))` levels in all, so the number of dispatched ops grows with `log n`, not `n`, nor
    with the number of documents); each block's exclusive carry merged into its items (with a `plan`, into the items
    of the document the carry ends in: elsewhere its max is `-inf`, so that it weighs exactly 0). Linear work and
    memory, forward and backward.

    `counts` (`exported_block_counts`, for a graph traced with a symbolic length, whose structure cannot follow `n`)
    fixes the levels instead: level `k` cuts its items into `counts[k]` blocks (the last of which hold padding only)
    and the level after the last count is one block of all the items left, whatever their number. The result is the
    same at any length (the added blocks and levels pool only empty items, which weigh exactly 0); the work stays
    linear while that last block is short (`EXPORTED_SCAN_LEVELS`). (Not with a `plan`, whose levels follow the
    boundaries.)
    """
    n, traced = items.m.shape[-1], counts is not None
    last = len(counts) == 0 if traced else n <= block
    if traced and last:  # one block of every item
        blocked = SoftmaxPool(items.m.unsqueeze(-2), items.sums.unsqueeze(-3))
    else:
        blocked = to_blocks(items, block, counts[0] if traced else (n + block - 1) // block, traced)
    level = None if plan is None else plan[0]
    scanned = prefix_pools_within_blocks(blocked, None if level is None else level.blocked)  # (B, H, blocks, L)
    if not last:
        totals = SoftmaxPool(scanned.m[..., -1], scanned.sums[..., -1, :])  # (B, H, blocks)
        totals = prefix_scan(totals, block, None if plan is None else plan[1:], None if counts is None else counts[1:])
        carry = shift_right(totals)  # (B, H, blocks): blocks 0..b-1
        carry = SoftmaxPool(carry.m.unsqueeze(-1), carry.sums.unsqueeze(-2))
        if level is not None:  # the carry reaches the items of the document the previous block ends in
            carry = SoftmaxPool(carry.m.masked_fill(level.apart, -torch.inf), carry.sums)  # m: (B, H, blocks, L)
        scanned = merge(carry, scanned)
    return from_blocks(scanned, n, traced)


def prefix_softmax_pool(
    logits: torch.Tensor,
    values: torch.Tensor,
    keep: torch.Tensor | None = None,
    state: SoftmaxPool | None = None,
    chunk_size: int | None = None,
    recompute_in_backward: bool = False,
    segments: Segments | None = None,
    last_states: int | None = None,
) -> tuple[torch.Tensor, SoftmaxPool]:
    r"""Prefix softmax pooling, per head: `G_t = sum_{j<=t} e^{a_j} x_j / sum_{j<=t} e^{a_j}` over real tokens.

    Args:
        logits: `a`, `(batch, seq, heads)`.
        values: `x`, `(batch, seq, heads, head_dim)`.
        keep: `(batch, seq)` bool, False for padding (weight 0). A prefix without any real token pools to exactly 0,
            with exactly 0 gradient (no `0 / tiny` division whose backward overflows under a loss scale).
        state: the pool of the tokens before this call (`m` `(batch, heads)`, `sums` `(batch, heads, head_dim + 1)`).
        chunk_size: block length of the scan (default `CAUSAL_CHUNK_SIZE`); any value gives the same result.
        recompute_in_backward: keep only the inputs for the backward pass and recompute the pool there (activation
            memory `O(seq * hidden)` instead of `O(seq * heads * (head_dim + chunk_size))`, one more pool forward).
        segments: the packed documents of these `seq` positions (`Segments`): `G_t` pools only `t`'s own
            document (the scan's masks come from `segments.scan_plan`), and `state` reaches only the positions of
            the document in progress before position 0 (`segments.continues`).
        last_states: return the pools after each of the last `min(last_states, seq)` tokens instead of the last one
            only, oldest first, with a position axis (`m` `(batch, heads, k)`, `sums` `(batch, heads, k, head_dim +
            1)`): the states a decoding cache keeps to roll back to (`FastformerCache.activate_past_recording`).

    Returns the pooled vectors `(batch, seq, heads, head_dim)` and the pool after the last token (see `last_states`),
    computed in the inputs' dtype upcast to at least float32 (float64 stays float64).

    Computed as an online-softmax `prefix_scan` of one pool per token: forward and backward linear in `seq`,
    `O(log seq)` dispatched ops, no Python loop over the sequence, never a `seq x seq` matrix. One token (decoding)
    is the same computation on a single item merged into `state`, so the state keeps a constant size.
    """
    if recompute_in_backward and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(
            prefix_softmax_pool,
            logits,
            values,
            keep,
            state,
            chunk_size=chunk_size,
            recompute_in_backward=False,
            segments=segments,
            last_states=last_states,
            use_reentrant=False,
        )
    with no_autocast(values.device.type):
        batch, seq = logits.shape[:2]
        dtype = compute_dtype(logits, values)
        if keep is None:
            keep = torch.ones(batch, seq, dtype=torch.bool, device=logits.device)
        # One pool per token: m = a_j (lowest for padding, which then never sets a max), sums = [x_j, 1] (0 for
        # padding).
        m = logits.to(dtype).masked_fill(~keep.unsqueeze(-1), torch.finfo(dtype).min).transpose(1, 2)  # (B, H, seq)
        sums = nn.functional.pad(values.to(dtype), (0, 1), value=1.0) * keep.to(dtype)[:, :, None, None]
        # sums: (B, H, seq, d + 1), copied (`.contiguous()` would check whether one token needs no copy: an export
        # would specialise on seq != 1)
        pools = SoftmaxPool(m, sums.transpose(1, 2).clone(memory_format=torch.contiguous_format))
        if state is None or seq > 1:  # a decoding step's one item is its own prefix: only the merge into `state`
            block = CAUSAL_CHUNK_SIZE if chunk_size is None else chunk_size
            plan = None if segments is None else segments.scan_plan(block)
            counts = exported_block_counts(seq, block) if plan is None and exporting() else None
            pools = prefix_scan(pools, block, plan, counts)
        if state is not None:
            state = SoftmaxPool(state.m.to(dtype).unsqueeze(-1), state.sums.to(dtype).unsqueeze(-2))
            if segments is not None:  # the tokens before reach the document in progress before position 0 only
                before = segments.continues.unsqueeze(1)  # (batch, 1, seq)
                state = SoftmaxPool(
                    torch.where(before, state.m, torch.finfo(dtype).min), state.sums * before[..., None]
                )
            pools = merge(state, pools)
        pooled = finalize(pools)  # (batch, heads, seq, head_dim)
        tail = -1 if last_states is None else slice(-last_states, None)
        last = SoftmaxPool(pools.m[:, :, tail].clone(), pools.sums[:, :, tail].clone())  # not a view of the whole scan
    return pooled.transpose(1, 2), last
