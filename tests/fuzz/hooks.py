"""Schemathesis hooks for Glimpse, for the pytest suite and for the CLI
(`SCHEMATHESIS_HOOKS=tests.fuzz.hooks schemathesis run ...`)."""

from __future__ import annotations

import schemathesis

from glimpse.services import patch

# The JSON-patch media types carry JSON; Schemathesis knows no serializer for them by name.
schemathesis.serializer.alias(list(patch.MEDIA_TYPES), "application/json")
