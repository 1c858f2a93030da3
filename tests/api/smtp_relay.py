#!/usr/bin/python3
"""An SMTP relay on loopback for smtp_test.c (Debian python3-aiosmtpd).

    smtp_relay.py DIR [CERT KEY [USER PASSWORD]]

Listens on 127.0.0.1 on a port of the system's choosing and writes it to
DIR/port (when that file exists, it is listening). With CERT and KEY (PEM)
it offers STARTTLS with that certificate; with USER and PASSWORD too, it
requires AUTH (after STARTTLS) with them. Each message it accepts
is stored as DIR/msg-<n>.eml (written to a temporary name, then renamed),
with the envelope in DIR/msg-<n>.env ("from\\nto\\n"). Before answering each
DATA it reads DIR/mode (missing = accept), one word:

  accept  250: stored
  temp    451: refused for now, not stored
  perm    550: refused for good, not stored
  stall   no answer for an hour (the client times out), not stored
  drop    the connection is closed without an answer, not stored
  lost    stored, then the connection is closed without an answer (a relay
          that took the message but whose reply was lost)

Each DATA also appends the mode it met to DIR/log, one line, so a test can
wait for an attempt that stored nothing.
"""
import asyncio
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Relay:
    def __init__(self, d):
        self.d = d
        self.n = 0

    def mode(self):
        try:
            with open(os.path.join(self.d, "mode")) as f:
                return f.read().strip() or "accept"
        except FileNotFoundError:
            return "accept"

    def store(self, envelope):
        self.n += 1
        base = os.path.join(self.d, "msg-%d" % self.n)
        with open(base + ".env.tmp", "w") as f:
            f.write("%s\n%s\n" % (envelope.mail_from, ",".join(envelope.rcpt_tos)))
        os.rename(base + ".env.tmp", base + ".env")
        with open(base + ".tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".tmp", base + ".eml")

    def log(self, mode):
        with open(os.path.join(self.d, "log"), "a") as f:
            f.write(mode + "\n")

    async def handle_DATA(self, server, session, envelope):
        mode = self.mode()
        if mode in ("accept", "lost"):
            self.store(envelope)
        self.log(mode)
        if mode == "accept":
            return "250 2.0.0 OK stored"
        if mode == "temp":
            return "451 4.3.0 try again later"
        if mode == "perm":
            return "550 5.7.1 refused"
        if mode == "stall":
            await asyncio.sleep(3600)
        server.transport.abort()
        return "421 4.3.0 closing"


def checker(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == user.encode()
              and auth_data.password == password.encode())
        if ok:
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False,
                          message="535 5.7.8 Authentication credentials invalid")
    return check


async def main(d, tls, auth):
    relay = Relay(d)
    ctx = None
    if tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tls[0], tls[1])
    # Implicit TLS (smtps://): the whole session inside TLS from the start,
    # no STARTTLS offered.
    implicit = os.environ.get("KIROKU_RELAY_IMPLICIT_TLS") == "1" and ctx is not None
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        lambda: SMTP(relay, decode_data=False, enable_SMTPUTF8=False,
                     hostname="relay.test", ident="kiroku test relay",
                     tls_context=None if implicit else ctx,
                     authenticator=checker(*auth) if auth else None,
                     auth_required=bool(auth)),
        host="127.0.0.1", port=0, ssl=ctx if implicit else None)
    port = srv.sockets[0].getsockname()[1]
    tmp = os.path.join(d, "port.tmp")
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, os.path.join(d, "port"))
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:4], sys.argv[4:6]))
