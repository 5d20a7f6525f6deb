"""Applying directory records to members (the sync engine). See issue 4."""


def change_event_apply(*, event_id: int) -> None:
    raise NotImplementedError("the sync engine is not written yet")
