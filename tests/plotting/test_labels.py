"""Natural sort order for category labels."""

from genevae.plotting.labels import natural_sorted


def test_natural_sorted_compares_numbers_as_numbers():
    assert natural_sorted(["10", "2", "1", "0", 2]) == ["0", "1", "2", "10"]
    assert natural_sorted(["cluster 10", "cluster 9", "B", "a"]) == [
        "a",
        "B",
        "cluster 9",
        "cluster 10",
    ]
