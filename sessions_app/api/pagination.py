"""Cursor pagination: a page costs one indexed range scan, never a COUNT(*) of the table."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination


class StrictCursorPagination(CursorPagination):
    """A page size out of range is a 400 naming the limit, not silently clamped."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 100

    def get_page_size(self, request: Any) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw in (None, ""):
            return int(self.page_size)
        try:
            size = int(raw)
        except (TypeError, ValueError):
            raise ValidationError({"page_size": ["A whole number is required."]}) from None
        if not 1 <= size <= int(self.max_page_size):
            raise ValidationError({"page_size": [f"Must be between 1 and {self.max_page_size}."]})
        return size

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=int(self.max_page_size))
                parameter["description"] = (
                    f"Results per page, 1-{self.max_page_size} (default {self.page_size})."
                )
        return parameters


class SessionCursorPagination(StrictCursorPagination):
    ordering = "-last_activity_at"


class MessageCursorPagination(StrictCursorPagination):
    ordering = "created_at"
