"""The tests' own server helpers: ports drawn where no outgoing connection can take them."""

import pytest

from tests import servers


@pytest.mark.parametrize(
    "kernel_range, expected",
    [
        ("32768\t60999\n", range(20768, 32768)),  # Linux's default: below it
        ("1024\t60999\n", range(61000, 65536)),  # no room below: above it
        ("1024\t65535\n", range(0)),  # no room either side: the kernel's own choice
        ("", range(0)),  # unreadable
    ],
)
def test_ports_are_drawn_outside_the_kernels_ephemeral_range(tmp_path, monkeypatch, kernel_range, expected):
    path = tmp_path / "ip_local_port_range"
    path.write_text(kernel_range)
    monkeypatch.setattr(servers, "_RANGE", path)
    assert servers.outside_ephemeral_range() == expected
    ports = servers.free_ports(3)
    assert len(set(ports)) == 3  # held until all are drawn: never the same one twice
    assert all(p in expected for p in ports) if expected else all(0 < p < 65536 for p in ports)


def test_a_missing_range_file_falls_back_to_the_kernels_choice(tmp_path, monkeypatch):
    monkeypatch.setattr(servers, "_RANGE", tmp_path / "absent")
    assert servers.outside_ephemeral_range() == range(0)
    assert 0 < servers.free_port() < 65536
