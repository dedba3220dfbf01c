"""`ddns serve` with a certificate and key from the config speaks HTTPS."""
import subprocess

from conftest import require, start_serving


def test_https_update_with_certificate_from_config(instance, tmp_path):
    require("openssl", "curl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    secret = instance.add_host("vm.dyn.example.test")
    served = start_serving(instance, {"http.tls_cert": str(cert), "http.tls_key": str(key)})
    try:
        url = f"https://127.0.0.1:{instance.http_port}/nic/update?myip=192.0.2.61"
        out = subprocess.run(["curl", "-sS", "--max-time", "30", "--cacert", str(cert), "-u",
                              f"vm.dyn.example.test:{secret}", url], capture_output=True, text=True, check=True)
        assert out.stdout == "good 192.0.2.61\n"
        assert instance.dig("vm.dyn.example.test") == ["192.0.2.61"]
        plain = subprocess.run(["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{instance.http_port}/healthz"],
                               capture_output=True, text=True)
        assert "good" not in plain.stdout  # plain HTTP is not served on the TLS port
        served.service.flush_seen()  # last-update metadata is written once a second while serving
        host = served.service.store.host("vm.dyn.example.test")
        assert host.last_tls is True and host.last_client == "127.0.0.1"
        login = subprocess.run(["curl", "-sS", "--max-time", "30", "--cacert", str(cert), "-D", "-", "-o", "/dev/null",
                                f"https://127.0.0.1:{instance.http_port}/login"], capture_output=True, text=True)
        cookie = next(line for line in login.stdout.splitlines() if line.lower().startswith("set-cookie:"))
        assert "; secure" in cookie.lower() and "httponly" in cookie.lower()  # the portal's session cookie
    finally:
        served.stop.set()
        served.thread.join(30)
