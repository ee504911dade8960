"""Messages say each thing once: a runtime message that names its resource again loses that
prefix, since every output shows it after the resource's address (issue #16)."""

from __future__ import annotations

from substratus.engine.apply import said_once


def test_a_leading_address_is_dropped_and_nothing_else() -> None:
    assert said_once("model.x: the job goes on as pid 7", "model.x") == "the job goes on as pid 7"
    assert said_once("the job goes on as pid 7", "model.x") == "the job goes on as pid 7"
    assert said_once("model.xy: other", "model.x") == "model.xy: other"
    assert said_once("waits for model.x: reasons", "model.x") == "waits for model.x: reasons"
