"""barelab's public names: each resolves, and each is documented."""

import inspect

import pytest

import barelab


@pytest.mark.parametrize("name", barelab.__all__)
def test_public_name_resolves_and_has_a_docstring(name):
    value = getattr(barelab, name)
    assert inspect.getdoc(value), f"barelab.{name} has no docstring"
    assert name in dir(barelab)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        barelab.no_such_thing
