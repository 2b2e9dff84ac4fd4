"""Item 8: a name is one path component up to its very end (``\\Z``): a trailing newline is refused."""
import pytest


@pytest.mark.parametrize("args", [
    ["encode", "--run", "r\n"],
    ["score", "--run", "ros", "--tag", "t\n"],
    ["train", "--run", "ros", "--curriculum", "none", "--epochs", "1", "--variant", "v\n"],
])
def test_a_newline_in_a_name_exits_2(cli, ros, args):
    before = sorted(p.name for p in ros.parent.rglob("*"))
    r = cli(*args)
    assert r.exit_code == 2 and "invalid" in r.stderr and "Traceback" not in r.output, r.output
    assert sorted(p.name for p in ros.parent.rglob("*")) == before
