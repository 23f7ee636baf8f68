"""Provider adapters by name, each built on first use and then kept for the life of the container."""
from __future__ import annotations

import threading
from typing import Callable, Iterator, Mapping

from tollgate.providers.base import Provider
from tollgate.settings import Settings

Factory = Callable[[Settings], Provider]


def _openai(settings: Settings) -> Provider:
    from tollgate.providers.openai_provider import OpenAIProvider

    return OpenAIProvider(settings)


def _anthropic(settings: Settings) -> Provider:
    from tollgate.providers.anthropic_provider import AnthropicProvider

    return AnthropicProvider(settings)


def _bedrock(settings: Settings) -> Provider:
    from tollgate.providers.bedrock_provider import BedrockProvider

    return BedrockProvider(settings)


DEFAULT_FACTORIES: Mapping[str, Factory] = {"openai": _openai, "anthropic": _anthropic, "bedrock": _bedrock}


class Registry(Mapping[str, Provider]):
    """A read-only mapping name -> Provider that builds each adapter on first access (`registry[name]`,
    or `registry.get(name)` which gives None for an unknown name).

    Tests pass `factories` to put in-memory providers in place of the real adapters.
    """

    def __init__(self, settings: Settings, factories: Mapping[str, Factory] | None = None):
        self._settings = settings
        self._factories = dict(DEFAULT_FACTORIES if factories is None else factories)
        self._built: dict[str, Provider] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Provider:
        if name not in self._factories:
            raise KeyError(f"no provider named {name!r}")
        with self._lock:
            if name not in self._built:
                self._built[name] = self._factories[name](self._settings)
            return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories


def providers(settings: Settings, factories: Mapping[str, Factory] | None = None) -> Registry:
    return Registry(settings, factories)
