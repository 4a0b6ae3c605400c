"""Browsing-session events: validate the raw record, enrich it, or explain why it is bad.

A record's data must be one JSON object of this shape (the streaming lab's, plus a timestamp)::

    {"session_id": "...", "customer_number": 103, "city": "Nantes", "country": "France",
     "credit_limit": 21000.00, "event_timestamp": "2024-01-01T23:59:58.123Z",
     "browse_history": [{"product_code": "S10_1678", "quantity": 2, "in_shopping_cart": true}]}

``parse_event`` raises ``InvalidEvent`` whose message is the reason stored in the errors
dataset; ``enrich`` adds the derived columns. Both are pure, so a replayed batch produces
exactly the same rows.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

#: how much of a bad record's text the errors dataset keeps readable (the exact bytes are kept in base64)
ERROR_TEXT_CHARS = 2000
CREDIT_LIMIT_SCALE = Decimal("0.01")


class InvalidEvent(ValueError):
    """A record that is not a valid browsing-session event; the message is the reason."""


@dataclass(frozen=True)
class StreamRecord:
    """One Kinesis record as read: where it sits in the stream, when it arrived, its bytes."""

    shard_id: str
    sequence: str
    partition_key: str
    arrival: datetime
    data: bytes

    @property
    def size(self) -> int:
        """Bytes counted against a batch's size limit (data plus partition key, as Kinesis counts)."""
        return len(self.data) + len(self.partition_key.encode())


def _require(obj: Mapping[str, Any], name: str, types: tuple[type, ...], what: str, where: str = "") -> Any:
    if name not in obj or obj[name] is None:
        raise InvalidEvent(f"missing field '{where}{name}'")
    value = obj[name]
    if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
        raise InvalidEvent(f"field '{where}{name}' must be {what}, got {type(value).__name__} {value!r:.60}")
    return value


def parse_timestamp(value: Any, *, field: str = "event_timestamp") -> datetime:
    """An ISO-8601 timestamp with a zone (``Z`` or an offset), or epoch milliseconds; UTC result."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
        except (OverflowError, OSError, ValueError) as e:
            raise InvalidEvent(f"field '{field}' {value!r} is not a valid epoch-milliseconds timestamp") from e
    if not isinstance(value, str):
        raise InvalidEvent(f"field '{field}' must be an ISO-8601 string, got {type(value).__name__}")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise InvalidEvent(f"field '{field}' {value!r:.60} is not an ISO-8601 timestamp") from e
    if ts.tzinfo is None:
        raise InvalidEvent(f"field '{field}' {value!r:.60} has no time zone")
    return ts.astimezone(timezone.utc)


def parse_event(data: bytes) -> dict[str, Any]:
    """Decode and validate one record's data; return the event with typed values."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidEvent(f"not UTF-8 text: {e}") from e
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidEvent(f"not JSON: {e}") from e
    if not isinstance(obj, dict):
        raise InvalidEvent(f"not a JSON object but a {type(obj).__name__}")
    session_id = _require(obj, "session_id", (str,), "a string")
    if not session_id.strip():
        raise InvalidEvent("field 'session_id' is empty")
    customer = _require(obj, "customer_number", (int,), "an integer")
    city = _require(obj, "city", (str,), "a string")
    country = _require(obj, "country", (str,), "a string")
    raw_limit = _require(obj, "credit_limit", (int, float, str), "a number")
    try:
        credit_limit = Decimal(str(raw_limit)).quantize(CREDIT_LIMIT_SCALE)
    except InvalidOperation as e:
        raise InvalidEvent(f"field 'credit_limit' {raw_limit!r:.60} is not a number") from e
    if not credit_limit.is_finite():
        raise InvalidEvent(f"field 'credit_limit' {raw_limit!r:.60} is not a finite number")
    if "event_timestamp" not in obj or obj["event_timestamp"] is None:
        raise InvalidEvent("missing field 'event_timestamp'")
    event_ts = parse_timestamp(obj["event_timestamp"])
    history = _require(obj, "browse_history", (list,), "a list")
    items = []
    for i, item in enumerate(history):
        where = f"browse_history[{i}]."
        if not isinstance(item, dict):
            raise InvalidEvent(f"'browse_history[{i}]' must be an object, got {type(item).__name__}")
        quantity = _require(item, "quantity", (int,), "an integer", where)
        if quantity < 0:
            raise InvalidEvent(f"field '{where}quantity' must not be negative, got {quantity}")
        items.append({"product_code": _require(item, "product_code", (str,), "a string", where),
                      "quantity": quantity,
                      "in_shopping_cart": _require(item, "in_shopping_cart", (bool,), "true or false", where)})
    return {"session_id": session_id, "customer_number": customer, "city": city, "country": country,
            "credit_limit": credit_limit, "event_timestamp": event_ts, "browse_history": items}


def enrich(event: dict[str, Any], record: StreamRecord, processed_at: datetime) -> dict[str, Any]:
    """The landed row: the event, its derived totals, the run's processing time and stream position.

    ``overall_product_quantity`` is the sum of quantities browsed, ``overall_in_shopping_cart``
    the sum of quantities in the cart, ``total_different_products`` the number of distinct
    product codes. ``processing_timestamp`` is the run's batch end, never the wall clock.
    """
    history = event["browse_history"]
    return {
        **event,
        "overall_product_quantity": sum(i["quantity"] for i in history),
        "overall_in_shopping_cart": sum(i["quantity"] for i in history if i["in_shopping_cart"]),
        "total_different_products": len({i["product_code"] for i in history}),
        "processing_timestamp": processed_at,
        "kinesis_shard_id": record.shard_id,
        "kinesis_sequence_number": record.sequence,
        "kinesis_partition_key": record.partition_key,
        "kinesis_arrival_timestamp": record.arrival,
    }


def error_row(record: StreamRecord, reason: str, processed_at: datetime) -> dict[str, Any]:
    """The errors dataset's row: the reason, where the record sits, its exact bytes and readable text."""
    return {
        "reason": reason,
        "kinesis_shard_id": record.shard_id,
        "kinesis_sequence_number": record.sequence,
        "kinesis_partition_key": record.partition_key,
        "kinesis_arrival_timestamp": record.arrival,
        "processing_timestamp": processed_at,
        "data_base64": base64.b64encode(record.data).decode("ascii"),
        "data_text": record.data.decode("utf-8", errors="replace")[:ERROR_TEXT_CHARS],
    }


def session_schema() -> pa.Schema:
    """The landed Parquet schema of enriched sessions (explicit, so every part has the same types)."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    item = pa.struct([("product_code", pa.string()), ("quantity", pa.int64()), ("in_shopping_cart", pa.bool_())])
    return pa.schema([
        ("session_id", pa.string()), ("customer_number", pa.int64()), ("city", pa.string()),
        ("country", pa.string()), ("credit_limit", pa.decimal128(14, 2)), ("event_timestamp", ts),
        ("browse_history", pa.list_(item)), ("overall_product_quantity", pa.int64()),
        ("overall_in_shopping_cart", pa.int64()), ("total_different_products", pa.int64()),
        ("processing_timestamp", ts), ("kinesis_shard_id", pa.string()), ("kinesis_sequence_number", pa.string()),
        ("kinesis_partition_key", pa.string()), ("kinesis_arrival_timestamp", ts),
    ])


def error_schema() -> pa.Schema:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema([
        ("reason", pa.string()), ("kinesis_shard_id", pa.string()), ("kinesis_sequence_number", pa.string()),
        ("kinesis_partition_key", pa.string()), ("kinesis_arrival_timestamp", ts), ("processing_timestamp", ts),
        ("data_base64", pa.string()), ("data_text", pa.string()),
    ])
