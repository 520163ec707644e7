"""Where tasks run: the one device check every entry point uses."""

import pytest
import torch

from modelprint.errors import ParameterError
from modelprint.parallel import check_device


def test_a_device_is_checked_once_the_same_way_everywhere(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert check_device("cpu") == "cpu"
    with pytest.raises(ParameterError, match="`device` 'cuda:1' asked for, but this machine has no CUDA device") as e:
        check_device("cuda:1")
    assert e.value.params == ("device",)
    with pytest.raises(ParameterError, match="node-3 has no CUDA device; build on cpu"):
        check_device("cuda", "node-3", "build on cpu")
    for wrong in ("gpu", "cuda:x", "CPU"):
        with pytest.raises(ParameterError, match="must be cpu or cuda"):
            check_device(wrong)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert check_device("cuda:0") == "cuda:0"
