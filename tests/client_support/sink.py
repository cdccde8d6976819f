"""An aiosmtpd sink for tests/client.rs: records what postling's SMTP client sends.

Listens on 127.0.0.1 only. Every MAIL command is appended to DIR/mail.log (so a test can
check that no envelope went out); every accepted message becomes DIR/msg-N.json (the
envelope and the session's TLS and AUTH state) and DIR/msg-N.eml (the data, exactly as
received after dot-unstuffing). Prints READY once listening.

Recipients pick the server's behaviour by their local part:
  temp*      450 at RCPT          perm*      550 at RCPT        hang*   no RCPT reply
  datatemp*  451 after the data   dataperm*  554 after the data stall*  no end-of-data reply
"""

import argparse
import asyncio
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--dir", required=True)
p.add_argument("--cert")
p.add_argument("--key")
p.add_argument("--starttls", action="store_true", help="offer STARTTLS (needs --cert)")
p.add_argument("--require-starttls", action="store_true")
p.add_argument("--implicit", action="store_true", help="TLS from the first byte")
p.add_argument("--auth", help="USER:PASSWORD; AUTH required")
p.add_argument("--auth-exclude", action="append", default=[], help="e.g. PLAIN")
p.add_argument("--pipelining", action="store_true", help="advertise PIPELINING")
p.add_argument("--smtputf8", action="store_true")
a = p.parse_args()


def local(address):
    return address.split("@")[0].lower()


class Sink:
    def __init__(self):
        self.n = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if a.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with open(os.path.join(a.dir, "mail.log"), "a") as f:
            tls = session.ssl is not None
            f.write(f"MAIL FROM:<{address}> {' '.join(mail_options)} tls={tls}\n")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        name = local(address)
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
        self.n += 1
        base = os.path.join(a.dir, f"msg-{self.n}")
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        info = {
            "from": envelope.mail_from,
            "rcpts": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "tls": session.ssl is not None,
            "auth": session.authenticated,
            "helo": session.host_name,
            "peer_port": session.peer[1] if session.peer else None,
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


context = None
if a.cert:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(a.cert, a.key)

kwargs = dict(hostname="127.0.0.1", port=a.port, server_hostname="sink.test")
if a.smtputf8:
    kwargs["enable_SMTPUTF8"] = True
if a.implicit:
    kwargs["ssl_context"] = context
    # aiosmtpd only counts STARTTLS as TLS for auth_require_tls; this is all TLS.
    kwargs["auth_require_tls"] = False
elif a.starttls:
    kwargs["tls_context"] = context
    kwargs["require_starttls"] = a.require_starttls
if a.auth:
    kwargs["authenticator"] = authenticator
    kwargs["auth_required"] = True
    kwargs["auth_exclude_mechanism"] = a.auth_exclude

controller = Controller(Sink(), **kwargs)
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
