"""Which groups' commits the status view counts (view/reading.py `counted_groups`)."""

from __future__ import annotations

from kqueue.view.reading import GROUP_GRACE, counted_groups


def test_groups_with_members_count_and_groups_never_seen_with_members_do_not() -> None:
    assert counted_groups({"email": True, "email-old": False}, {}, now=100.0) == ["email"]


def test_a_group_that_just_lost_its_members_counts_for_the_grace_then_not() -> None:
    members = {"email": False}
    assert counted_groups(members, {"email": 100.0}, now=100.0 + GROUP_GRACE) == ["email"]
    assert counted_groups(members, {"email": 100.0}, now=100.0 + GROUP_GRACE + 0.1) == []


def test_no_groups_none_counted() -> None:
    assert counted_groups({}, {"gone": 1.0}, now=2.0) == []
