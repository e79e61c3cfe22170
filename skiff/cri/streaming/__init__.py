"""The CRI streaming server: exec, attach and port-forward sessions.

The CRI ``Exec``, ``Attach`` and ``PortForward`` RPCs do not stream; they
register the request here and return a single-use URL. The client
(kubelet, crictl, kubectl through the API server) connects to it and
speaks Kubernetes' streaming protocols over SPDY/3.1 or WebSocket.

    backend.py        StreamingServer: start/stop, register_exec/attach/portforward
    server.py         the HTTP side: routes, tokens, upgrade to SPDY or WebSocket
    tokens.py         single-use, expiring tokens
    model.py          the registered requests and the RuntimeHooks they are served by
    remotecommand.py  exec/attach: stream set-up, v4/v5 status, resize, stdin close
    portforward.py    port forwarding over SPDY stream pairs or WebSocket channels
    streams.py        SessionIO: the transport-neutral streams a runtime hook sees
    spdy.py           SPDY/3.1 frames and header compression
    spdyconn.py       a SPDY session (server side), flow control
    websocket.py      RFC 6455, server side
    runtimehooks.py   the hooks over skiff's runtime (exec_in, conmon attach, netns dial)
    netdial.py        connecting to a port inside a network namespace
    errors.py         StreamingError, ProtocolViolation, StreamClosed

Import the module you need; this package imports nothing on its own.
"""
