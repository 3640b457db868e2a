"""Upload sessions: one record per write of image data into a store, apart from the image.

A session names the store and key it writes, what it is for (`upload` of `/file`, `stage`,
`import`, `copy` to another store) and when it last proved to be alive. It is opened in the same
registry transaction as the image change that starts the write, and closed in the one that
settles it (the data becomes a location, or is given to a deletion job), so the registry always
knows of every byte in flight. A session whose heartbeat stops is reaped by any server: its data
is discarded and the image, if the session held it (`Image.upload_id`), goes back to queued.
Several sessions can write for one image at once (a copy to several stores).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime

from glimpse.domain.images import Location


class Purpose(enum.StrEnum):
    UPLOAD = "upload"
    STAGE = "stage"
    IMPORT = "import"
    COPY = "copy"


@dataclass(frozen=True)
class UploadSession:
    id: str
    image_id: str
    location: Location
    purpose: Purpose
    heartbeat: datetime

    @classmethod
    def open(cls, image_id: str, store: str, purpose: Purpose, now: datetime,
             key: str | None = None) -> UploadSession:
        """A new session writing under its own key (`<image>.<session>` unless given), so a
        late writer can never clobber a newer one's data."""
        session_id = str(uuid.uuid4())
        return cls(session_id, image_id, Location(store, key or f"{image_id}.{session_id}"),
                   purpose, now)
