"""Who writes a listing's copy: the built-in templates, or a model behind an OpenAI-compatible endpoint.

Every writer has one method, `write`, and appends a `GenerationRecord` per call it makes (the job
stores them in ai_generation_log, whatever the outcome).

Errors::

    WritingFailed                  the writer gave up; `transient` says whether a later run may succeed
    ├── ProviderUnavailable        the endpoint timed out, refused (429) or failed (5xx) after its retries,
    │                              or answered a permanent 4xx (bad key, unknown model: not transient)
    └── InvalidOutput              every call answered malformed JSON or text breaking the listing rules
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Protocol

import openai
import structlog
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from domain.description_templates import PRODUCT_TITLE_MAX, ListingCopy, ProductFacts, write_listing_copy
from domain.text_policy import TITLE_LIMITS, find_breaches
from ops.config.settings import Settings
from persistence.ai_generation_log import GenerationRecord

log = structlog.get_logger(__name__)

#: Vinted's limit, the smallest of our marketplaces': one description fits them all.
DESCRIPTION_MAX = 2000
_LANGUAGE_NAMES = {"fr": "French", "en": "English"}


@dataclass(frozen=True)
class CopyRequest:
    """What to write: the product's facts in one language, and the marketplaces it is for."""

    facts: ProductFacts
    platforms: tuple[str, ...]


@dataclass(frozen=True)
class WrittenCopy:
    copy: ListingCopy
    provider: str
    model: str | None


class WritingFailed(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


class ProviderUnavailable(WritingFailed):
    pass


class InvalidOutput(WritingFailed):
    pass


class DescriptionWriter(Protocol):
    async def write(self, request: CopyRequest, records: list[GenerationRecord]) -> WrittenCopy: ...

    async def aclose(self) -> None: ...


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


class TemplateWriter:
    """Copy from the attribute templates: no network, no cost, the same text for the same product."""

    async def write(self, request: CopyRequest, records: list[GenerationRecord]) -> WrittenCopy:
        started = time.perf_counter()
        copy = write_listing_copy(request.facts, request.platforms)
        records.append(
            GenerationRecord(
                provider="template",
                model=None,
                language=request.facts.language,
                latency_ms=_elapsed_ms(started),
                outcome="succeeded",
            )
        )
        return WrittenCopy(copy=copy, provider="template", model=None)

    async def aclose(self) -> None:
        return None


Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Description = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=DESCRIPTION_MAX)
]


class ModelCopy(BaseModel):
    """The JSON a model must answer with."""

    model_config = ConfigDict(extra="forbid")

    titles: dict[str, Title]
    description: Description


def _json_schema(platforms: Sequence[str]) -> dict[str, Any]:
    title_properties = {
        platform: {"type": "string", "maxLength": TITLE_LIMITS.get(platform, PRODUCT_TITLE_MAX)}
        for platform in platforms
    }
    return {
        "type": "object",
        "properties": {
            "titles": {
                "type": "object",
                "properties": title_properties,
                "required": list(platforms),
                "additionalProperties": False,
            },
            "description": {"type": "string", "maxLength": DESCRIPTION_MAX},
        },
        "required": ["titles", "description"],
        "additionalProperties": False,
    }


def _facts_for_prompt(facts: ProductFacts) -> dict[str, Any]:
    values: dict[str, Any] = {
        name: getattr(facts, name)
        for name in (
            "category", "brand", "model", "size", "label_size", "color", "material", "fit", "pattern",
            "style", "gender", "season", "condition", "condition_sup", "decade", "closure", "origin",
        )
        if getattr(facts, name)
    }  # fmt: skip
    if facts.measurements:
        values["measurements"] = [float(value) for value in facts.measurements]
    return values


def _messages(request: CopyRequest) -> list[dict[str, str]]:
    limits = ", ".join(
        f"{platform} {TITLE_LIMITS.get(platform, PRODUCT_TITLE_MAX)}" for platform in request.platforms
    )
    system = (
        "You write listings for second-hand fashion marketplaces. "
        f"Write in {_LANGUAGE_NAMES[request.facts.language]}. "
        "State only the facts given in the user's JSON: never add a material, condition, size, measurement, "
        "origin, feature or claim that is not there. Never name any marketplace or website, never write a "
        "price, a phone number, an e-mail address or a link. "
        'Answer with JSON only: {"titles": {<platform>: <title>}, "description": <text>}, one title per '
        f"platform, each at most this many characters: {limits}. The description is at most "
        f"{DESCRIPTION_MAX} characters, in short paragraphs."
    )
    user = json.dumps(
        {"platforms": list(request.platforms), "facts": _facts_for_prompt(request.facts)}, ensure_ascii=False
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


class OpenAIWriter:
    """Copy from a chat-completions model (OpenAI, Ollama, vLLM, llama.cpp), checked before it is kept."""

    def __init__(self, settings: Settings) -> None:
        api_key = settings.ai_api_key.get_secret_value() if settings.ai_api_key else "not-needed"
        # A local server needs no key, but the client insists on one; it never reads the environment here.
        self.client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=settings.ai_base_url,
            timeout=settings.ai_timeout_seconds,
            max_retries=settings.ai_max_retries,
        )
        self.model = settings.ai_model or "gpt-4o-mini"
        self.output_attempts = settings.ai_output_attempts
        self.response_format = settings.ai_response_format
        self.temperature = settings.ai_temperature
        self.prompt_price = settings.ai_cost_per_1k_prompt_tokens
        self.completion_price = settings.ai_cost_per_1k_completion_tokens

    async def aclose(self) -> None:
        await self.client.close()

    def _response_format(self, platforms: Sequence[str]) -> Any:
        if self.response_format == "json_object":
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {"name": "listing_copy", "strict": True, "schema": _json_schema(platforms)},
        }

    async def write(self, request: CopyRequest, records: list[GenerationRecord]) -> WrittenCopy:
        problem = ""
        for _ in range(self.output_attempts):
            copy, problem = await self._call(request, records)
            if copy is not None:
                return WrittenCopy(copy=copy, provider="openai", model=self.model)
        raise InvalidOutput(f"The model's answer was not usable: {problem}", transient=True)

    async def _call(
        self, request: CopyRequest, records: list[GenerationRecord]
    ) -> tuple[ListingCopy | None, str]:
        language = request.facts.language
        started = time.perf_counter()

        def record(outcome: str, error: str | None = None, usage: Any = None) -> None:
            prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
            cost = (
                Decimal(prompt_tokens) * self.prompt_price
                + Decimal(completion_tokens) * self.completion_price
            ) / 1000
            records.append(
                GenerationRecord(
                    provider="openai",
                    model=self.model,
                    language=language,
                    latency_ms=_elapsed_ms(started),
                    outcome=outcome,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    cost=cost,
                    error=error,
                )
            )

        try:
            completion = await self.client.chat.completions.create(
                model=self.model,
                messages=_messages(request),  # type: ignore[arg-type]  # plain dicts are the documented form
                response_format=self._response_format(request.platforms),
                temperature=self.temperature,
            )
        except openai.APIStatusError as error:
            transient = error.status_code in (408, 409, 429) or error.status_code >= 500
            message = f"the AI endpoint answered HTTP {error.status_code}"
            record("provider_error", message)
            raise ProviderUnavailable(message, transient=transient) from error
        except openai.APIConnectionError as error:  # includes timeouts
            message = (
                "the AI endpoint timed out"
                if isinstance(error, openai.APITimeoutError)
                else ("the AI endpoint could not be reached")
            )
            record("provider_error", message)
            raise ProviderUnavailable(message, transient=True) from error
        usage = completion.usage
        choice = completion.choices[0] if completion.choices else None
        content = choice.message.content if choice is not None else None
        try:
            answer = ModelCopy.model_validate_json(content or "")
        except ValidationError as error:
            problem = f"invalid JSON ({error.error_count()} errors)"
            record("invalid_output", problem, usage)
            return None, problem
        copy, problem = _copy_of(answer, request)
        if copy is None:
            record("invalid_output" if problem.startswith("missing") else "policy_violation", problem, usage)
            return None, problem
        record("succeeded", usage=usage)
        return copy, ""


def _copy_of(answer: ModelCopy, request: CopyRequest) -> tuple[ListingCopy | None, str]:
    """The model's answer as listing copy, or why it cannot be used (a missing title, a broken rule)."""
    missing = [platform for platform in request.platforms if platform not in answer.titles]
    if missing:
        return None, f"missing titles for {', '.join(missing)}"
    titles = {platform: answer.titles[platform] for platform in request.platforms}
    for platform, title in titles.items():
        breaches = find_breaches(title, answer.description, platform)
        if breaches:
            return None, f"{platform} rule {breaches[0].rule} in the {breaches[0].field}"
    tightest = min(request.platforms, key=lambda platform: TITLE_LIMITS.get(platform, PRODUCT_TITLE_MAX))
    title = titles[tightest]
    if len(title) > PRODUCT_TITLE_MAX:
        return None, f"title over {PRODUCT_TITLE_MAX} characters"
    return ListingCopy(title=title, description=answer.description, titles=titles), ""


class FallbackWriter:
    """The primary writer, and the templates when it fails: the seller gets copy either way."""

    def __init__(self, primary: DescriptionWriter, fallback: DescriptionWriter) -> None:
        self.primary = primary
        self.fallback = fallback

    async def write(self, request: CopyRequest, records: list[GenerationRecord]) -> WrittenCopy:
        try:
            return await self.primary.write(request, records)
        except WritingFailed as error:
            log.warning("ai_fallback_to_template", reason=error.message)
            return await self.fallback.write(request, records)

    async def aclose(self) -> None:
        await self.primary.aclose()
        await self.fallback.aclose()


def build_writer(settings: Settings) -> DescriptionWriter:
    """The writer `AI_PROVIDER` names; with `AI_FALLBACK_TO_TEMPLATE`, templates stand in if it fails."""
    if settings.ai_provider == "template":
        return TemplateWriter()
    writer = OpenAIWriter(settings)
    if settings.ai_fallback_to_template:
        return FallbackWriter(writer, TemplateWriter())
    return writer
