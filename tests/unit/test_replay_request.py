"""The replay request's `all` is a JSON boolean: a truthy string or number is refused, never a
replay of the whole DLQ."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kqueue.api.models import ReplayRequest


@pytest.mark.parametrize("value", ["yes", "true", "false", "no", 1, 0, None, [], {}])
def test_replay_all_takes_only_a_json_boolean(value: object) -> None:
    with pytest.raises(ValidationError):
        ReplayRequest.model_validate({"all": value})


def test_replay_all_true_and_its_default() -> None:
    assert ReplayRequest.model_validate({"all": True}).all is True
    assert ReplayRequest.model_validate({"all": False}).all is False
    assert ReplayRequest.model_validate({"task_ids": ["a/b"]}).all is False
