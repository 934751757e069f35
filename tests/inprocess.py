"""The gateway's WSGI application called in this process, through werkzeug's test client."""

from lxml import etree
from werkzeug.test import Client

from gateway import ns
from tests import envelopes

LOG_IN = envelopes.envelope(
    "",
    f'<v2:LogIn><v2:Input xmlns:a="{ns.SESSION}"><a:Username>demo</a:Username>'
    "<a:Password>demo-password</a:Password></v2:Input></v2:LogIn>",
).encode()


class InProcess:
    """SOAP calls to the ``.svc`` endpoints of ``app``, as a client posts them."""

    def __init__(self, app):
        self.client = Client(app)

    def post(self, service, body):
        """``(HTTP status, body)`` of posting ``body`` as SOAP 1.1 to ``service``."""
        answer = self.client.post(f"/api/v2/{service}.svc", data=body, content_type="text/xml; charset=utf-8")
        return answer.status_code, answer.data

    def log_in(self):
        """A session token from LogIn (demo user)."""
        status, content = self.post("SessionService", LOG_IN)
        assert status == 200, content
        return etree.fromstring(content).findtext(f".//{{{ns.SESSION}}}SessionToken")


def outcome(status, content):
    """``(status, faultcode, faultstring)``, or ``(status, None, body text)`` for an answer that is no fault."""
    fault = etree.fromstring(content).find(f"{{{ns.SOAP_ENV}}}Body/{{{ns.SOAP_ENV}}}Fault")
    if fault is None:
        return status, None, content.decode()
    return status, fault.findtext("faultcode"), fault.findtext("faultstring")
