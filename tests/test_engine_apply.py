"""The application plan: derived from W's sparsity, equal to the dense product whatever it chooses."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lrr_service.core.apply import ApplyPlan, coupled_components


@st.composite
def block_weights(draw):
    n = draw(st.integers(1, 40))
    order = np.array(draw(st.permutations(range(n))))
    sizes = []
    while sum(sizes) < n:
        sizes.append(draw(st.integers(1, n - sum(sizes))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    W = np.zeros((n, n))
    start = 0
    for size in sizes:
        idx = order[start : start + size]
        start += size
        if size > 1:
            W[np.ix_(idx, idx)] = rng.standard_normal((size, size)) * 0.2
    np.fill_diagonal(W, 0.0)
    contiguous = draw(st.booleans())
    if contiguous:
        back = np.argsort(order)
        W = W[np.ix_(back, back)]
    return W, rng.standard_normal((draw(st.integers(1, 50)), n))


@settings(max_examples=60, deadline=None)
@given(block_weights())
def test_plan_equals_dense_product_for_any_block_structure(case):
    W, X = case
    n = W.shape[0]
    for dtype, tolerance in ((np.float64, 1e-12), (np.float32, 1e-5)):
        plan = ApplyPlan(W, n, dtype)
        y = plan(X.astype(dtype))
        assert y.dtype == dtype
        np.testing.assert_allclose(y, X @ (np.eye(n) - W), atol=tolerance * 10, rtol=tolerance)


def test_plan_kind_follows_the_sparsity():
    rng = np.random.default_rng(0)
    assert ApplyPlan(None, 8, np.float32).kind == "identity"
    assert ApplyPlan(np.zeros((8, 8)), 8, np.float32).kind == "identity"
    full = rng.standard_normal((8, 8))
    assert ApplyPlan(full, 8, np.float32).kind == "dense"
    blocks = np.zeros((16, 16))
    for s in range(0, 16, 4):
        blocks[s : s + 4, s : s + 4] = 1.0
    assert ApplyPlan(blocks, 16, np.float32).kind == "blocks"


def test_coupled_components_join_through_chains():
    W = np.zeros((6, 6))
    W[0, 3] = 1.0  # 0-3
    W[5, 3] = 1.0  # 3-5, so {0, 3, 5}
    W[2, 4] = 1.0  # {2, 4}; 1 is alone
    components = [c.tolist() for c in coupled_components(W)]
    assert components == [[0, 3, 5], [2, 4]]
