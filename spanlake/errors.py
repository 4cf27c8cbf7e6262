"""The one exception tree: every error spanlake raises on purpose derives from SpanlakeError.

The CLI prints these as one line (a traceback only with --debug); anything else is a bug.
"""


class SpanlakeError(Exception):
    """Base class of spanlake's own errors."""


class ConfigError(SpanlakeError):
    """A setting or flag has a value spanlake cannot use."""


class NothingConfigured(ConfigError):
    """The jobs config file registers nothing for a job (no file, or no entries of its kind)."""


class BrokerError(SpanlakeError):
    """The local Kafka broker could not be fetched, started, reached or stopped."""


class DecodeError(SpanlakeError, ValueError):
    """A Kafka message is not a decodable OTLP trace request (becomes a dead letter)."""


class TableError(SpanlakeError):
    """A Delta table is missing, unreadable, or does not match its spec."""


class StorageError(SpanlakeError):
    """Reading or writing a table failed in its storage (a full disk, an object store's 503): ingest retries."""


class CommitConflict(SpanlakeError):
    """A Delta commit lost a race (another writer moved the table or its offsets)."""


class FilterError(SpanlakeError, ValueError):
    """A trace search filter does not parse or names an unknown field."""


class ScoringError(SpanlakeError, ValueError):
    """A scorer, its results, or the data handed to an evaluation cannot be used as given."""
