"""The service's request and response bodies as pydantic models, so that `/openapi.json` documents every field.

`SearchRequest` is generated from `SearchOptions`' fields that a service accepts (`autopeft.run.options`): each
keeps its type, its choices (an enum in the schema), its bounds (`minimum`, `maximum`) and its help as the
description. Its values are checked by the same code as the command line's and the API's (`check_value`), so a
bad one answers the same one line (HTTP 422) that `autopeft search` prints.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from autopeft.errors import UsageError
from autopeft.limits import MAX_TRIALS, Limit
from autopeft.run.options import OPTIONS, OptionValueError, check_value, option_of, value_type
from autopeft.service.requests import ID_PATTERN, TRACK_IS_THE_SERVICES, check_id

# Options a submission may not carry, and why (the rest are `SearchOptions`' own, refused by name).
SERVICE_CHOOSES = {
    "out": "the service chooses where a search is written",
    "resume": "the service chooses where a search is written",
    "storage": "the service keeps every search's study in its own runs directory",
    "ray_address": "the service's --ray-address places every search",
}


def _field(name: str) -> tuple[Any, Any]:
    """A `SearchOptions` field as a pydantic field of the request: its type, bounds and help."""
    kind, option = value_type(name), option_of(name)
    annotation: Any = Literal[kind.choices] if kind.choices is not None else kind.kind
    if kind.many:
        annotation = list[annotation]
    bounds: dict[str, Any] = {}
    if option.low is not None:
        bounds["gt" if option.low_open else "ge"] = option.low
    if isinstance(option.high, Limit):
        bounds["le"] = option.high.high
    elif option.high is not None:
        bounds["lt"] = option.high
    default = OPTIONS[name].default
    return annotation | None, Field(default=None, description=option.help + (
        f" Default: {default}." if default is not None else ""), min_length=1 if kind.many else None, **bounds)


def _checked(cls: type[BaseModel], data: Any) -> Any:
    """Before pydantic's own validation: every name a search option the service takes, every value checked as
    `SearchOptions` checks it, so that the one line is the command's."""
    if not isinstance(data, dict):
        raise ValueError("the request body must be a JSON object of search options (e.g. {\"task\": \"sst2\"})")
    for name, value in data.items():
        if value is None:
            continue
        if name == "id":
            try:
                check_id(value)
            except UsageError as exc:
                raise ValueError(str(exc)) from None
            continue
        if name in SERVICE_CHOOSES:
            raise ValueError(f"unknown option {name!r}; {SERVICE_CHOOSES[name]}")
        if name not in SEARCH_FIELDS:
            raise ValueError(f"unknown option {name!r}; known options: {', '.join(SEARCH_FIELDS)}")
        try:
            check_value(name, value)
        except OptionValueError as exc:
            raise ValueError(str(exc)) from None
        if name == "track" and "=" in value:
            raise ValueError(TRACK_IS_THE_SERVICES)
    if "task" not in data:
        raise ValueError("option 'task' is required (e.g. \"task\": \"sst2\")")
    return data


SEARCH_FIELDS = tuple(name for name in OPTIONS if option_of(name).service)

SearchRequest: type[BaseModel] = pydantic.create_model(  # type: ignore[call-overload]
    "SearchRequest",
    __config__=ConfigDict(extra="forbid", strict=True, title="SearchRequest"),
    __doc__="A search to run: `autopeft search`'s options (named as its long options, with underscores) and an "
            "optional id of your own, which makes a retried submission safe.",
    __validators__={"checked": pydantic.model_validator(mode="before")(_checked)},
    id=(str | None, Field(default=None, pattern=f"^{ID_PATTERN.pattern}$",
                          description="your id for the search: submitting again with the same id and options is "
                          "safe")),
    **{name: _field(name) for name in SEARCH_FIELDS},
)


def options_of(request: BaseModel) -> dict[str, Any]:
    """The search options a request gives (JSON values), without its id."""
    return {name: value for name, value in request.model_dump(exclude_none=True).items() if name != "id"}


class TrialsChange(BaseModel):
    """PATCH /v1/searches/{id}: the completed trials to reach, raised."""

    model_config = ConfigDict(extra="forbid", strict=True)
    trials: int = Field(ge=1, le=MAX_TRIALS.high, description=f"completed trials to reach; {MAX_TRIALS.describe()}")


class SearchStatus(BaseModel):
    """A search as the service shows it."""

    id: str
    owner: str
    state: Literal["queued", "running", "finished", "failed", "stopped"]
    trials_done: int
    trials: int
    steps: int = Field(description="training steps its trials have spent, all together")
    best_accuracy: float | None
    front_size: int
    eta_seconds: float | None
    created: float
    started: float | None
    ended: float | None
    error: str | None
    pending: str | None = Field(description="a request the service is carrying out: stop or restart")
    options: dict[str, Any]
    warnings: list[str] = Field(default_factory=list, description="what its data holds that you should hear")


def first_error_line(errors: list[Any]) -> str:
    """pydantic's errors as one line: the first, in the command's words where it came from `check_value`."""
    if not errors:
        return "the request body is not valid"
    error = errors[0]
    message = str(error.get("msg", "not valid"))
    if error.get("type") == "value_error":
        return message.removeprefix("Value error, ")
    if error.get("type") == "json_invalid":
        return f"the request body is not JSON ({(error.get('ctx') or {}).get('error', message)})"
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    got = f", got {error['input']!r}" if "input" in error and error.get("type") != "missing" else ""
    return f"{where}: {message}{got}" if where else f"{message}{got}"
