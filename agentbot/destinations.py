"""Where a flow's webhook may connect: a policy checked on the resolved address, at connect time.

Flows can be stored through the API, so a flow's webhook URL is not trusted to point outside.
By default the outbox's webhook client refuses loopback, link-local (cloud metadata at
169.254.169.254 included), private, shared (100.64/10), unspecified, multicast and reserved
addresses. The check happens inside the connection itself: the host name is resolved here,
every address it resolves to is checked, and the connection goes to an address that was
checked (TLS still verifies and sends the URL's host name). A name that resolves to a public
address for the check and to 127.0.0.1 for the connection cannot slip through.

Operators whose CRM lives on an internal network list it in `WEBHOOK_ALLOWED_NETWORKS`:
comma-separated CIDRs or addresses (`10.0.0.0/8`, `127.0.0.1`) and host names (`crm.internal`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Beyond what `ipaddress` calls private: shared address space (carrier NAT, some clouds'
# metadata), and IPv6 forms that carry an IPv4 address.
_ALSO_REFUSED = tuple(
    ipaddress.ip_network(n) for n in ("100.64.0.0/10", "192.0.0.0/24", "64:ff9b::/96")
)


@dataclass(frozen=True, slots=True)
class Allowed:
    """The operator's exceptions to the policy."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Allowed:
        """`10.0.0.0/8, 127.0.0.1, crm.internal`; ValueError naming a bad entry."""
        networks: list[Network] = []
        hosts: set[str] = set()
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
                continue
            except ValueError:
                pass
            name = item.lower().rstrip(".")
            if (
                not all(
                    label.isascii() and label.replace("-", "").isalnum()
                    for label in name.split(".")
                )
                or not name
            ):
                raise ValueError(f"'{item}' is neither a network (10.0.0.0/8) nor a host name")
            hosts.add(name)
        return cls(tuple(networks), frozenset(hosts))

    def permits(self, address: Address) -> bool:
        return any(
            address in network for network in self.networks if network.version == address.version
        )


def refused(address: Address, allowed: Allowed) -> bool:
    """True when the policy refuses connecting to this address."""
    if allowed.permits(address):
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refused(address.ipv4_mapped, allowed)
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or any(address in n for n in _ALSO_REFUSED if n.version == address.version)
    )


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the destination policy in `connect_tcp`."""

    def __init__(self, allowed: Allowed, inner: httpcore.AsyncNetworkBackend | None = None):
        self.allowed = allowed
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        if host.lower().rstrip(".") not in self.allowed.hosts:
            bad = [a for a in addresses if refused(a, self.allowed)]
            if bad:
                raise httpcore.ConnectError(
                    f"refused: {host} resolves to {bad[0]}, a loopback, private, link-local or "
                    "otherwise internal address (list it in WEBHOOK_ALLOWED_NETWORKS to allow it)"
                )
        error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def _resolve(self, host: str, port: int, limit: float | None) -> list[Address]:
        try:
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(limit):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses: list[Address] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("refused: flow webhooks do not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over `GuardedBackend`; no proxy from the environment (a proxy would
    connect on our behalf, past the policy)."""

    def __init__(self, allowed: Allowed) -> None:
        super().__init__(trust_env=False)
        ssl_context = httpx.create_ssl_context(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=GuardedBackend(allowed)
        )


def client(allowed: Allowed) -> httpx.AsyncClient:
    """The outbox's client for flow webhooks: the policy, no redirects, no proxy."""
    return httpx.AsyncClient(
        transport=GuardedTransport(allowed), follow_redirects=False, trust_env=False
    )
