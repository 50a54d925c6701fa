"""A host that closes the connection in the middle of the SSH handshake is an SSHError, not an EOFError.

paramiko raises EOFError from ``connect`` when the server hangs up after its banner (a lab host whose
sshd is starting or restarting, an sshd over MaxStartups dropping early connections). Before the
fix, that EOFError escaped the migration's wait for ssh (which retries SSHError only), click turned
it into Ctrl-C, and `migrate run` exited 130 "interrupted" (issue 28). The server here is a real
TCP listener on loopback that behaves exactly that way.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from govcloud.adapters.ports import Endpoint
from govcloud.adapters.ssh import connect
from govcloud.errors import SSHError


@pytest.fixture
def hangs_up_after_banner() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                conn.settimeout(5)
                try:
                    conn.recv(4096)  # the client's banner (and maybe its KEXINIT): then hang up
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_a_hangup_during_the_handshake_is_an_sshError_naming_the_host(hangs_up_after_banner: int,
                                                                        tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    ep = Endpoint(address="127.0.0.1", port=hangs_up_after_banner, known_hosts=known, name="starting-host")
    for _ in range(5):  # the EOF can land in the banner exchange or in the key exchange: both are covered
        with pytest.raises(SSHError) as err:
            connect(ep, timeout=5)
        assert "starting-host (127.0.0.1)" in err.value.message, err.value.message
