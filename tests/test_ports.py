"""The tests' loopback ports: each pytest-xdist worker draws from its own slice, so two workers never
hand out the same port (testkit.instance.port_range)."""
from testkit.instance import PORT_RANGE, port_range


def test_each_worker_has_its_own_slice_of_the_range():
    slices = [port_range({"PYTEST_XDIST_WORKER": f"gw{i}", "PYTEST_XDIST_WORKER_COUNT": "3"}) for i in range(3)]
    assert all(PORT_RANGE[0] <= low < high <= PORT_RANGE[1] for low, high in slices)
    assert all(a[1] < b[0] for a, b in zip(slices, slices[1:]))  # ordered, none overlapping


def test_outside_xdist_or_with_unusable_values_the_whole_range():
    assert port_range({}) == PORT_RANGE
    for worker, count in (("gw3", "3"), ("master", "2"), ("gwx", "2"), ("gw0", ""), ("gw-1", "2")):
        assert port_range({"PYTEST_XDIST_WORKER": worker, "PYTEST_XDIST_WORKER_COUNT": count}) == PORT_RANGE
