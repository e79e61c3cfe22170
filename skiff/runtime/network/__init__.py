"""Container networking with netavark and aardvark-dns (podman 4's network stack).

    model.py    Network (podman's JSON), PerNetworkOptions, PortMapping, NetworkStatus
    store.py    network definitions in the store database (``networks``); the default
                network ``skiff``; ``NetworkStore.create`` validates like podman
    ipam.py     addresses per network and container (``network_allocations``)
    netns.py    persistent network namespaces under RUNROOT/netns
    netavark.py the netavark wrapper (argv, request JSON, status JSON, errors)
    ports.py    ``-p``/``-P`` parsing and validation, free host ports
    setup.py    ``setup_network`` / ``teardown_network`` / ``network_status`` for the
                runtime; per-container records (``network_containers``,
                ``network_attachments``)
    connect.py  connect/disconnect running containers; remove and prune networks
    filters.py  ``--filter`` for ``network ls`` and ``network prune``

Import the module you need; this package imports nothing on its own.
"""
