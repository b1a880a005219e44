"""Power-loss scenarios (issue #8): a write-back cache layer, cut points, invariants after restart."""
