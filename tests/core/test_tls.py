# SPDX-License-Identifier: GPL-3.0-or-later
"""A Manager behind HTTPS with its own certificate: refused unless its CA bundle is configured."""
from __future__ import annotations

import http.server
import json
import shutil
import ssl
import subprocess
import threading

import pytest

from flamenco_panel.core import errors
from flamenco_panel.core.client import Connection, ManagerClient


class _Version(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"version": "3.9", "shortversion": "3.9", "name": "TLS Manager", "git": "x"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def https_manager(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Version)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", str(cert)
    server.shutdown()
    server.server_close()


def test_self_signed_manager_is_refused_by_default(https_manager):
    url, _cert = https_manager
    with pytest.raises(errors.ManagerUnreachable, match="TLS check failed.*CA bundle"):
        ManagerClient(Connection(url=url, timeout=3, connect_timeout=3)).version()


def test_accepted_with_its_ca_bundle(https_manager):
    url, cert = https_manager
    assert ManagerClient(Connection(url=url, timeout=3, connect_timeout=3, ca_bundle=cert)).version().name == \
        "TLS Manager"


def test_verification_off_means_off_even_with_a_ca_bundle(https_manager, tmp_path):
    url, _cert = https_manager
    unrelated = tmp_path / "other-ca.pem"
    unrelated.write_text("not a certificate")
    client = ManagerClient(Connection(url=url, timeout=3, connect_timeout=3, verify_tls=False, ca_bundle=str(unrelated)))
    assert client.version().name == "TLS Manager"
