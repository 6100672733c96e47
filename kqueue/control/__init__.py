"""Operations on queues that are not the worker's: dead letters (and, later, status and cancel)."""
