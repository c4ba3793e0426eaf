"""Process wiring: resolve settings into the objects every surface shares."""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
import secrets
import socket
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from pydantic import SecretStr
from sqlalchemy.engine import make_url

from croco.logs import masker
from croco.settings import Settings
from storage.db import Database
from storage.secrets import SecretBox, generate_key
from storage.types import Clock, utcnow
from sync.engine import SyncEngine
from sync.leases import LeasePolicy
from sync.outbox import NoticeSink
from sync.providers.base import ProviderConfig, ProviderFactory
from sync.providers.google.provider import GoogleShared
from sync.providers.microsoft.provider import MicrosoftShared
from sync.providers.registry import open_provider

log = logging.getLogger(__name__)

DEV_SECRETS_FILE = "dev-secrets.json"
_GENERATED: dict[str, Callable[[], str]] = {
    "api_token": lambda: secrets.token_urlsafe(32),
    "secret_key": generate_key,
    "webhook_secret": lambda: secrets.token_urlsafe(32),
}


def resolve_dev_secrets(settings: Settings) -> Settings:
    """Fill unset secrets from `<data_dir>/dev-secrets.json`, generating and saving them the first time.

    They persist so that credentials encrypted under a generated key stay readable after a restart.
    Production sets every one of them; `croco check` says so.
    """
    missing = [name for name in _GENERATED if not getattr(settings, name).get_secret_value()]
    if not missing:
        return settings
    path = settings.data_dir / DEV_SECRETS_FILE
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    for name in missing:
        stored.setdefault(name, _GENERATED[name]())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(stored, handle, indent=2)
    log.warning(
        "using generated development secrets; set them in the environment for production",
        extra={"generated": missing, "stored_in": str(path)},
    )
    return settings.model_copy(update={name: type(getattr(settings, name))(stored[name]) for name in missing})


@dataclass
class Runtime:
    settings: Settings
    db: Database
    secrets: SecretBox
    clock: Clock = utcnow
    """The process's one clock: the engine, bookings, the API and webhook delivery all read it."""
    notice_sink: NoticeSink | None = None  # None: notices wait in the outbox (Slack becomes the sink next)

    @property
    def provider_config(self) -> ProviderConfig:
        return self.settings.provider_config

    def providers(self) -> ProviderFactory:
        """Every factory hands its Google providers the process's one `GoogleShared`, its Microsoft providers
        the one `MicrosoftShared`."""
        return functools.partial(open_provider, config=self.provider_config, google=self.google,
                                 microsoft=self.microsoft)

    @functools.cached_property
    def google(self) -> GoogleShared:
        """The thread pool every blocking Google call runs on, and each account's request budget."""
        return GoogleShared()

    @functools.cached_property
    def microsoft(self) -> MicrosoftShared:
        """The HTTP session every Graph call goes over, and each mailbox's four request slots (M5)."""
        return MicrosoftShared()

    def engine(self) -> SyncEngine:
        return SyncEngine(
            self.db, self.secrets, self.providers(), owner=process_owner(),
            interval=timedelta(seconds=self.settings.sync_interval_seconds), clock=self.clock, pool=self.read_pool,
            lease=LeasePolicy.lasting(timedelta(seconds=self.settings.sync_lease_seconds)),
            safety_poll=timedelta(seconds=self.settings.push_safety_poll_seconds),
        )

    @functools.cached_property
    def read_pool(self) -> ProcessPoolExecutor:
        """Worker processes that read large calendar listings; started on first use, one per core."""
        return ProcessPoolExecutor(max_workers=os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn"))

    async def close(self) -> None:
        if "read_pool" in self.__dict__:
            self.read_pool.shutdown(wait=False, cancel_futures=True)
        if "google" in self.__dict__:
            self.google.close()
        if "microsoft" in self.__dict__:
            await self.microsoft.close()
        await self.db.dispose()


def process_owner() -> str:
    """Names this process in calendar leases, so a stale lease can be traced to its host."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def build_runtime(settings: Settings) -> Runtime:
    settings = resolve_dev_secrets(settings)
    register_secrets(settings)
    if settings.effective_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Runtime(
        settings=settings,
        db=Database(settings.effective_database_url),
        secrets=SecretBox(settings.secret_key.get_secret_value()),
    )


def register_secrets(settings: Settings) -> None:
    """Every secret value the process knows is masked in log output, the database password included."""
    values = [
        value.get_secret_value()
        for name in Settings.model_fields
        if isinstance(value := getattr(settings, name), SecretStr)
    ]
    values += [k.strip() for k in settings.secret_key.get_secret_value().split(",")]
    if settings.database_url:
        values.append(make_url(settings.database_url).password or "")
    masker.register(*values)
