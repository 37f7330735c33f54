"""The one exception type a user should ever see from a bad configuration, and the errors of
the file system that are the user's to fix (a full disk, a read-only folder)."""
from __future__ import annotations

import errno

# write failures that a person fixes by freeing space or pointing at another folder
UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


class ConfigError(ValueError):
    """A configuration value that cannot work; the message is one sentence naming the key."""


def unwritable(err: BaseException) -> str | None:
    """The sentence for a file the system refused to write (disk full, read-only), else None."""
    if not isinstance(err, OSError) or err.errno not in UNWRITABLE:
        return None
    where = err.filename or "a file"
    return f"{where} could not be written ({err.strerror}): free some space there or use a folder you can write to."
