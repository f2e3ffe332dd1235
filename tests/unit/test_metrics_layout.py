"""The counter block's layout constants agree with the tuples they are written for."""

from pronghorn import metrics


def test_layout() -> None:
    assert metrics.METHODS[metrics.OTHER_METHOD] == b"other"
    assert metrics.REQUESTS == metrics.HISTOGRAM + len(metrics.BUCKETS) + 1
    assert metrics.CELLS == metrics.REQUESTS + len(metrics.METHODS) * metrics.STATUSES


def test_a_request_is_counted_once_flushed() -> None:
    block = metrics.CounterBlock()
    block.request(b"GET", 200, 0.003)
    block.request(b"BREW", 418, 30.0)
    assert block.cells[metrics.REQUESTS + 200] == 0  # not before a flush
    block.flush()
    cells = block.cells
    assert cells[metrics.REQUESTS + 200] == 1
    assert cells[metrics.REQUESTS + metrics.OTHER_METHOD * metrics.STATUSES + 418] == 1
    assert cells[metrics.HISTOGRAM] == 1 and cells[metrics.HISTOGRAM + len(metrics.BUCKETS)] == 1  # +Inf
    assert cells[metrics.DURATION_SUM_US] == 30_003_000
    block.close()
