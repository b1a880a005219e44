"""The real AWS IoT Device SDK v2 discovery client discovers against the offline endpoint."""

from __future__ import annotations

import pytest

from harness.cloud.api import Cloud

CORE = "TestCore"  # provisioned by conftest

awscrt_io = pytest.importorskip("awscrt.io")
greengrass_discovery = pytest.importorskip("awsiot.greengrass_discovery")


def _discover(cloud: Cloud, port: int, thing: str, server_name: str = "localhost") -> object:
    files = cloud.device_files(thing)
    event_loop_group = awscrt_io.EventLoopGroup(1)
    resolver = awscrt_io.DefaultHostResolver(event_loop_group)
    bootstrap = awscrt_io.ClientBootstrap(event_loop_group, resolver)
    tls_options = awscrt_io.TlsContextOptions.create_client_with_mtls_from_path(
        str(files.cert_path), str(files.key_path)
    )
    tls_options.override_default_trust_store_from_path(None, str(cloud.root_ca_path))
    tls_context = awscrt_io.ClientTlsContext(tls_options)
    socket_options = awscrt_io.SocketOptions()
    socket_options.connect_timeout_ms = 5000
    client = greengrass_discovery.DiscoveryClient(
        bootstrap, socket_options, tls_context, "us-east-1", gg_server_name=server_name
    )
    client.port = port  # the only change besides host and trust: point it at the local endpoint
    return client.discover(thing).result(timeout=20)


@pytest.mark.parametrize("server_name", ["localhost", "127.0.0.1"])
def test_sdk_client_gets_core_connectivity_and_ca(provisioned: Cloud, server_name: str) -> None:
    with provisioned.discovery_server() as server:
        response = _discover(provisioned, server.port, "dev-0001", server_name)
    groups = response.gg_groups  # type: ignore[attr-defined]
    assert [g.gg_group_id for g in groups] == [f"greengrassV2-coreDevice-{CORE}"]
    (core,) = groups[0].cores
    assert core.thing_arn == f"arn:aws:iot:us-east-1:123456789012:thing/{CORE}"
    assert [(c.id, c.host_address, c.port, c.metadata) for c in core.connectivity] == [
        ("127.0.0.1_8883", "127.0.0.1", 8883, ""),
        ("second", "localhost", 8884, ""),
    ]
    assert groups[0].certificate_authorities == [provisioned.core_ca(CORE).pem]


def test_sdk_client_sees_403_for_another_thing(provisioned: Cloud) -> None:
    with provisioned.discovery_server() as server:
        files = provisioned.device_files("dev-0001")
        event_loop_group = awscrt_io.EventLoopGroup(1)
        bootstrap = awscrt_io.ClientBootstrap(
            event_loop_group, awscrt_io.DefaultHostResolver(event_loop_group)
        )
        opts = awscrt_io.TlsContextOptions.create_client_with_mtls_from_path(
            str(files.cert_path), str(files.key_path)
        )
        opts.override_default_trust_store_from_path(None, str(provisioned.root_ca_path))
        client = greengrass_discovery.DiscoveryClient(
            bootstrap,
            awscrt_io.SocketOptions(),
            awscrt_io.ClientTlsContext(opts),
            "us-east-1",
            gg_server_name="localhost",
        )
        client.port = server.port
        with pytest.raises(greengrass_discovery.DiscoveryException) as info:
            client.discover("dev-0002").result(timeout=20)
    assert info.value.http_response_code == 403
