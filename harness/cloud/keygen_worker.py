"""Entry point of a key-generation worker process (``python -m harness.cloud.keygen_worker``).

Reads length-prefixed pickled (CA cert PEM, CA key PEM, requests) from stdin, answers with pickled
credentials on stdout, and exits when stdin closes, so a killed parent never leaves workers behind.
"""

from __future__ import annotations

import pickle
import sys

from harness.cloud.credentials import issue_device_credentials, recv_frame, send_frame


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        frame = recv_frame(stdin)
        if frame is None:
            return 0
        try:
            ca_cert_pem, ca_key_pem, requests = pickle.loads(frame)
            reply: tuple[str, object] = ("ok", issue_device_credentials(ca_cert_pem, ca_key_pem, requests))
        except Exception as exc:  # reported to the parent, which fails the batch
            reply = ("error", f"{type(exc).__name__}: {exc}")
        send_frame(stdout, pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    sys.exit(main())
