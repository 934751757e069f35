"""The legacy wire format, byte for byte: envelopes as legacy clients write and read them."""

import socket
import xml.dom.minidom
from pathlib import Path

import pytest
import requests
from lxml import etree

from gateway import ns
from gateway.soap.conventions import soap_action
from tests.conftest import InProcessGateway, InProcessSimulator

GO_TO_STATE = "/api/m2m/v1/devices/actions/goToState"
WSDL_DIR = Path(__file__).resolve().parents[1] / "wsdl"

# The legacy document's example request, with its nph1 prefix declared and its
# broken Kind end tag fixed: otherwise verbatim, whitespace included.
LEGACY_EXAMPLE = f"""<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:v2="http://nphase.com/unifiedwebservice/v2"
 xmlns:nph="http://schemas.datacontract.org/2004/07/NPhase.UnifiedWebService.APIs.v2.Contract.StateService"
 xmlns:nph1="{ns.COMMON}">
  <soapenv:Header>
    <v2:token>{{token}}</v2:token>
  </soapenv:Header>
   <soapenv:Body>
      <v2:GoToState>
         <v2:Input>
            <nph:DeviceList>
               <nph1:DeviceIdentifierCollection>
                  <nph1:DeviceIdentifiers>
                     <nph1:DeviceIdentifier>
                        <nph1:Kind>iccid</nph1:Kind>
                        <nph1:Identifier>89144259800000080079</nph1:Identifier>
                     </nph1:DeviceIdentifier>
                  </nph1:DeviceIdentifiers>
               </nph1:DeviceIdentifierCollection>
            </nph:DeviceList>
            <nph:ServiceName>fast1</nph:ServiceName>
            <nph:StateName>inter-active</nph:StateName>
            <nph:ServicePlan>4G East</nph:ServicePlan>
         </v2:Input>
      </v2:GoToState>
   </soapenv:Body>
</soapenv:Envelope>"""

LOG_IN = f"""<s:Envelope xmlns:s="{ns.SOAP_ENV}"><s:Body><LogIn xmlns="{ns.V2}">\
<Input xmlns:a="{ns.SESSION}"><a:Username>demo</a:Username><a:Password>demo-password</a:Password></Input>\
</LogIn></s:Body></s:Envelope>"""

EXPECTED_RESPONSE = (
    f'<s:Envelope xmlns:s="{ns.SOAP_ENV}"><s:Body>'
    f'<GoToStateResponse xmlns="{ns.V2}"><Output xmlns:a="{ns.STATE}" xmlns:i="{ns.XSI}">'
    "<a:RequestId>{request_id}</a:RequestId></Output></GoToStateResponse></s:Body></s:Envelope>"
)


@pytest.fixture(scope="module")
def zip_gateway(tmp_path_factory, simulator):
    """A gateway with a default MdnZipCode, as the legacy example sends none."""
    process = InProcessGateway(tmp_path_factory.mktemp("zip-gateway"), simulator.url, defaults_mdn_zip_code="94203")
    yield process.start()
    process.stop()


def post(url, body, action=None):
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    if action is not None:
        headers["SOAPAction"] = action
    return requests.post(url, data=body.encode(), headers=headers, timeout=30)


def log_in(gateway):
    answer = post(gateway.service_url("SessionService"), LOG_IN, f'"{soap_action("SessionService", "LogIn")}"')
    assert answer.status_code == 200, answer.text
    return xml.dom.minidom.parseString(answer.content).getElementsByTagName("a:SessionToken")[0].firstChild.data


def fault(answer):
    assert answer.status_code == 500
    assert answer.headers["Content-Type"].startswith("text/xml")
    document = xml.dom.minidom.parseString(answer.content)
    return (
        document.getElementsByTagName("faultcode")[0].firstChild.data,
        document.getElementsByTagName("faultstring")[0].firstChild.data,
    )


def test_the_legacy_example_parses_verbatim_and_is_answered_as_wcf_did(zip_gateway, upstream):
    token = log_in(zip_gateway)
    answer = post(zip_gateway.service_url("StateService"), LEGACY_EXAMPLE.format(token=token))
    assert answer.status_code == 200, answer.text
    (record,) = upstream.requests(GO_TO_STATE)
    assert record["json"] == {
        "devices": [{"deviceIds": [{"kind": "iccid", "id": "89144259800000080079"}]}],
        "serviceName": "fast1",
        "stateName": "inter-active",
        "servicePlan": "4G East",
        "mdnZipCode": "94203",
    }
    request_id = record["response"]["requestId"]
    assert answer.text == EXPECTED_RESPONSE.format(request_id=request_id)
    assert answer.headers["Content-Type"] == "text/xml; charset=utf-8"


def test_a_prefix_sensitive_reader_finds_a_request_id(zip_gateway, upstream):
    # As .NET's XmlDocument.GetElementsByTagName("a:RequestId") does in the wild.
    answer = post(zip_gateway.service_url("StateService"), LEGACY_EXAMPLE.format(token=log_in(zip_gateway)))
    nodes = xml.dom.minidom.parseString(answer.content).getElementsByTagName("a:RequestId")
    assert [node.firstChild.data for node in nodes] == [upstream.requests(GO_TO_STATE)[0]["response"]["requestId"]]


@pytest.mark.parametrize(
    "action",
    [None, "", '""', "*", '"*"', soap_action("StateService", "GoToState"), f'"{soap_action("StateService", "GoToState")}"'],
)
def test_accepted_soap_actions(zip_gateway, upstream, action):
    answer = post(zip_gateway.service_url("StateService"), LEGACY_EXAMPLE.format(token=log_in(zip_gateway)), action)
    assert answer.status_code == 200, answer.text
    assert len(upstream.requests(GO_TO_STATE)) == 1


@pytest.mark.parametrize(
    "action",
    [soap_action("SessionService", "LogIn"), soap_action("StateService", "LogIn"), "GoToState", "urn:other"],
)
def test_a_soap_action_naming_another_operation_is_a_client_fault(zip_gateway, upstream, action):
    answer = post(zip_gateway.service_url("StateService"), LEGACY_EXAMPLE.format(token="t"), f'"{action}"')
    code, text = fault(answer)
    assert code == "s:Client"
    assert action in text and soap_action("StateService", "GoToState") in text
    assert upstream.requests() == []


def test_a_post_to_the_wsdl_url_is_dispatched_as_soap(gateway, upstream):
    # Clients in the wild post their envelopes to ".../SessionService.svc?wsdl".
    answer = post(gateway.service_url("SessionService") + "?wsdl", LOG_IN)
    assert answer.status_code == 200
    assert "<a:SessionToken>" in answer.text


def test_the_legacy_documents_malformed_example_is_a_client_fault(gateway, upstream):
    broken = LEGACY_EXAMPLE.replace(f' xmlns:nph1="{ns.COMMON}"', "").replace("iccid</nph1:Kind>", "iccid/nph1:Kind>")
    code, _ = fault(post(gateway.service_url("StateService"), broken))
    assert code == "s:Client"
    assert upstream.requests() == []


def test_go_to_state_without_the_token_header_is_a_client_fault(zip_gateway, upstream):
    body = LEGACY_EXAMPLE.replace("<v2:token>{token}</v2:token>", "")
    code, text = fault(post(zip_gateway.service_url("StateService"), body))
    assert code == "s:Client"
    assert "token" in text and "LogIn" in text
    assert upstream.requests() == []


def test_a_broken_rule_names_the_field_and_nothing_goes_upstream(gateway, upstream):
    # No MdnZipCode and no configured default: ThingSpace requires one.
    code, text = fault(post(gateway.service_url("StateService"), LEGACY_EXAMPLE.format(token="t")))
    assert code == "s:Client"
    assert text.startswith("MdnZipCode:") and "[defaults] mdn_zip_code" in text
    assert upstream.requests() == []


def test_the_bearer_token_is_fetched_once_and_reused(gateway, upstream):
    log_in(gateway)
    log_in(gateway)
    bearers = {record["headers"]["Authorization"] for record in upstream.requests("/api/m2m/v1/session/login")}
    assert len(bearers) == 1


# -- WSDL --------------------------------------------------------------------


SERVICES = ["CallbackRegistrationService", "SessionService", "StateService"]


@pytest.fixture(scope="module")
def snapshot_gateway(tmp_path_factory, simulator):
    """Serving at the address the snapshots were made for."""
    process = InProcessGateway(tmp_path_factory.mktemp("snapshot"), simulator.url, server_public_url="http://127.0.0.1:8080")
    yield process.start()
    process.stop()


@pytest.mark.parametrize("service", SERVICES)
def test_the_served_single_wsdl_is_the_snapshot(snapshot_gateway, service):
    # The snapshot is the contract .NET and Java users import: `make wsdl`
    # regenerates it, and a difference must be a deliberate, reviewed change.
    served = requests.get(f"{snapshot_gateway.service_url(service)}?singleWsdl", timeout=10)
    assert served.status_code == 200
    assert served.content == (WSDL_DIR / f"{service}.wsdl").read_bytes()


@pytest.mark.parametrize("service", SERVICES)
def test_wsdl_is_the_flat_single_wsdl_and_each_schema_is_served_on_its_own(snapshot_gateway, service):
    # Flat under both names, as WCF services with a flat-WSDL behaviour serve
    # ?wsdl: Mono's svcutil cannot import WCF's modular form.
    url = snapshot_gateway.service_url(service)
    single = requests.get(f"{url}?singleWsdl", timeout=10).content
    assert requests.get(f"{url}?wsdl", timeout=10).content == single
    parser = etree.XMLParser(remove_blank_text=True)  # indentation differs with depth
    inline = etree.fromstring(single, parser).find(f"{{{ns.WSDL}}}types")
    fetched = {}
    for n in range(len(inline)):
        answer = requests.get(f"{url}?xsd=xsd{n}", timeout=10)
        assert answer.status_code == 200
        schema = etree.fromstring(answer.content, parser)
        for imported in schema.iter(f"{{{ns.XSD}}}import"):
            assert imported.get("schemaLocation").startswith("http://127.0.0.1:8080/api/v2/" + service + ".svc?xsd=xsd")
        fetched[schema.get("targetNamespace")] = schema
    assert requests.get(f"{url}?xsd=xsd{len(inline)}", timeout=10).status_code == 404

    def canonical(schema):
        for imported in schema.iter(f"{{{ns.XSD}}}import"):
            imported.attrib.pop("schemaLocation", None)
        # Exclusive: the standalone schemas declare only the prefixes they use.
        return [etree.tostring(child, method="c14n", exclusive=True) for child in schema]

    assert {namespace: canonical(schema) for namespace, schema in fetched.items()} == {
        schema.get("targetNamespace"): canonical(schema) for schema in inline
    }


def test_an_unknown_schema_is_404(gateway):
    assert requests.get(gateway.service_url("StateService") + "?xsd=xsd9", timeout=10).status_code == 404


def test_the_wsdl_address_is_the_url_the_client_used_through_a_proxy(gateway):
    served = requests.get(
        gateway.service_url("StateService") + "?wsdl",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "m2m.example.com",
                 "X-Forwarded-Port": "8443", "X-Forwarded-Prefix": "/legacy"},
        timeout=10,
    )
    assert 'location="https://m2m.example.com:8443/legacy/api/v2/StateService.svc"' in served.text


def test_the_wsdl_address_without_a_proxy_is_the_request_url(gateway):
    served = requests.get(gateway.service_url("SessionService") + "?wsdl", timeout=10)
    assert f'location="{gateway.service_url("SessionService")}"' in served.text


# -- upstream failures -----------------------------------------------------


def test_an_upstream_that_never_answers_is_a_server_fault_after_the_timeout(tmp_path):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        process = InProcessGateway(tmp_path, url, upstream_timeout_s="0.5").start()
        try:
            code, text = fault(post(process.service_url("SessionService"), LOG_IN))
        finally:
            process.stop()
    assert code == "s:Server"
    assert text == "ThingSpace did not answer within 0.5 s"


def test_a_bearer_refused_as_expired_is_fetched_again_once(tmp_path):
    # Both simulators serve one listening socket: bound again between them, the
    # port could be taken meanwhile, by any connection's ephemeral end.
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    first = InProcessSimulator(port, listening).start()
    process = InProcessGateway(tmp_path, first.url).start()
    try:
        log_in(process)
        first.stop()
        # A new simulator on the same port knows none of the tokens issued so far.
        second = InProcessSimulator(port, listening).start()
        try:
            log_in(process)
            attempts = second.requests("/api/m2m/v1/session/login")
        finally:
            second.stop()
    finally:
        process.stop()
        listening.close()
    assert len(attempts) == 2
    assert attempts[0]["headers"]["Authorization"] != attempts[1]["headers"]["Authorization"]


def test_values_keep_their_white_space_as_wcfs_serializer_kept_it(zip_gateway, upstream):
    # Decided: WCF's data-contract serializer handed string content over
    # verbatim, so the gateway forwards it verbatim and ThingSpace judges it.
    token = log_in(zip_gateway)
    body = LEGACY_EXAMPLE.format(token=token).replace(
        "<nph1:Identifier>89144259800000080079</nph1:Identifier>",
        "<nph1:Identifier> 89144259800000080079\n</nph1:Identifier>",
    ).replace("<nph:ServiceName>fast1</nph:ServiceName>", "<nph:ServiceName>  fast1 </nph:ServiceName>")
    answer = post(zip_gateway.service_url("StateService"), body)
    assert answer.status_code == 200, answer.text
    (record,) = upstream.requests(GO_TO_STATE)
    assert record["json"]["devices"] == [{"deviceIds": [{"kind": "iccid", "id": " 89144259800000080079\n"}]}]
    assert record["json"]["serviceName"] == "  fast1 "
