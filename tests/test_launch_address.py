"""Address selection on this machine's own interfaces (the cross-host cases run on virtual
hosts in test_launch_cluster.py)."""

import pytest
from gradwire.launch.address import choose, ipv4_addresses
from gradwire.launch.errors import LaunchError


def test_single_host_job_uses_loopback():
    c = choose("127.0.0.1", False, {})
    assert (c.ifname, c.address) == ("lo", "127.0.0.1")


def test_loopback_master_is_refused_for_a_multi_host_job():
    with pytest.raises(LaunchError, match="resolves to loopback .* spans several hosts"):
        choose("localhost", True, {})


def test_override_is_checked():
    with pytest.raises(LaunchError, match=r"GRADWIRE_SOCKET_IFNAME=nope0: no such interface .*lo"):
        choose("127.0.0.1", False, {"GRADWIRE_SOCKET_IFNAME": "nope0"})
    with pytest.raises(LaunchError, match="loopback interface"):
        choose("127.0.0.1", True, {"GRADWIRE_SOCKET_IFNAME": "lo"})
    c = choose("127.0.0.1", False, {"GRADWIRE_SOCKET_IFNAME": "lo"})
    assert (c.ifname, c.reason) == ("lo", "GRADWIRE_SOCKET_IFNAME")


def test_unresolvable_master_is_named():
    with pytest.raises(
        LaunchError, match="cannot resolve the master address 'no-such-host.invalid'"
    ):
        choose("no-such-host.invalid", True, {})


def test_interfaces_are_listed():
    assert ipv4_addresses().get("lo") == "127.0.0.1"
