"""Local SQLite stores: the embedded history store (default historian) and the dead-letter store."""

from adapters.store.batching import BufferedWriter, WriterClosed
from adapters.store.checks import check_sample
from adapters.store.deadletter import DeadLetterStore, reason_key

__all__ = ["BufferedWriter", "DeadLetterStore", "WriterClosed", "check_sample", "reason_key"]
