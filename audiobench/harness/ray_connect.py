"""Connecting to a Ray cluster with a bounded wait: an address with no cluster behind it is a one-line
error within seconds, never a traceback or an endless retry (``--executor ray --address``).

:func:`connect_ray` resolves the address Ray would use (``RAY_ADDRESS`` first, as Ray does), checks
that a TCP connection to it opens within :data:`RAY_PROBE_S`, and shortens Ray's own GCS connection
retries (:data:`RAY_CONNECT_ENV`, unless the user set them) for an address where something answers
that is not Ray.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any

from audiobench.kernel.errors import AudiobenchError, error_line

RAY_PROBE_S = 5.0  # how long a Ray address may take to accept a TCP connection
# bounds on ray.init's attempts to reach a cluster's GCS (unless set already), read by Ray when it is
# imported: one attempt of about 20 s (Ray's defaults: 20 attempts of about 40 s, a warning for each);
# not for a local instance, whose start-up waits on its own GCS
RAY_CONNECT_ENV = {"RAY_gcs_server_port_wait_time_s": "1", "RAY_py_gcs_connect_timeout_s": "10"}
RAY_CLIENT_PORT = 10001


def _host_port(address: str, default_port: int | None = None) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port``, an optional ``scheme://``) split, or None if it is not one."""
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or "]" in port:
        host, port = rest, str(default_port) if default_port else ""
    host = host.strip("[]")
    return (host, int(port)) if host and port.isdigit() else None


def _unreachable(host: str, port: int, timeout: float = RAY_PROBE_S) -> str | None:
    """Why nothing accepts a TCP connection at ``host:port`` within ``timeout`` seconds (None: something does)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror or exc}"
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout:g} s"
    except OSError as exc:
        return f"nothing answers at {host}:{port}: {(exc.strerror or str(exc)).lower()}"


def _ray_bootstrap(target: str) -> str:
    """The ``host:port`` ``ray.init(address=target)`` connects to (``auto``: the instance started on this
    machine; raises ConnectionError when there is none), or ``target`` where Ray lacks the helper."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:
        return target
    return canonicalize_bootstrap_address(target) or target


@contextlib.contextmanager
def env_set(values: dict[str, str]) -> Iterator[None]:
    """Set the environment variables of ``values`` not set already while the block runs."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def connect_ray(ray: Any, address: str | None) -> None:
    """``ray.init`` for ``--address`` (None: a local instance, unless ``RAY_ADDRESS`` names a cluster),
    in bounded time. Raises :class:`AudiobenchError`, one line naming the address and the remedy, when
    no Ray instance is found (``auto``), nothing accepts a connection at the address within
    :data:`RAY_PROBE_S` seconds (a mistyped host or port, a cluster not started), or ``ray.init``
    cannot connect (something else listens there): Ray alone would retry for many minutes, unless
    it was imported within :data:`RAY_CONNECT_ENV` (as ``--executor ray`` does)."""
    target = os.environ.get("RAY_ADDRESS") or address  # Ray's own precedence
    if target in (None, "", "local"):
        ray.init(address=address, include_dashboard=False, log_to_driver=False)  # starts a local instance
        return
    named = f"{target!r}" + (" (RAY_ADDRESS)" if os.environ.get("RAY_ADDRESS") else "")
    local = [] if os.environ.get("RAY_ADDRESS") else ["leave out --address to start a local instance"]

    def error(why: str, *remedies: str) -> AudiobenchError:
        todo = [*remedies, *local]
        remedy = ", ".join(todo[:-1]) + (", or " if len(todo) > 1 else "") + todo[-1]
        return AudiobenchError(f"--executor ray: no Ray cluster at {named} ({why}; {remedy})")

    form = "give it as host:port, auto or ray://host:10001"
    client = target.startswith("ray://")
    if client:
        where = _host_port(target, RAY_CLIENT_PORT)
    else:
        try:
            resolved = _ray_bootstrap(target)
        except ConnectionError:  # `auto` and no instance started on this machine
            raise error("none is running on this machine", "start one with 'ray start --head'") from None
        except Exception as exc:  # a malformed address
            raise error(error_line(exc), form) from None
        where = _host_port(resolved)
    if where is None:
        raise error("not an address", form)
    why = _unreachable(*where)
    if why is not None and not client and resolved != target:  # Ray connects 127.0.0.1 as the node's own address
        why += f", the address Ray makes of {target!r}"
    if why is not None:
        raise error(why, "check the address ('ray start --head' prints it)", "start the cluster")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except Exception as exc:
        with contextlib.suppress(Exception):
            ray.shutdown()
        raise error(f"{where[0]}:{where[1]} accepts connections but Ray could not connect: {error_line(exc)}",
                    "check the address, and that the cluster runs this Ray version") from None
