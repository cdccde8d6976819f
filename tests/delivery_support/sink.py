"""An aiosmtpd MX/smarthost sink for tests/delivery.rs (a copy of
tests/client_support/sink.py with what end-to-end delivery tests need on top).

Listens on --host (any 127/8 address) and --port. Records:
  DIR/connections.log  one line per TCP connection: the peer port
  DIR/mail.log         one line per MAIL command: address, parameters, tls=, peer=
  DIR/msg-N.json       per accepted message: envelope, TLS/AUTH state, peer port, time
  DIR/msg-N.eml        the data exactly as received (after dot-unstuffing)
Prints READY once listening.

Recipients pick the behaviour by their local part:
  temp*      450 at RCPT          perm*      550 at RCPT        hang*   no RCPT reply
  datatemp*  451 after the data   dataperm*  554 after the data stall*  no end-of-data reply
--defer-while FILE: while FILE exists, every RCPT gets 450 (a gate the test opens).
--slow SECONDS: wait this long before answering each end of data.
"""

import argparse
import asyncio
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--dir", required=True)
p.add_argument("--cert")
p.add_argument("--key")
p.add_argument("--starttls", action="store_true", help="offer STARTTLS (needs --cert)")
p.add_argument("--require-starttls", action="store_true")
p.add_argument("--auth", help="USER:PASSWORD; AUTH required")
p.add_argument("--defer-while")
p.add_argument("--slow", type=float, default=0.0)
a = p.parse_args()


def local(address):
    return address.split("@")[0].lower()


def append(name, line):
    with open(os.path.join(a.dir, name), "a") as f:
        f.write(line + "\n")


class Sink:
    def __init__(self):
        self.n = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        tls = session.ssl is not None
        append(
            "mail.log",
            f"MAIL FROM:<{address}> {' '.join(mail_options)} tls={tls} peer={session.peer[1]}",
        )
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        name = local(address)
        if a.defer_while and os.path.exists(a.defer_while):
            return f"450 4.3.2 <{address}>: closed for now, try again later"
        if name.startswith("temp"):
            return f"450 4.2.0 <{address}>: Recipient address rejected: greylisted"
        if name.startswith("perm"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: no such user"
        if name.startswith("hang"):
            await asyncio.sleep(3600)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        names = [local(r) for r in envelope.rcpt_tos]
        if any(n.startswith("stall") for n in names):
            await asyncio.sleep(3600)
        if any(n.startswith("datatemp") for n in names):
            return "451 4.3.0 Error: queue file write error"
        if any(n.startswith("dataperm") for n in names):
            return "554 5.7.1 Error: message content rejected"
        if a.slow:
            await asyncio.sleep(a.slow)
        self.n += 1
        base = os.path.join(a.dir, f"msg-{self.n}")
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        info = {
            "from": envelope.mail_from,
            "rcpts": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "tls": session.ssl is not None,
            "auth": bool(session.authenticated),
            "helo": session.host_name,
            "peer_port": session.peer[1] if session.peer else None,
            "time": time.time(),
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(info, f)
        os.rename(base + ".json.tmp", base + ".json")
        return f"250 2.0.0 Ok: queued as {self.n}"


def authenticator(server, session, envelope, mechanism, auth_data):
    user, _, password = a.auth.partition(":")
    if (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == user.encode()
        and auth_data.password == password.encode()
    ):
        return AuthResult(success=True)
    return AuthResult(success=False, handled=False)


class CountingSMTP(SMTP):
    def connection_made(self, transport):
        peer = transport.get_extra_info("peername")
        # STARTTLS calls this again for the same connection with the TLS transport.
        if not getattr(self, "_counted", False):
            self._counted = True
            append("connections.log", str(peer[1] if peer else "?"))
        super().connection_made(transport)


class CountingController(Controller):
    def factory(self):
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


context = None
if a.cert:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(a.cert, a.key)

kwargs = dict(hostname=a.host, port=a.port, server_hostname="sink.test")
if a.starttls:
    kwargs["tls_context"] = context
    kwargs["require_starttls"] = a.require_starttls
if a.auth:
    kwargs["authenticator"] = authenticator
    kwargs["auth_required"] = True

controller = CountingController(Sink(), **kwargs)
controller.start()
print("READY", flush=True)
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    pass
finally:
    controller.stop()
    sys.exit(0)
