"""Query parameters shared by every list answer, bounded in the OpenAPI document and in the code."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

# Past any list chiso answers (3,321 units; the open dossiers of a nation) and far inside the 64-bit
# integers both stores take: a larger offset is a 422 naming it, never a database error.
MAX_OFFSET = 10_000_000

Limit = Annotated[int, Query(ge=1, le=5000, description="Items in this page, at most 5,000.", examples=[100])]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items skipped before this page, at most 10,000,000.", examples=[0])]
