"""Registry: problems come from entry points (also third-party ones); duplicates are errors."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from sciml.errors import UsageError
from sciml.registry import GROUP, Registry, RegistryError

from .plugin_util import make_plugin


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    make_plugin(tmp_path, "thirdparty", {"toy-decay": ("decay",), "toy-growth": ()})
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_third_party_entry_point_is_found(plugin):
    reg = Registry()
    assert {"toy-decay", "toy-growth"} <= set(reg.names())
    assert reg.get("decay") is reg.get("toy-decay")
    assert reg.get("TOY-DECAY").name == "toy-decay"  # names are case-insensitive


def test_unknown_name_suggests_closest(plugin):
    with pytest.raises(UsageError, match=r"unknown problem 'toy-decy'; did you mean 'toy-decay'\? \(see: sciml list\)"):
        Registry().get("toy-decy")


def test_unknown_name_without_match():
    with pytest.raises(UsageError, match="unknown problem 'zzzzzz' \\(see: sciml list\\)"):
        Registry(eps=[]).get("zzzzzz")


def test_duplicate_names_are_an_error(plugin, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    make_plugin(other, "clash", {"toy-decay": ()})
    eps = [
        EntryPoint("toy-decay", "thirdparty_mod:P0", GROUP),
        EntryPoint("toy-decay", "clash_mod:P0", GROUP),
    ]
    import sys

    sys.path.insert(0, str(other))
    try:
        with pytest.raises(RegistryError, match="duplicate problem name 'toy-decay'"):
            Registry(eps=eps)
    finally:
        sys.path.remove(str(other))


def test_alias_colliding_with_a_name_is_an_error(plugin, tmp_path_factory):
    other = tmp_path_factory.mktemp("alias")
    make_plugin(other, "aliasclash", {"something": ("toy-growth",)})
    import sys

    sys.path.insert(0, str(other))
    try:
        eps = [
            EntryPoint("toy-growth", "thirdparty_mod:P1", GROUP),
            EntryPoint("something", "aliasclash_mod:P0", GROUP),
        ]
        with pytest.raises(RegistryError, match="duplicate problem name 'toy-growth'"):
            Registry(eps=eps)
    finally:
        sys.path.remove(str(other))


def test_broken_entry_point_names_itself():
    with pytest.raises(RegistryError, match="cannot load problem entry point 'ghost'"):
        Registry(eps=[EntryPoint("ghost", "no_such_module_xyz:Thing", GROUP)])


def test_entry_point_must_be_a_problem(plugin):
    with pytest.raises(RegistryError, match="is not a ProblemSpec subclass"):
        Registry(eps=[EntryPoint("bad", "thirdparty_mod:ProblemSpec.describe", GROUP)])


def test_entry_point_name_must_match_problem_name(plugin):
    with pytest.raises(RegistryError, match="must match"):
        Registry(eps=[EntryPoint("other-name", "thirdparty_mod:P0", GROUP)])


def test_params_resolve_parse_and_validate(plugin):
    cls = Registry().get("toy-decay")
    assert cls.resolve_params() == {"k": 1.0, "n": 2}
    assert cls.resolve_params({"k": "4/2", "n": "3"}) == {"k": 2.0, "n": 3}
    with pytest.raises(UsageError, match=r"no parameter 'q' \(valid: k, n\)"):
        cls.resolve_params({"q": "1"})
    with pytest.raises(UsageError, match=r"k=11 is out of range: valid \[0, 10\]"):
        cls.resolve_params({"k": "11"})
    with pytest.raises(UsageError, match="must be an integer"):
        cls.resolve_params({"n": "2.5"})
    with pytest.raises(UsageError, match="cannot read 'abc' as a number"):
        cls.resolve_params({"k": "abc"})
    with pytest.raises(UsageError, match="NaN"):
        cls.resolve_params({"k": "nan"})
