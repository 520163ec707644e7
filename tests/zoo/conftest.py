import pytest

from ..conftest import TINY_SPEC


@pytest.fixture()
def tiny_spec(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SPEC)
    return path
